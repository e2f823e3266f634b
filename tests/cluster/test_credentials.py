"""The service's credentials against the real API server: the shipped RBAC is enough (every
other test of this tier runs on it), a wrong token or a missing verb keeps the service not
ready, with a log line that says what to fix."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.control_plane import ControlPlane, kubeconfig_text
from tests.support.in_cluster import NAMESPACE
from tests.support.service import REPO, RunningService, start_service, stop_service

DEADLINE = 30.0


def service_with(plane: ControlPlane, tmp: Path, token: str) -> RunningService:
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text(plane.url, plane.ca_file, {"token": token}))
    return start_service(tmp, ["--state", "kube", "--kubeconfig", str(kubeconfig)],
                         wait_ready=False)


def not_ready_saying(service: RunningService, words: str) -> None:
    """Until the log says `words`; /readyz is 503 then."""
    deadline = time.monotonic() + DEADLINE
    while words not in service.log():
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.1)
    with service.client() as client:
        answer = client.get("/readyz")
    assert (answer.status_code, answer.text) == (503, "cluster state not synced yet\n")


def test_a_wrong_token_is_never_ready(installed: ControlPlane, tmp_path: Path) -> None:
    service = service_with(installed, tmp_path, "not-a-token")
    try:
        not_ready_saying(service, "the API server does not accept the webhook's credentials")
    finally:
        stop_service(service)


@pytest.fixture
def without_vmi_list(installed: ControlPlane) -> Iterator[str]:
    """A ServiceAccount bound to the shipped ClusterRole less `list` on VMIs; its token."""
    role, binding = yaml.safe_load_all((REPO / "manifests" / "base" / "rbac.yaml").read_text())
    for document in (role, binding):
        document["metadata"]["name"] = "partial"
    for rule in role["rules"]:
        if rule["resources"] == ["virtualmachineinstances"]:
            rule["verbs"] = ["get", "watch"]
    binding["roleRef"]["name"] = "partial"
    binding["subjects"][0]["name"] = "partial"
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "partial", "namespace": NAMESPACE}}
    manifests = "\n---\n".join(json.dumps(item) for item in (account, role, binding))
    installed.kubectl("apply", "-f", "-", stdin=manifests)
    yield installed.kubectl("create", "token", "partial", "-n", NAMESPACE).stdout.strip()
    installed.kubectl("delete", "-f", "-", stdin=manifests)


def test_a_missing_verb_is_named_and_the_service_never_ready(
        installed: ControlPlane, without_vmi_list: str, tmp_path: Path) -> None:
    service = service_with(installed, tmp_path, without_vmi_list)
    try:
        not_ready_saying(service, "permission missing: verb 'list' on resource "
                                  "'virtualmachineinstances' in API group \"kubevirt.io\"")
    finally:
        stop_service(service)


def test_the_shipped_role_is_all_the_service_is_allowed(installed: ControlPlane,
                                                         webhook: RunningService) -> None:
    """The ServiceAccount may get, list and watch the three resources and nothing else:
    asked of the API server itself (SubjectAccessReview by `kubectl auth can-i`)."""
    account = f"system:serviceaccount:{NAMESPACE}:migration-policy-webhook"
    allowed = installed.kubectl("auth", "can-i", "--list", "--as", account).stdout
    for resource in ("migrationpolicies.migrations.kubevirt.io",
                     "virtualmachineinstances.kubevirt.io", "namespaces"):
        line = next(line for line in allowed.splitlines() if line.startswith(resource + " "))
        assert line.split("[")[-1].rstrip("]").split() == ["get", "list", "watch"]
    for verb, resource in (("create", "migrationpolicies.migrations.kubevirt.io"),
                           ("update", "virtualmachineinstancemigrations.kubevirt.io"),
                           ("list", "secrets")):
        denied = installed.kubectl("auth", "can-i", verb, resource, "--as", account,
                                   check=False)
        assert denied.stdout.strip() == "no"
