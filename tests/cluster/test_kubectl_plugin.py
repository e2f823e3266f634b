"""`kubectl migration-policy audit|explain` against the real API server, run by kubectl of
the same release as it finds the plugin on the PATH: which kubeconfig, context and
namespace it reads, as kubectl would (`--kubeconfig`, `$KUBECONFIG` with several files,
`~/.kube/config`, `--context`, `-n`). The cluster holds a VMI in a namespace of this
module's own, a valid policy that governs it, and a policy stored before the webhook would
have refused it; the kubeconfig is the admin's, with two contexts.
(tests/commands/test_kubectl_plugin.py keeps what needs no cluster.)
"""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cluster_state import delete_namespace
from tests.support.control_plane import ControlPlane
from tests.support.kubectl_user import admin_kubeconfig, run_kubectl
from tests.support.unvalidated import store_without_validation

NAMESPACE = "plugin-hpc"
"""This module's namespace: no other test uses it."""
POLICY_NAMES = ("live-policy", "stored-without-a-webhook")

LIVE_POLICY = {
    "apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
    "metadata": {"name": "live-policy"},
    "spec": {"bandwidthPerMigration": "2Gi", "selectors": {
        "namespaceSelector": {"plugin-workloads": "True"},
        "virtualMachineInstanceSelector": {"plugin-workload-type": "db"}}}}
STORED_WITHOUT_A_WEBHOOK = {
    "apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
    "metadata": {"name": "stored-without-a-webhook"},
    "spec": {"bandwidthPerMigration": "-1Gi", "selectors": {
        "virtualMachineInstanceSelector": {"plugin-workload-type": "db"}}}}
OBJECTS = [
    {"apiVersion": "v1", "kind": "Namespace",
     "metadata": {"name": NAMESPACE, "labels": {"plugin-workloads": "True"}}},
    {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
     "metadata": {"name": "db-vmi", "namespace": NAMESPACE,
                  "labels": {"plugin-workload-type": "db"}},
     "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}}}},
]


@pytest.fixture(scope="module")
def cluster(installed: ControlPlane) -> Iterator[ControlPlane]:
    """The module's namespace and VMI, and its two policies (the only ones stored: the
    audit counts them all); deleted at the end."""
    left = installed.kubectl("get", "migrationpolicies", "-o", "name").stdout
    assert left == "", f"policies left by an earlier test: {left}"
    installed.kubectl("apply", "-f", "-",
                      stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": OBJECTS}))
    try:
        store_without_validation(installed, [LIVE_POLICY, STORED_WITHOUT_A_WEBHOOK])
        yield installed
    finally:
        installed.kubectl("delete", "migrationpolicies", *POLICY_NAMES, "--ignore-not-found")
        installed.kubectl("delete", "vmi", "db-vmi", "-n", NAMESPACE, "--ignore-not-found")
        delete_namespace(installed, NAMESPACE)


@pytest.fixture
def kubeconfig(cluster: ControlPlane, tmp_path: Path) -> Path:
    """Two contexts, as the admin: `hpc` (current, namespace plugin-hpc) and `plain` (no
    namespace)."""
    return admin_kubeconfig(cluster, tmp_path / "kubeconfig",
                            contexts=[("hpc", NAMESPACE), ("plain", None)])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME: no ~/.kube/config unless a test writes one."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_audit_reads_the_cluster_of_kubeconfig(cluster: ControlPlane, kubeconfig: Path,
                                               home: Path) -> None:
    result = run_kubectl(cluster, "migration-policy", "audit", home=home,
                         env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "MigrationPolicy 'live-policy' is valid" in lines
    bad = lines.index("MigrationPolicy 'stored-without-a-webhook' is invalid:")
    assert lines[bad + 1].startswith('  * spec.bandwidthPerMigration: "-1Gi" is negative')
    assert lines[-1] == "2 MigrationPolicies in kube: 1 valid, 1 invalid"
    assert result.stderr == ""  # no progress lines of the state around the answer


def test_audit_defaults_to_home_kube_config(cluster: ControlPlane, kubeconfig: Path,
                                            home: Path) -> None:
    (home / ".kube").mkdir()
    shutil.copy(kubeconfig, home / ".kube" / "config")
    result = run_kubectl(cluster, "migration-policy", "audit", "-o", "json", home=home)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert (document["valid"], document["invalid"]) == (1, 1)


def test_kubeconfig_may_list_several_files(cluster: ControlPlane, kubeconfig: Path,
                                           home: Path, tmp_path: Path) -> None:
    listed = os.pathsep.join([str(tmp_path / "absent"), str(kubeconfig)])
    result = run_kubectl(cluster, "migration-policy", "audit", "-o", "yaml", home=home,
                         env={"KUBECONFIG": listed})
    assert result.returncode == 1, result.stderr
    document = yaml.safe_load(result.stdout)
    assert {entry["name"] for entry in document["policies"]} == set(POLICY_NAMES)


def test_explain_uses_the_context_namespace(cluster: ControlPlane, kubeconfig: Path,
                                            home: Path) -> None:
    result = run_kubectl(cluster, "migration-policy", "explain", "db-vmi",
                         "--kubeconfig", str(kubeconfig), home=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"VMI {NAMESPACE}/db-vmi\n")
    line = next(line for line in result.stdout.splitlines() if line.startswith("live-policy"))
    assert line.split()[:3] == ["live-policy", "yes", "2"]
    assert "WINS" in line
    assert "stored-without-a-webhook" not in result.stdout  # the state leaves it out
    assert "is invalid and is ignored" in result.stderr  # and says so


def test_explain_with_another_context_and_namespace(cluster: ControlPlane, kubeconfig: Path,
                                                    home: Path) -> None:
    in_default = run_kubectl(cluster, "migration-policy", "explain", "db-vmi",
                             "--context", "plain", "--kubeconfig", str(kubeconfig), home=home)
    assert in_default.returncode == 1
    assert "VMI 'db-vmi' not found in namespace 'default' in kube" in in_default.stderr
    named = run_kubectl(cluster, "migration-policy", "explain", "db-vmi", "--context", "plain",
                        "-n", NAMESPACE, "-o", "json", "--kubeconfig", str(kubeconfig),
                        home=home)
    assert named.returncode == 0, named.stderr
    document = json.loads(named.stdout)
    assert document["vmi"] == {"namespace": NAMESPACE, "name": "db-vmi"}
    # the API server labels every namespace with its name
    assert document["namespaceLabels"] == {"kubernetes.io/metadata.name": NAMESPACE,
                                           "plugin-workloads": "True"}
    assert document["policies"][0] == {"name": "live-policy", "applies": True, "score": 2,
                                       "wins": True, "reason": "the only policy that applies"}


def test_an_unknown_context_is_named(cluster: ControlPlane, kubeconfig: Path,
                                     home: Path) -> None:
    result = run_kubectl(cluster, "migration-policy", "audit", "--context", "prod",
                         "--kubeconfig", str(kubeconfig), home=home)
    assert result.returncode == 2
    assert "--context prod: no such context" in result.stderr
    assert "(its contexts: hpc, plain)" in result.stderr
    assert "Traceback" not in result.stderr
