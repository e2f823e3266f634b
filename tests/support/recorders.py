"""What travels to and from the real API server, seen from outside it (tests/cluster/).

- `RecordingWebhook`: a validating webhook that allows everything and keeps every
  AdmissionReview the API server sends it. `recording_policy_reviews` registers it with the
  rules of the shipped policy webhook (app/admission/configurations.py), so the API server
  sends it what it sends the shipped webhook, in the same version.
- `RecordingProxy`: a pass-through in front of the API server that keeps the method, path
  and query of every request a client makes (the answers are the API server's own), for
  what a command asks of the cluster (pages of a list, no watch).

Both serve HTTPS on loopback with a CA of their own, made by app/serving/certificates.py.
"""

import base64
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.admission.configurations import webhook_configurations
from app.serving.certificates import KeyType, make_ca, make_serving_certificate, write_private
from tests.support.control_plane import ControlPlane, kubeconfig_text

DEADLINE = 30.0


class _TlsServer:
    """A threaded HTTPS server on 127.0.0.1 whose handler calls `self.answer`."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        ca = make_ca(f"{name} CA", days=1, key_type=KeyType.ECDSA)
        leaf = make_serving_certificate(ca, ["localhost"], ip_addresses=["127.0.0.1"], days=1,
                                        key_type=KeyType.ECDSA)
        self.ca_file = directory / f"{name}-ca.crt"
        self.ca_file.write_bytes(ca.certificate_pem())
        (directory / f"{name}.crt").write_bytes(leaf.certificate_pem())
        write_private(directory / f"{name}.key", leaf.key_pem())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(directory / f"{name}.crt", directory / f"{name}.key")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, content_type, answer = owner.answer(self.command, self.path,
                                                            dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def answer(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, str, bytes]:
        raise NotImplementedError

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class RecordingWebhook(_TlsServer):
    """Allows every review; `requests()` are the `request` of each review, in order."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "recorder")
        self._reviews: list[dict[str, Any]] = []

    def answer(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, str, bytes]:
        review = json.loads(body)
        with self._lock:
            self._reviews.append(review)
        response = {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": True}}
        return 200, "application/json", json.dumps(response).encode()

    def requests(self, name: str | None = None) -> list[dict[str, Any]]:
        """The requests sent so far (for the object `name`, if given)."""
        with self._lock:
            return [review["request"] for review in self._reviews
                    if name in (None, review["request"].get("name"))]


@contextmanager
def recording_policy_reviews(plane: ControlPlane, directory: Path) -> Iterator[RecordingWebhook]:
    """A RecordingWebhook registered beside the shipped policy webhook, with its rules,
    `matchPolicy` and review versions (`failurePolicy: Ignore`, so it never fails a write),
    from the moment the API server calls it until the end of the `with`."""
    recorder = RecordingWebhook(directory)
    ca_bundle = base64.b64encode(recorder.ca_file.read_bytes()).decode()
    configuration, _ = webhook_configurations("unused", "unused", ca_bundle)
    name = f"recorder-{uuid.uuid4().hex[:8]}"
    configuration["metadata"] = {"name": name}
    [hook] = configuration["webhooks"]
    hook["name"] = f"{name}.recorder.test"
    hook["failurePolicy"] = "Ignore"
    hook["clientConfig"] = {"url": f"{recorder.url}/record", "caBundle": ca_bundle}
    plane.kubectl("create", "-f", "-", stdin=json.dumps(configuration))
    try:
        _until_called(plane, recorder, name)
        yield recorder
    finally:
        plane.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        recorder.stop()


def _until_called(plane: ControlPlane, recorder: RecordingWebhook, marker: str) -> None:
    """Server-side dry runs of a valid policy named `marker` until the recorder gets one
    (the API server picks up a new configuration shortly after it is stored)."""
    policy = {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
              "metadata": {"name": marker},
              "spec": {"selectors": {"virtualMachineInstanceSelector": {"marker": marker}}}}
    deadline = time.monotonic() + DEADLINE
    while True:
        plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(policy))
        if recorder.requests(marker):
            return
        assert time.monotonic() < deadline, "the API server never called the recorder"
        time.sleep(0.1)


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    query: dict[str, str]


class RecordingProxy(_TlsServer):
    """Forwards every request to the API server as the admin (the client's own credentials
    are not passed on) and keeps what was asked, in order."""

    def __init__(self, plane: ControlPlane, directory: Path) -> None:
        super().__init__(directory, "proxy")
        self.plane = plane
        self._requests: list[ProxiedRequest] = []

    def answer(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, str, bytes]:
        parts = urlsplit(path)
        with self._lock:
            self._requests.append(ProxiedRequest(method, parts.path,
                                                 dict(parse_qsl(parts.query))))
        forwarded = {key: value for key, value in headers.items()
                     if key.lower() in ("accept", "content-type")}
        with self.plane.client() as client:
            upstream = client.request(method, path, headers=forwarded, content=body,
                                      timeout=30)
        return (upstream.status_code, upstream.headers.get("Content-Type", "text/plain"),
                upstream.content)

    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._requests)

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for the proxy: its CA, and a token the proxy does not pass on."""
        path.write_text(kubeconfig_text(self.url, self.ca_file, {"token": "proxied"}))
        return path


@contextmanager
def recording_proxy(plane: ControlPlane, directory: Path) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(plane, directory)
    try:
        yield proxy
    finally:
        proxy.stop()
