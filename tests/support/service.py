"""The real service, started as a user starts it (`python -m app serve`), over real TLS."""

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
SAMPLE_REVIEWS = SAMPLES / "reviews"
SAMPLE_CLUSTER = SAMPLES / "cluster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ADDRESS_IN_USE_RETRIES = 5


class AddressInUse(RuntimeError):
    """The port chosen for the service was taken before the service bound it."""


@dataclass
class RunningService:
    """A `migration-policy-webhook serve` process and a client that trusts its CA."""

    process: subprocess.Popen[bytes]
    base_url: str
    ca_file: Path
    log_file: Path
    client_cert: tuple[Path, Path] | None = None
    """(certificate, key) presented to a service started with --client-ca-file."""

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert is not None:
            context.load_cert_chain(*self.client_cert)
        return context

    def client(self, *, timeout: float = 10, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, verify=self.ssl_context(), timeout=timeout,
                            **kwargs)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def start_service(
    tmp: Path, args: Sequence[str] = (), *, ca_file: Path | None = None,
    wait_ready: bool = True, client_cert: tuple[Path, Path] | None = None,
) -> RunningService:
    """Start `python -m app serve` on a free port; wait until /healthz answers over TLS.

    `client_cert` is the (certificate, key) the test client presents, for `--client-ca-file`.
    The port is free when chosen but only bound by the service a moment later, when another
    socket (an outgoing connection's ephemeral port) may have taken it: then the service is
    started again on another port.
    """
    for attempt in range(1, ADDRESS_IN_USE_RETRIES + 1):
        try:
            return _start_service(tmp, args, ca_file=ca_file, wait_ready=wait_ready,
                                  client_cert=client_cert)
        except AddressInUse:
            if attempt == ADDRESS_IN_USE_RETRIES:
                raise
    raise AssertionError("unreachable")


def _start_service(
    tmp: Path, args: Sequence[str], *, ca_file: Path | None, wait_ready: bool,
    client_cert: tuple[Path, Path] | None,
) -> RunningService:
    port = free_port()
    certs = tmp / "certs"
    log_file = tmp / f"serve-{port}.log"
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--certs-dir", str(certs), *args]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    service = RunningService(process, f"https://localhost:{port}", ca_file or certs / "ca.crt",
                             log_file, client_cert)
    deadline = time.monotonic() + 30
    path = "/readyz" if wait_ready else "/healthz"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = service.log()
            if "already in use" in log:
                raise AddressInUse(log)
            raise RuntimeError(f"serve exited with {process.returncode}:\n{log}")
        try:
            if service.ca_file.exists():
                with service.client() as client:
                    if client.get(path).status_code == 200:
                        return service
        except (httpx.HTTPError, ssl.SSLError, OSError):
            pass
        time.sleep(0.1)
    stop_service(service)
    raise RuntimeError(f"serve did not answer {path} within 30 s:\n{service.log()}")


@contextmanager
def running_service(tmp: Path, args: Sequence[str] = ()) -> Iterator[RunningService]:
    """`start_service`, stopped at the end of the block."""
    service = start_service(tmp, args)
    try:
        yield service
    finally:
        stop_service(service)


def stop_service(service: RunningService) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `python -m app ARGS` as a user runs the console script."""
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def make_certs(out: Path, *extra: str) -> Path:
    """`certs --out OUT` with `localhost` and 127.0.0.1 added, as a test connects to them."""
    result = run_cli("certs", "--out", str(out), "--dns-name", "localhost",
                     "--ip-address", "127.0.0.1", *extra)
    assert result.returncode == 0, result.stderr
    return out
