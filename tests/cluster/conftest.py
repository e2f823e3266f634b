"""A real control plane (etcd and kube-apiserver) with the webhook installed as an
administrator installs it: the CRDs, the namespace, ServiceAccount and RBAC of
manifests/base/ exactly as shipped, the service on `--state kube` with a token of that
ServiceAccount (so it has exactly the shipped RBAC), and the two webhook configurations as
`certs` writes them, with `clientConfig.service` replaced by a URL to the running service."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.control_plane import ControlPlane, kubeconfig_text, start_control_plane
from tests.support.service import REPO, RunningService, run_cli, start_service, stop_service

HERE = Path(__file__).parent
NAMESPACE = "migration-policy-webhook"
SERVICE_ACCOUNT = "migration-policy-webhook"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    running = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> ControlPlane:
    plane = control_plane
    plane.kubectl("apply", "-f", str(REPO / "manifests" / "crd.yaml"),
                  "-f", str(HERE / "kubevirt-crds.yaml"))
    plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        plane.kubectl("apply", "-f", str(REPO / "manifests" / "base" / name))
    return plane


def by_url(webhooks_yaml: str, port: int) -> str:
    """The webhook configurations `certs` wrote, each `clientConfig.service` replaced by a
    URL to the service on loopback with the same path: the only change."""
    documents = list(yaml.safe_load_all(webhooks_yaml))
    for document in documents:
        for webhook in document["webhooks"]:
            service = webhook["clientConfig"].pop("service")
            webhook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{service['path']}"
    return yaml.safe_dump_all(documents)


@pytest.fixture(scope="session")
def webhook(installed: ControlPlane,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    plane = installed
    tmp = tmp_path_factory.mktemp("webhook")
    token = plane.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE,
                          "--duration", "2h").stdout.strip()
    kubeconfig = tmp / "service-account.kubeconfig"
    kubeconfig.write_text(kubeconfig_text(plane.url, plane.ca_file, {"token": token}))
    certs = tmp / "issued"
    made = run_cli("certs", "--out", str(certs), "--ip-address", "127.0.0.1",
                   "--dns-name", "localhost")
    assert made.returncode == 0, made.stderr
    service = start_service(tmp, [
        "--state", "kube", "--kubeconfig", str(kubeconfig),
        "--tls-cert-file", str(certs / "tls.crt"),
        "--tls-private-key-file", str(certs / "tls.key")], ca_file=certs / "ca.crt")
    registered = by_url((certs / "webhooks.yaml").read_text(), service.port)
    plane.kubectl("apply", "-f", "-", stdin=registered)
    yield service
    plane.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=registered)
    stop_service(service)
