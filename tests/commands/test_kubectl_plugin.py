"""`kubectl migration-policy ...`: the plugin as kubectl finds and runs it, on the PATH, where
no cluster is needed (what it reads of a cluster: tests/cluster/test_kubectl_plugin.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.samples import sample_objects
from tests.support.service import REPO, SAMPLE_CLUSTER, SAMPLES

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not on PATH: these tests run the real kubectl")

VENV_BIN = Path(sys.executable).parent
"""Where pip installed the console script `kubectl-migration_policy`."""


def kubectl(*args: str, env: dict[str, str] | None = None,
            cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """The real kubectl, with the project's scripts first on the PATH and no kubeconfig
    but the one a test gives."""
    base = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    return subprocess.run([str(KUBECTL), *args], env={**base, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_kubectl_lists_the_plugin() -> None:
    result = kubectl("plugin", "list")
    assert result.returncode == 0, result.stderr
    assert str(VENV_BIN / "kubectl-migration_policy") in result.stdout.splitlines()


def test_no_kubeconfig_says_what_to_give(tmp_path: Path) -> None:
    result = kubectl("migration-policy", "audit", env={"HOME": str(tmp_path)})
    assert result.returncode == 2
    assert ".kube/config: cannot be used" in result.stderr
    assert "--state DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_directory_state_needs_no_cluster(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    shutil.copytree(SAMPLE_CLUSTER, state)
    shutil.copy(SAMPLES / "policies" / "three-mistakes.yaml", state)
    env = {"HOME": str(tmp_path)}  # no kubeconfig at all
    audit = kubectl("migration-policy", "audit", "--state", str(state), env=env)
    assert audit.returncode == 1, audit.stderr
    assert "'three-mistakes' is invalid:" in audit.stdout
    policies = sample_objects("MigrationPolicy")  # all valid: tests/commands/test_audit.py
    assert audit.stdout.splitlines()[-1] == (f"{policies + 1} MigrationPolicies in {state}: "
                                             f"{policies} valid, 1 invalid")
    explain = kubectl("migration-policy", "explain", "web-vmi", "-n", "prod", "--state",
                      str(SAMPLE_CLUSTER), "--precedence", "kubevirt", "-o", "yaml", env=env)
    assert explain.returncode == 0, explain.stderr
    document = yaml.safe_load(explain.stdout)
    assert document["precedence"] == "kubevirt"
    winner = next(entry for entry in document["policies"] if entry["wins"])
    assert winner["name"] == "team-web-policy"


def test_lint_takes_files_as_kubectl_apply_does() -> None:
    result = kubectl("migration-policy", "lint", "-f", "samples/policies/three-mistakes.yaml",
                     "-f", "samples/policies/my-awesome-policy.yaml")
    assert result.returncode == 1
    assert "'three-mistakes' is invalid:" in result.stdout
    assert "'my-awesome-policy' is valid" in result.stdout
    as_json = kubectl("migration-policy", "lint", "samples/policies/my-awesome-policy.yaml",
                      "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["policies"][0]["name"] == "my-awesome-policy"


def test_usage_mistakes_are_explained() -> None:
    no_files = kubectl("migration-policy", "lint")
    assert no_files.returncode == 2
    assert "lint needs manifests: kubectl migration-policy lint -f FILE|DIR" in no_files.stderr
    no_vmi = kubectl("migration-policy", "explain", "--state", "samples/cluster")
    assert no_vmi.returncode == 2
    assert "explain needs a VMI name" in no_vmi.stderr
    bad_output = kubectl("migration-policy", "audit", "-o", "wide")
    assert bad_output.returncode == 2
    assert "invalid choice: 'wide'" in bad_output.stderr
