"""Clients that misbehave on purpose, over real TLS sockets: they send part of a request,
or nothing, and watch when the server hangs up."""

import contextlib
import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.reviews import VALIDATE
from tests.support.service import RunningService

REVIEW_PATH = "/validate-migrationpolicy"


def tls_connect(port: int, ca_file: Path, *, timeout: float = 10,
                host: str = "127.0.0.1") -> ssl.SSLSocket:
    """A TLS connection to the service, handshake done."""
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection((host, port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


def request_head(path: str = "/healthz", *, method: str = "GET",
                 headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_head(size: int, path: str = REVIEW_PATH) -> bytes:
    """The headers of a POST whose body is `size` bytes long."""
    return request_head(path, method="POST", headers={
        "Content-Type": "application/json", "Content-Length": str(size)})


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def read_response(sock: socket.socket) -> Answer:
    """One response from `sock`, body read, the socket left open."""
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    return Answer(response.status, response.headers, response.read())


def read_until(sock: socket.socket, end: bytes) -> bytes:
    """What `sock` sends until `end` has arrived, or the connection ends."""
    reply = b""
    while end not in reply:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def get(sock: socket.socket, path: str = "/healthz") -> Answer:
    sock.sendall(request_head(path))
    return read_response(sock)


def is_closed(sock: socket.socket) -> bool:
    """True if the server has closed the connection (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        sock.setblocking(True)


def seconds_until_closed(sock: socket.socket, *, limit: float) -> float:
    """How long the server takes to close `sock`; raise if it is still open after `limit`.

    Anything the server sends meanwhile is read and dropped; a reset counts as closed.
    """
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {limit} s") from None
    except (ssl.SSLError, ConnectionError):
        pass
    return time.monotonic() - started


def received_until_closed(sock: socket.socket, *, limit: float) -> bytes:
    """Everything the server sends until it closes `sock` (within `limit` seconds)."""
    chunks = []
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ssl.SSLError, ConnectionError):
        pass
    return b"".join(chunks)


REQUEST_CAP_REFUSAL = b"requests in progress (--max-concurrent-requests)"
"""Part of the 503 a listener answers when it has as many requests in progress as it allows."""


def probe(port: int, ca_file: Path) -> bytes:
    """All the server answers to `GET /healthz` with `Connection: close`, on a connection
    of its own."""
    with tls_connect(port, ca_file) as sock:
        sock.sendall(request_head(headers={"Connection": "close"}))
        return received_until_closed(sock, limit=10)


def wait_for_request_cap(port: int, ca_file: Path, *, reached: bool,
                         limit: float = 30.0) -> None:
    """Probe the listener at `port` until it refuses the probe for --max-concurrent-requests
    (`reached`: that many requests are with the app, their headers in) or serves it (not
    `reached`: there is room again). The service exposes no gauge of requests in progress:
    start it with a cap as low as the requests a test holds. The deadline only ends a
    failure."""
    deadline = time.monotonic() + limit
    while True:
        answer = probe(port, ca_file)
        if reached:
            done = answer.startswith(b"HTTP/1.1 503 ") and REQUEST_CAP_REFUSAL in answer
        else:
            done = answer.startswith(b"HTTP/1.1 200 ")
        if done:
            return
        if time.monotonic() > deadline:
            state = "not reached" if reached else "still reached"
            raise AssertionError(f"the request cap {state} after {limit} s; the last "
                                 f"answer:\n{answer[:400]!r}")
        time.sleep(0.05)


# Bodies being received hold a share of one listener's body budget.

def hold_body(service: RunningService, size: int) -> ssl.SSLSocket:
    """A connection whose review of `size` bytes is being received: its headers sent, with
    `Expect: 100-continue`, and uvicorn's `100 Continue` read, which it sends when the app
    first asks for the body: the request is past the limits and holds its share of the
    budget. The caller closes it."""
    sock = tls_connect(service.port, service.ca_file)
    sock.sendall(request_head(VALIDATE, method="POST", headers={
        "Content-Type": "application/json", "Content-Length": str(size),
        "Expect": "100-continue"}))
    reply = read_until(sock, b"\r\n\r\n")
    if not reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        sock.close()
        raise AssertionError(f"a body of {size} bytes was not taken in: {reply!r}")
    return sock


def refusal_of_body(service: RunningService, size: int) -> tuple[int, str]:
    """The status and error with which a review of `size` bytes (headers only) is refused."""
    with tls_connect(service.port, service.ca_file) as sock:
        sock.sendall(request_head(VALIDATE, method="POST", headers={
            "Content-Type": "application/json", "Content-Length": str(size),
            "Expect": "100-continue"}))
        answer = read_response(sock)
    return answer.status, json.loads(answer.body)["error"]


def bodies_refused_past(service: RunningService, sizes: list[int]) -> tuple[int, str]:
    """Hold bodies of `sizes` at once (each must be taken in), then the refusal of one
    more byte."""
    with contextlib.ExitStack() as held:
        for size in sizes:
            held.enter_context(hold_body(service, size))
        return refusal_of_body(service, 1)
