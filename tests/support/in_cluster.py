"""The webhook installed in a real control plane as an administrator installs it: the CRDs,
the namespace, ServiceAccount and RBAC of manifests/base/ exactly as shipped, the service on
`--state kube` with a token of that ServiceAccount (so it has exactly the shipped RBAC), and
the two webhook configurations as `certs` writes them, with `clientConfig.service` replaced
by a URL to the running service (nothing on loopback routes a Service)."""

from pathlib import Path

import yaml

from tests.support.control_plane import ControlPlane, kubeconfig_text
from tests.support.service import REPO, RunningService, run_cli, start_service

KUBEVIRT_CRDS = REPO / "tests" / "cluster" / "kubevirt-crds.yaml"
NAMESPACE = "migration-policy-webhook"
SERVICE_ACCOUNT = "migration-policy-webhook"


def install(plane: ControlPlane) -> None:
    """The CRDs (ours, and KubeVirt's two the webhook needs), then the shipped namespace,
    ServiceAccount and RBAC."""
    plane.kubectl("apply", "-f", str(REPO / "manifests" / "crd.yaml"),
                  "-f", str(KUBEVIRT_CRDS))
    plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        plane.kubectl("apply", "-f", str(REPO / "manifests" / "base" / name))


def by_url(webhooks_yaml: str, port: int) -> str:
    """The webhook configurations `certs` wrote, each `clientConfig.service` replaced by a
    URL to the service on loopback with the same path: the only change."""
    documents = list(yaml.safe_load_all(webhooks_yaml))
    for document in documents:
        for webhook in document["webhooks"]:
            service = webhook["clientConfig"].pop("service")
            webhook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{service['path']}"
    return yaml.safe_dump_all(documents)


def start_webhook(plane: ControlPlane, tmp: Path) -> tuple[RunningService, str]:
    """The service on the shipped ServiceAccount's token, with `certs`'s certificate; and
    its webhook configurations, by URL, to register (`kubectl apply -f -`)."""
    token = plane.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE,
                          "--duration", "2h").stdout.strip()
    tmp.mkdir(parents=True, exist_ok=True)
    kubeconfig = tmp / "service-account.kubeconfig"
    kubeconfig.write_text(kubeconfig_text(plane.url, plane.ca_file, {"token": token}))
    certs = tmp / "issued"
    made = run_cli("certs", "--out", str(certs), "--ip-address", "127.0.0.1",
                   "--dns-name", "localhost")
    if made.returncode != 0:
        raise RuntimeError(f"certs failed: {made.stderr}")
    service = start_service(tmp, [
        "--state", "kube", "--kubeconfig", str(kubeconfig),
        "--tls-cert-file", str(certs / "tls.crt"),
        "--tls-private-key-file", str(certs / "tls.key"),
        "--coverage-interval", "0.5"], ca_file=certs / "ca.crt")
    return service, by_url((certs / "webhooks.yaml").read_text(), service.port)
