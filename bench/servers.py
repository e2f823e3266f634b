"""Start and stop the two servers the benchmark compares, each alone on the server CPU.

Both are started as a user starts them and serve the same certificate (the development CA
and `localhost` certificate of `app.serving.tls.ensure_dev_certificates`, made once per run):
- the floor, `bench/floor.py` on uvicorn with httptools and uvloop;
- the service, `python -m app serve --host 127.0.0.1 --port P --certs-dir DIR ...` as
  tests/support/service.py `start_service` runs it, at its default log level.
"""

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster import REPO

SERVER_CPU = 1
LOADGEN_CPU = 0
READY_TIMEOUT = 600.0


def pinned(command: Sequence[str], cpu: int) -> list[str]:
    """`command` run on one CPU where taskset exists and the machine has that CPU."""
    if not can_pin():
        return list(command)
    return ["taskset", "-c", str(cpu), *command]


def can_pin() -> bool:
    """Whether the load generator and the server can each have a CPU of their own."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) > SERVER_CPU


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server process on 127.0.0.1 over TLS."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    ca_file: Path
    log_file: Path

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User and system CPU time of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class AddressInUse(RuntimeError):
    """The free port was taken before the server bound it."""


def _start(name: str, command: Callable[[int], list[str]], tmp: Path, ca_file: Path,
           probe: tuple[str, str, bytes]) -> Server:
    """Start on a free port, again on another one if that port was taken meanwhile."""
    for attempt in range(3):
        try:
            return _start_on(name, command, free_port(), tmp, ca_file, probe)
        except AddressInUse:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_on(name: str, command: Callable[[int], list[str]], port: int, tmp: Path,
              ca_file: Path, probe: tuple[str, str, bytes]) -> Server:
    log_file = tmp / f"{name}-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(pinned(command(port), SERVER_CPU), cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT)
    server = Server(name, process, port, ca_file, log_file)
    context = ssl.create_default_context(cafile=str(ca_file))
    method, path, body = probe
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "already in use" in server.log():
                raise AddressInUse(server.log())
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log()}")
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        try:
            connection.request(method, path, body=body or None,
                               headers={"Content-Type": "application/json"})
            if connection.getresponse().status == 200:
                return server
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not answer {path} within {READY_TIMEOUT:.0f} s:\n"
                       f"{server.log()}")


def start_floor(certs: Path, tmp: Path, probe_body: bytes) -> Server:
    """The floor on a free port; returns once it answers a review."""
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "floor:app", "--app-dir", str(REPO / "bench"),
                "--host", "127.0.0.1", "--port", str(port), "--http", "httptools",
                "--loop", "uvloop", "--ssl-certfile", str(certs / "tls.crt"),
                "--ssl-keyfile", str(certs / "tls.key"), "--no-access-log", "--lifespan", "on"]
    return _start("floor", command, tmp, certs / "ca.crt", ("POST", "/", probe_body))


def start_service(certs: Path, tmp: Path, args: Sequence[str]) -> Server:
    """`serve` on a free port with the given arguments; returns once /readyz is 200."""
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--certs-dir", str(certs), *args]
    return _start("service", command, tmp, certs / "ca.crt", ("GET", "/readyz", b""))
