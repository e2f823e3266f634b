"""The service on `--state kube` against the real control plane of tests/cluster, started by
a test itself and not registered with the API server (its decisions are asked of it
directly, `tests.support.live_cluster.decide`): on a token of the shipped ServiceAccount,
or of an account of the test's own whose ClusterRole lacks a verb. And what such tests make
in the shared control plane and take away again: namespaces, VMIs, policies, accounts.

This control plane runs no controller manager: a deleted namespace stays Terminating until
its `kubernetes` finalizer is removed, which `delete_namespace` does as the namespace
controller would, once the namespace's VMIs are deleted.
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.control_plane import ControlPlane, kubeconfig_text
from tests.support.in_cluster import NAMESPACE, SERVICE_ACCOUNT
from tests.support.kubeapi.objects import policy as policy  # one builder for both tiers
from tests.support.live_cluster import wait_for
from tests.support.service import REPO, RunningService, start_service, stop_service

RBAC = REPO / "manifests" / "base" / "rbac.yaml"
VMIS_PATH = "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances"

Document = dict[str, Any]


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Document:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})}}


def vmi(namespace_name: str, name: str, labels: Mapping[str, str] | None = None) -> Document:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": namespace_name,
                         "labels": dict(labels or {})}}


def apply(plane: ControlPlane, *documents: Document) -> None:
    """`kubectl apply` of the documents, as one List."""
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": list(documents)}))


def delete_namespace(plane: ControlPlane, name: str) -> None:
    """Its VMIs (one delete-collection), then the namespace, then its finalizer, as the
    namespace controller this control plane does not run would; gone when this returns."""
    with plane.client() as client:
        client.delete(VMIS_PATH.format(namespace=name)).raise_for_status()
        if client.delete(f"/api/v1/namespaces/{name}").status_code == 404:
            return
        finalize(plane, name)


def finalize(plane: ControlPlane, name: str) -> None:
    """Remove a Terminating namespace's finalizer: the API server then deletes it."""
    with plane.client() as client:
        stored = client.get(f"/api/v1/namespaces/{name}")
        if stored.status_code == 404:
            return
        document = stored.json()
        document["spec"]["finalizers"] = []
        client.put(f"/api/v1/namespaces/{name}/finalize", json=document).raise_for_status()
        assert wait_for(lambda: client.get(f"/api/v1/namespaces/{name}").status_code,
                        404) == 404, f"namespace {name} not deleted"


def kill_apiserver(plane: ControlPlane) -> None:
    """The API server gone at once, as in a crash (`plane.start_apiserver()` brings it
    back). `stop_apiserver` asks it to shut down, which with watches open takes the 20 s
    it is given before it is killed anyway."""
    assert plane.apiserver is not None, "the API server is not running"
    plane.apiserver.kill()
    plane.apiserver.wait()
    plane.apiserver = None


def delete_policies(plane: ControlPlane, *names: str) -> None:
    plane.kubectl("delete", "migrationpolicy", *names, "--ignore-not-found")


def shipped_rules() -> list[Document]:
    """The rules of the shipped ClusterRole."""
    role = next(yaml.safe_load_all(RBAC.read_text()))
    rules: list[Document] = role["rules"]
    return rules


def rules_without(resource: str, verb: str) -> list[Document]:
    """The shipped rules less `verb` on `resource`."""
    rules = shipped_rules()
    for rule in rules:
        if rule["resources"] == [resource]:
            rule["verbs"] = [each for each in rule["verbs"] if each != verb]
    return rules


def token_of(plane: ControlPlane, account: str = SERVICE_ACCOUNT) -> str:
    """A token of a ServiceAccount of the webhook's namespace, from the TokenRequest API."""
    return plane.kubectl("create", "token", account, "-n", NAMESPACE,
                         "--duration", "1h").stdout.strip()


def _account_documents(name: str, rules: Sequence[Document]) -> list[Document]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name}, "rules": list(rules)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]},
    ]


@contextmanager
def account(plane: ControlPlane, name: str, rules: Sequence[Document]) -> Iterator[str]:
    """A ServiceAccount `name` bound to a ClusterRole `name` of `rules`; its token. All
    three are deleted at the end."""
    documents = _account_documents(name, rules)
    apply(plane, *documents)
    try:
        yield token_of(plane, name)
    finally:
        plane.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": documents}))


def grant(plane: ControlPlane, name: str, rules: Sequence[Document]) -> None:
    """The ClusterRole `name` (of `account`) now has `rules`."""
    apply(plane, _account_documents(name, rules)[1])


def start_state_service(plane: ControlPlane, tmp: Path, token: str, *,
                        args: Sequence[str] = (), wait_ready: bool = True) -> RunningService:
    """The service on `--state kube` with a kubeconfig of `token`; not registered."""
    tmp.mkdir(parents=True, exist_ok=True)
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text(plane.url, plane.ca_file, {"token": token}))
    return start_service(tmp, ["--state", "kube", "--kubeconfig", str(kubeconfig), *args],
                         wait_ready=wait_ready)


@contextmanager
def state_service(plane: ControlPlane, tmp: Path, token: str | None = None, *,
                  args: Sequence[str] = (), wait_ready: bool = True) -> Iterator[RunningService]:
    """`start_state_service` (on the shipped ServiceAccount's token unless another is
    given), stopped at the end of the block."""
    service = start_state_service(plane, tmp, token or token_of(plane), args=args,
                                  wait_ready=wait_ready)
    try:
        yield service
    finally:
        stop_service(service)


@contextmanager
def without_validating_webhook(plane: ControlPlane, refused: Document) -> Iterator[None]:
    """The validating webhook configuration taken away for the block (as before the webhook
    was installed), if registered, and registered again after it. `refused` is a policy the
    webhook refuses: it is stored once the API server no longer calls the webhook, and
    dry-run until it is refused again (the API server picks the configuration up a moment
    after it changes)."""
    found = plane.kubectl("get", "validatingwebhookconfiguration", "migration-policy-webhook",
                          "-o", "json", check=False)
    configuration = json.loads(found.stdout) if found.returncode == 0 else None
    if configuration is not None:
        configuration["metadata"] = {"name": configuration["metadata"]["name"]}
        plane.kubectl("delete", "validatingwebhookconfiguration", "migration-policy-webhook")
    text = json.dumps(refused)
    try:
        stored = wait_for(lambda: plane.kubectl("apply", "-f", "-", stdin=text,
                                                check=False).returncode, 0)
        assert stored == 0, "the policy was not stored without the validating webhook"
        yield
    finally:
        if configuration is not None:
            plane.kubectl("create", "-f", "-", stdin=json.dumps(configuration))
            dry_run = json.dumps({**refused, "metadata": {"name": "refused-again"}})
            assert wait_for(lambda: plane.kubectl(
                "create", "--dry-run=server", "-f", "-", stdin=dry_run,
                check=False).returncode, 1) == 1, "the validating webhook is not back"
