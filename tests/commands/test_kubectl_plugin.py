"""`kubectl migration-policy ...`: the plugin as kubectl finds and runs it, on the PATH, where
no cluster is needed (what it reads of a cluster: tests/cluster/test_kubectl_plugin.py). The
kubectl is the real-cluster tier's release, as `make kube-binaries` builds it; missing, these
tests fail (tests/support/tools.py)."""

import json
import shutil
from pathlib import Path

import yaml

from tests.support.samples import sample_objects
from tests.support.service import SAMPLE_CLUSTER, SAMPLES
from tests.support.tools import VENV_BIN, run_kubectl


def test_kubectl_lists_the_plugin(tmp_path: Path) -> None:
    result = run_kubectl("plugin", "list", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(VENV_BIN / "kubectl-migration_policy") in result.stdout.splitlines()


def test_no_kubeconfig_says_what_to_give(tmp_path: Path) -> None:
    result = run_kubectl("migration-policy", "audit", home=tmp_path)
    assert result.returncode == 2
    assert ".kube/config: cannot be used" in result.stderr
    assert "--state DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_directory_state_needs_no_cluster(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    shutil.copytree(SAMPLE_CLUSTER, state)
    shutil.copy(SAMPLES / "policies" / "three-mistakes.yaml", state)
    # HOME is tmp_path: no kubeconfig at all
    audit = run_kubectl("migration-policy", "audit", "--state", str(state), home=tmp_path)
    assert audit.returncode == 1, audit.stderr
    assert "'three-mistakes' is invalid:" in audit.stdout
    policies = sample_objects("MigrationPolicy")  # all valid: tests/commands/test_audit.py
    assert audit.stdout.splitlines()[-1] == (f"{policies + 1} MigrationPolicies in {state}: "
                                             f"{policies} valid, 1 invalid")
    explain = run_kubectl("migration-policy", "explain", "web-vmi", "-n", "prod", "--state",
                          str(SAMPLE_CLUSTER), "--precedence", "kubevirt", "-o", "yaml",
                          home=tmp_path)
    assert explain.returncode == 0, explain.stderr
    document = yaml.safe_load(explain.stdout)
    assert document["precedence"] == "kubevirt"
    winner = next(entry for entry in document["policies"] if entry["wins"])
    assert winner["name"] == "team-web-policy"


def test_lint_takes_files_as_kubectl_apply_does(tmp_path: Path) -> None:
    result = run_kubectl("migration-policy", "lint", "-f", "samples/policies/three-mistakes.yaml",
                         "-f", "samples/policies/my-awesome-policy.yaml", home=tmp_path)
    assert result.returncode == 1
    assert "'three-mistakes' is invalid:" in result.stdout
    assert "'my-awesome-policy' is valid" in result.stdout
    as_json = run_kubectl("migration-policy", "lint", "samples/policies/my-awesome-policy.yaml",
                          "-o", "json", home=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["policies"][0]["name"] == "my-awesome-policy"


def test_usage_mistakes_are_explained(tmp_path: Path) -> None:
    no_files = run_kubectl("migration-policy", "lint", home=tmp_path)
    assert no_files.returncode == 2
    assert "lint needs manifests: kubectl migration-policy lint -f FILE|DIR" in no_files.stderr
    no_vmi = run_kubectl("migration-policy", "explain", "--state", "samples/cluster",
                         home=tmp_path)
    assert no_vmi.returncode == 2
    assert "explain needs a VMI name" in no_vmi.stderr
    bad_output = run_kubectl("migration-policy", "audit", "-o", "wide", home=tmp_path)
    assert bad_output.returncode == 2
    assert "invalid choice: 'wide'" in bad_output.stderr
