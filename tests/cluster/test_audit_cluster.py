"""`audit --state kube` against the real API server: every stored policy checked with the
webhook's rules (those stored before the webhook would have refused them too), listed page
by page, and a user without the list permission told which. What the audit asks of the
API server is seen by a pass-through proxy in front of it (tests/support/recorders.py).
"""

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.commands.audit import PAGE_SIZE
from tests.support.control_plane import ControlPlane, kubeconfig_text
from tests.support.recorders import RecordingProxy, recording_proxy
from tests.support.service import run_cli
from tests.support.unvalidated import store_without_validation

LABEL = "audit-cluster-test"
"""On every policy this module creates, so its tests delete exactly those."""
POLICIES = "/apis/migrations.kubevirt.io/v1alpha1/migrationpolicies"


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": name, "labels": {LABEL: "yes"}}, "spec": spec}


@pytest.fixture
def plane(installed: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane with no policy stored (the audit reports them all); the policies
    a test made are deleted after it."""
    left = installed.kubectl("get", "migrationpolicies", "-o", "name").stdout
    assert left == "", f"policies left by an earlier test: {left}"
    yield installed
    with installed.client() as client:  # one request (kubectl would delete them one by one)
        client.delete(POLICIES, params={"labelSelector": LABEL},
                      timeout=60).raise_for_status()


@pytest.fixture
def proxy(plane: ControlPlane, tmp_path: Path) -> Iterator[RecordingProxy]:
    with recording_proxy(plane, tmp_path / "proxy") as recording:
        yield recording


def audit(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("audit", "--state", "kube", "--kubeconfig", str(kubeconfig), *args)


def test_audit_the_live_cluster(plane: ControlPlane, proxy: RecordingProxy,
                                tmp_path: Path) -> None:
    """One list of one page, no watch; the policy the webhook would refuse is reported
    with each of its problems."""
    good = policy("good", {"bandwidthPerMigration": "1Gi",
                           "selectors": {"virtualMachineInstanceSelector": {"app": "db"}}})
    # What a cluster without this webhook (or with other rules) lets through; the CRD's
    # schema refuses a bandwidth that is not a quantity ("1 GB") before any webhook.
    bad = policy("bad", {"bandwidthPerMigration": "-1Gi",
                         "selectors": {"namespaceSelector": {"hpc workloads": "x"}}})
    store_without_validation(plane, [good, bad])
    result = audit(proxy.write_kubeconfig(tmp_path / "kubeconfig"))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "MigrationPolicy 'good' is valid" in lines
    bad_at = lines.index("MigrationPolicy 'bad' is invalid:")
    assert lines[bad_at + 1].startswith('  * spec.bandwidthPerMigration: "-1Gi" is negative')
    assert lines[bad_at + 2].startswith('  * spec.selectors.namespaceSelector: label key '
                                        '"hpc workloads"')
    assert lines[-1] == "2 MigrationPolicies in kube: 1 valid, 1 invalid"
    [listed] = proxy.requests()  # nothing else: no watch
    assert (listed.method, listed.query) == ("GET", {"limit": str(PAGE_SIZE)})
    assert listed.path.endswith("/migrationpolicies")


def create_all(plane: ControlPlane, documents: list[dict[str, Any]]) -> None:
    """POST each document as the admin, eight at a time."""
    def create(chunk: list[dict[str, Any]]) -> None:
        with plane.client() as client:
            for document in chunk:
                client.post(POLICIES, json=document).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, [documents[start::8] for start in range(8)]))


def test_audit_lists_the_live_cluster_page_by_page(plane: ControlPlane, proxy: RecordingProxy,
                                                   tmp_path: Path) -> None:
    """More policies than two pages hold: every one is reported, read in three pages, each
    after the first asked with the API server's continue token."""
    count = 2 * PAGE_SIZE + 1
    create_all(plane, [policy(f"p-{number:04}", {
        "selectors": {"virtualMachineInstanceSelector": {"n": str(number)}}})
        for number in range(count)])
    result = audit(proxy.write_kubeconfig(tmp_path / "kubeconfig"), "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["valid"] == count
    assert len({entry["name"] for entry in document["policies"]}) == count
    pages = proxy.requests()
    assert len(pages) == 3
    assert pages[0].query == {"limit": str(PAGE_SIZE)}
    assert all(page.query["limit"] == str(PAGE_SIZE) and page.query.get("continue")
               for page in pages[1:])
    assert pages[1].query["continue"] != pages[2].query["continue"]


@pytest.fixture
def without_role(installed: ControlPlane, tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig with a token of a ServiceAccount bound to no role at all."""
    installed.kubectl("create", "serviceaccount", "audit-without-role", "-n", "default")
    try:
        token = installed.kubectl("create", "token", "audit-without-role",
                                  "-n", "default").stdout.strip()
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig_text(installed.url, installed.ca_file, {"token": token}))
        yield path
    finally:
        installed.kubectl("delete", "serviceaccount", "audit-without-role", "-n", "default")


def test_audit_without_permission_says_which(without_role: Path) -> None:
    """Refused by the API server's RBAC: the error names the resource, the permission to
    grant and who asked."""
    result = audit(without_role)
    assert result.returncode == 2
    assert "refused to list migrationpolicies.migrations.kubevirt.io" in result.stderr
    assert 'User "system:serviceaccount:default:audit-without-role" cannot list' \
        in result.stderr
    assert "needs the list permission" in result.stderr
    assert "Traceback" not in result.stderr
