"""`kubectl migration-policy ...`: the plugin as kubectl finds and runs it, on the PATH."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.kubeapi import (
    MIGRATION_POLICIES,
    NAMESPACES,
    VMIS,
    KubeApiServer,
    namespace,
    policy,
    vmi,
)
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubeApiServer]:
    with KubeApiServer(tmp_path / "api") as api:
        api.create(NAMESPACES, namespace("hpc", {"hpc-workloads": "True"}))
        api.create(VMIS, vmi("hpc", "db-vmi", {"workload-type": "db"}))
        api.create(MIGRATION_POLICIES, policy(
            "live-policy", namespace_selector={"hpc-workloads": "True"},
            vmi_selector={"workload-type": "db"}, bandwidthPerMigration="2Gi"))
        api.create(MIGRATION_POLICIES, policy(
            "stored-without-a-webhook", vmi_selector={"workload-type": "db"},
            bandwidthPerMigration="-1Gi"))
        yield api


@pytest.fixture
def kubeconfig(cluster: KubeApiServer, tmp_path: Path) -> Path:
    """Two contexts on the stand-in: `hpc` (current, namespace hpc) and `plain` (none)."""
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    config = yaml.safe_load(path.read_text())
    base = config["contexts"][0]["context"]
    config["contexts"] = [{"name": "hpc", "context": {**base, "namespace": "hpc"}},
                          {"name": "plain", "context": dict(base)}]
    config["current-context"] = "hpc"
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubectl_lists_the_plugin() -> None:
    result = kubectl("plugin", "list")
    assert result.returncode == 0, result.stderr
    assert str(VENV_BIN / "kubectl-migration_policy") in result.stdout.splitlines()


def test_audit_reads_the_cluster_of_kubeconfig(kubeconfig: Path) -> None:
    result = kubectl("migration-policy", "audit", env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "MigrationPolicy 'live-policy' is valid" in lines
    bad = lines.index("MigrationPolicy 'stored-without-a-webhook' is invalid:")
    assert lines[bad + 1].startswith('  * spec.bandwidthPerMigration: "-1Gi" is negative')
    assert lines[-1] == "2 MigrationPolicies in kube: 1 valid, 1 invalid"
    assert result.stderr == ""  # no progress lines of the state around the answer


def test_audit_defaults_to_home_kube_config(kubeconfig: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    shutil.copy(kubeconfig, home / ".kube" / "config")
    result = kubectl("migration-policy", "audit", "-o", "json", env={"HOME": str(home)})
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert (document["valid"], document["invalid"]) == (1, 1)


def test_kubeconfig_may_list_several_files(kubeconfig: Path, tmp_path: Path) -> None:
    listed = os.pathsep.join([str(tmp_path / "absent"), str(kubeconfig)])
    result = kubectl("migration-policy", "audit", "-o", "yaml", env={"KUBECONFIG": listed})
    assert result.returncode == 1, result.stderr
    document = yaml.safe_load(result.stdout)
    assert {entry["name"] for entry in document["policies"]} == {
        "live-policy", "stored-without-a-webhook"}


def test_explain_uses_the_context_namespace(kubeconfig: Path) -> None:
    result = kubectl("migration-policy", "explain", "db-vmi", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("VMI hpc/db-vmi\n")
    line = next(line for line in result.stdout.splitlines() if line.startswith("live-policy"))
    assert line.split()[:3] == ["live-policy", "yes", "2"]
    assert "WINS" in line
    assert "stored-without-a-webhook" not in result.stdout  # the state leaves it out
    assert "is invalid and is ignored" in result.stderr  # and says so


def test_explain_with_another_context_and_namespace(kubeconfig: Path) -> None:
    in_default = kubectl("migration-policy", "explain", "db-vmi", "--context", "plain",
                         "--kubeconfig", str(kubeconfig))
    assert in_default.returncode == 1
    assert "VMI 'db-vmi' not found in namespace 'default' in kube" in in_default.stderr
    named = kubectl("migration-policy", "explain", "db-vmi", "--context", "plain",
                    "-n", "hpc", "-o", "json", "--kubeconfig", str(kubeconfig))
    assert named.returncode == 0, named.stderr
    document = json.loads(named.stdout)
    assert document["vmi"] == {"namespace": "hpc", "name": "db-vmi"}
    assert document["namespaceLabels"] == {"hpc-workloads": "True"}
    assert document["policies"][0] == {"name": "live-policy", "applies": True, "score": 2,
                                       "wins": True, "reason": "the only policy that applies"}


def test_an_unknown_context_is_named(kubeconfig: Path) -> None:
    result = kubectl("migration-policy", "audit", "--context", "prod",
                     "--kubeconfig", str(kubeconfig))
    assert result.returncode == 2
    assert "--context prod: no such context" in result.stderr
    assert "(its contexts: hpc, plain)" in result.stderr
    assert "Traceback" not in result.stderr


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
    assert audit.stdout.splitlines()[-1] == f"5 MigrationPolicies in {state}: 4 valid, 1 invalid"
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
