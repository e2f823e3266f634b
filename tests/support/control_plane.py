"""A real Kubernetes control plane for the cluster tier: etcd and kube-apiserver, built
from Kubernetes' and etcd's own Go modules (tests/support/kube_binaries.py), on loopback,
with certificates made by the project (app/serving/certificates.py).

The API server runs as a cluster's does where it matters here: TLS with a client CA, an
admin client certificate in `system:masters` for the tests and kubectl,
`--authorization-mode=Node,RBAC`, a service-account issuer and keys (so the TokenRequest
API mints tokens), and the default admission plugins (MutatingAdmissionWebhook and
ValidatingAdmissionWebhook among them).
"""

import os
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.serving.certificates import (
    KeyType,
    make_ca,
    make_client_certificate,
    make_serving_certificate,
    write_private,
)
from tests.support.kube_binaries import ensure_binaries
from tests.support.service import free_port

READY_SECONDS = 90.0
"""How long etcd and the API server may take to start (the API server's first start
installs its built-in objects)."""


def binaries() -> dict[str, Path]:
    """kube-apiserver, kubectl and etcd, built once into the cache where missing."""
    return ensure_binaries()


@dataclass
class ControlPlane:
    """A running etcd and kube-apiserver, and how to reach them as the admin."""

    directory: Path
    bin: dict[str, Path]
    etcd_url: str
    port: int
    etcd: subprocess.Popen[bytes] | None = None
    apiserver: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    def client(self) -> httpx.Client:
        """An httpx client authenticated as the admin."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(self.directory / "admin.crt", self.directory / "admin.key")
        return httpx.Client(base_url=self.url, verify=context, timeout=10)

    def kubectl(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None,
                check: bool = True, env_path: str | None = None,
                ) -> subprocess.CompletedProcess[str]:
        """kubectl of the same release, as the admin unless another kubeconfig is given;
        `env_path` goes first on PATH (where kubectl finds its plugins)."""
        command = [str(self.bin["kubectl"]), *args]  # a plugin's name must come first
        env = {**os.environ, "KUBECTL_KUBERC": "false",
               "KUBECONFIG": str(kubeconfig or self.kubeconfig)}
        if env_path is not None:
            env["PATH"] = f"{env_path}{os.pathsep}{env['PATH']}"
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60,
                              env=env)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n"
                                 f"{done.stderr}")
        return done

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def start_apiserver(self) -> None:
        self.apiserver = _spawn([str(self.bin["kube-apiserver"]), *self.args],
                                self.directory / "kube-apiserver.log")
        self.wait_ready()

    def stop_apiserver(self) -> None:
        _stop(self.apiserver)
        self.apiserver = None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        with self.client() as client:
            while True:
                if self.apiserver is not None and self.apiserver.poll() is not None:
                    raise RuntimeError("kube-apiserver exited:\n" + self.log("kube-apiserver"))
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("kube-apiserver not ready in time:\n"
                                       + self.log("kube-apiserver")[-4000:])
                time.sleep(0.2)

    def stop(self) -> None:
        _stop(self.apiserver)
        _stop(self.etcd)


def _spawn(command: Sequence[str], log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _write_certificates(directory: Path) -> None:
    ca = make_ca("migration-policy-webhook test cluster CA", days=2, key_type=KeyType.ECDSA)
    (directory / "ca.crt").write_bytes(ca.certificate_pem())
    serving = make_serving_certificate(
        ca, ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        ip_addresses=["127.0.0.1", "10.0.0.1"], days=2, key_type=KeyType.ECDSA)
    (directory / "apiserver.crt").write_bytes(serving.certificate_pem())
    write_private(directory / "apiserver.key", serving.key_pem())
    admin = make_client_certificate(ca, "admin", days=2, key_type=KeyType.ECDSA,
                                    organizations=["system:masters"])
    (directory / "admin.crt").write_bytes(admin.certificate_pem())
    write_private(directory / "admin.key", admin.key_pem())
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(directory / "sa.key", signing.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (directory / "sa.pub").write_bytes(signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def kubeconfig_text(server: str, ca_file: Path, user: dict[str, str]) -> str:
    """A kubeconfig of one cluster, one user and one context named `test`."""
    entries = "\n".join(f"    {key}: {value}" for key, value in user.items())
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n"
            f"    server: {server}\n    certificate-authority: {ca_file}\n"
            f"users:\n- name: user\n  user:\n{entries}\n"
            f"contexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n"
            f"current-context: test\n")


def start_control_plane(directory: Path) -> ControlPlane:
    """etcd and kube-apiserver on free loopback ports; returns once /readyz is 200."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_certificates(directory)
    etcd_port, peer_port, port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    plane = ControlPlane(directory, binaries(), etcd_url, port)
    peer = f"http://127.0.0.1:{peer_port}"
    plane.etcd = _spawn([
        str(plane.bin["etcd"]), "--name", "test", "--data-dir", str(directory / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"test={peer}", "--unsafe-no-fsync",
        "--log-level", "warn"], directory / "etcd.log")
    plane.args = [
        "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
        "--advertise-address", "127.0.0.1", "--secure-port", str(port),
        "--tls-cert-file", str(directory / "apiserver.crt"),
        "--tls-private-key-file", str(directory / "apiserver.key"),
        "--client-ca-file", str(directory / "ca.crt"),
        "--service-account-issuer", f"https://127.0.0.1:{port}",
        "--service-account-key-file", str(directory / "sa.pub"),
        "--service-account-signing-key-file", str(directory / "sa.key"),
        "--service-cluster-ip-range", "10.0.0.0/24",
        "--authorization-mode", "Node,RBAC", "--allow-privileged=true",
        # no Service endpoints for `kubernetes` on loopback (as envtest runs it)
        "--endpoint-reconciler-type", "none",
        "--v", "1"]
    (directory / "admin.kubeconfig").write_text(kubeconfig_text(
        plane.url, plane.ca_file, {"client-certificate": str(directory / "admin.crt"),
                                   "client-key": str(directory / "admin.key")}))
    try:
        plane.start_apiserver()
    except BaseException:
        plane.stop()
        raise
    return plane
