"""Connection limits of the real service over real TLS sockets (issue 10): the read
deadline, keep-alive, the connection and request caps, header and URL limits."""

import contextlib
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.raw_clients import (
    get,
    is_closed,
    post_head,
    read_response,
    received_until_closed,
    request_head,
    seconds_until_closed,
    tls_connect,
    wait_for_request_cap,
)
from tests.support.service import SAMPLE_REVIEWS, RunningService, start_service, stop_service

# The documented limits (README, Limits), written here as figures, not read from the code.
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
BODY_BUDGET_BYTES = 32 * 1024 * 1024
READ_TIMEOUT = 1.0
KEEP_ALIVE = 5.0
SWEEP = 1.0
"""The deadlines are checked once a second: a connection goes up to 1 s after its deadline."""
SLACK = 6.0
"""Added to every deadline a test waits for: the machine is shared and may be slow."""
CLOCKS = 0.1
"""The service's clock may be a few ms behind the tests' (libuv's coarse loop time)."""
REVIEW = (SAMPLE_REVIEWS / "policy-valid-example.json").read_bytes()


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The service with a 1 s read deadline and a 5 s keep-alive."""
    running = start_service(tmp_path_factory.mktemp("short"), [
        "--request-read-timeout", str(READ_TIMEOUT), "--keep-alive-timeout", str(KEEP_ALIVE)])
    yield running
    stop_service(running)


def connect(service: RunningService) -> socket.socket:
    return tls_connect(service.port, service.ca_file)


def seconds_since(started: float, sock: socket.socket, limit: float) -> float:
    """Seconds from `started` until the server closes `sock`; fail if it is still open after
    `limit` more. Timed from before the client connected, the figure is never less than
    the server's own wait, however late the client runs."""
    seconds_until_closed(sock, limit=limit)
    return time.monotonic() - started


def test_headers_sent_slowly_are_cut_at_the_read_deadline(short: RunningService) -> None:
    """Catches a read deadline not kept (the limit fails) or one far shorter than set."""
    started = time.monotonic()  # the deadline of a first request runs from its connection
    with connect(short) as sock:
        sock.sendall(b"POST /validate-migrationpolicy HTTP/1.1\r\nHost: localhost\r\n")
        assert seconds_since(started, sock, READ_TIMEOUT + SWEEP + SLACK) >= (
            READ_TIMEOUT - CLOCKS)


def test_the_deadline_is_for_the_whole_request_not_each_byte(short: RunningService) -> None:
    """A byte every 0.2 s keeps a connection busy, never idle: it is cut all the same."""
    head = post_head(len(REVIEW))
    with connect(short) as sock:
        started = time.monotonic()
        for byte in head:
            if is_closed(sock):
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed (and reset) since the check above
                break
            time.sleep(0.2)  # the client's pace, not a wait for the server
        else:
            raise AssertionError("the server read a header byte by byte for "
                                 f"{time.monotonic() - started:.1f} s")
        assert time.monotonic() - started < READ_TIMEOUT + SWEEP + SLACK


def test_a_half_sent_body_is_cut_without_an_answer(short: RunningService) -> None:
    started = time.monotonic()
    with connect(short) as sock:
        sock.sendall(post_head(len(REVIEW)) + REVIEW[: len(REVIEW) // 2])
        assert received_until_closed(sock, limit=READ_TIMEOUT + SWEEP + SLACK) == b""
        assert time.monotonic() - started >= READ_TIMEOUT - CLOCKS
    assert get_status(short) == 200  # the service itself is fine


def test_a_connection_that_sends_nothing_is_cut(short: RunningService) -> None:
    started = time.monotonic()
    with connect(short) as sock:
        assert seconds_since(started, sock, READ_TIMEOUT + SWEEP + SLACK) >= (
            READ_TIMEOUT - CLOCKS)


def test_a_tls_handshake_that_never_comes_is_cut(short: RunningService) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", short.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01")  # the start of a TLS record, and no more
        raw.settimeout(READ_TIMEOUT + SWEEP + SLACK)
        try:
            while raw.recv(4096):
                pass
        except ConnectionError:
            pass
        except TimeoutError:
            raise AssertionError("the server waited for the handshake for "
                                 f"{time.monotonic() - started:.1f} s") from None
        assert time.monotonic() - started >= READ_TIMEOUT - CLOCKS


def test_an_idle_connection_is_kept_for_the_keep_alive_timeout(short: RunningService) -> None:
    """Idle time is not read time: a connection idle for longer than the read deadline and
    its check is still served; it is closed once the 5 s keep-alive timeout has passed (up
    to a second later, the check being once a second).

    Catches the read deadline applied to idle connections or counted from the end of the
    last answer (closed or cut 1-2 s after it), a connection that stops being read once
    idle, and a keep-alive timeout not kept (still open after it and the margin)."""
    with connect(short) as sock:
        assert get(sock).status == 200
        time.sleep(READ_TIMEOUT + SWEEP + 0.2)  # the idle time under test, 2.8 s short of 5 s
        asked = time.monotonic()  # the server's idle time starts after this
        sock.sendall(request_head("/healthz"))
        assert read_response(sock).status == 200
        waited = seconds_since(asked, sock, KEEP_ALIVE + SWEEP + SLACK)
        assert waited >= KEEP_ALIVE - CLOCKS


def test_a_review_is_answered_on_a_reused_connection(short: RunningService) -> None:
    with connect(short) as sock:
        for _ in range(3):
            sock.sendall(post_head(len(REVIEW)) + REVIEW)
            response = read_response(sock)
            assert response.status == 200


def test_the_defaults_are_120_s_keep_alive_and_10_s_read(service: RunningService) -> None:
    line = next(line for line in service.log().splitlines() if "keep-alive timeout" in line)
    assert re.search(r"request read timeout 10(\.0)? s, keep-alive timeout 120(\.0)? s", line)
    assert "at most 1000 connections and 64 requests at once" in line


def get_status(service: RunningService, path: str = "/healthz") -> int:
    with connect(service) as sock:
        return get(sock, path).status


def error_of(response_body: bytes) -> str:
    return str(json.loads(response_body)["error"])


def refused(service: RunningService, data: bytes) -> tuple[int, str]:
    """Send `data` on a new connection; the status and error message, and the server must
    then close the connection."""
    with connect(service) as sock:
        sock.sendall(data)
        raw = received_until_closed(sock, limit=SLACK)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    return status, error_of(body)


def test_a_url_too_long_gets_414(service: RunningService) -> None:
    status, message = refused(service, request_head("/healthz?" + "a" * MAX_URL_BYTES))
    assert status == 414
    assert message == f"the URL is longer than {MAX_URL_BYTES} bytes"


def test_a_url_at_the_limit_is_served(service: RunningService) -> None:
    path = "/healthz?" + "a" * (MAX_URL_BYTES - len("/healthz?"))
    with connect(service) as sock:
        assert get(sock, path).status == 200


def test_a_header_section_too_large_gets_431(service: RunningService) -> None:
    status, message = refused(service, request_head(headers={"X-Big": "b" * MAX_HEADER_BYTES}))
    assert status == 431
    assert message == f"the header section is larger than {MAX_HEADER_BYTES} bytes"


def test_a_huge_header_sent_in_pieces_gets_431_before_it_is_all_sent(
    service: RunningService,
) -> None:
    """httptools would buffer a header value of any size: the bytes are counted as they
    come, so the answer arrives while the client is still sending."""
    with connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        sent, received = 0, b""
        with contextlib.suppress(ConnectionError):
            while sent < 8 * MAX_HEADER_BYTES and not received:
                sock.sendall(b"b" * 16384)
                sent += 16384
                received = received_so_far(sock)
        assert received, f"no answer after {sent} bytes of one header field"
        received += received_until_closed(sock, limit=SLACK)
        assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def received_so_far(sock: ssl.SSLSocket) -> bytes:
    """What the server has sent within 50 ms (b"" if nothing; b"EOF" if it closed)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(65536) or b"EOF"
    except TimeoutError:
        return b""
    finally:
        sock.settimeout(10)


def test_too_many_header_fields_get_431(service: RunningService) -> None:
    headers = {f"X-Field-{number}": "v" for number in range(MAX_HEADERS)}
    status, message = refused(service, request_head(headers=headers))  # + Host: one too many
    assert status == 431
    assert message == f"more than {MAX_HEADERS} header fields"


def test_garbage_gets_400_as_json(service: RunningService) -> None:
    status, message = refused(service, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400
    assert message == "not a valid HTTP/1.1 request"


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The service with room for 4 connections and 2 requests at once."""
    running = start_service(tmp_path_factory.mktemp("capped"), [
        "--max-connections", "4", "--max-concurrent-requests", "2",
        "--request-read-timeout", "60"])
    yield running
    stop_service(running)


def hold_request(service: RunningService) -> socket.socket:
    """A connection whose review is in progress: its headers sent, half its body."""
    sock = connect(service)
    sock.sendall(post_head(len(REVIEW)) + REVIEW[: len(REVIEW) // 2])
    return sock


def wait_until_served(service: RunningService) -> None:
    """Closed connections are forgotten by the server a moment after the client closes."""
    deadline = time.monotonic() + SLACK
    while get_status(service) != 200:
        assert time.monotonic() < deadline, "the service kept refusing after the load went"
        time.sleep(0.1)


def test_requests_beyond_max_concurrent_requests_get_503(capped: RunningService) -> None:
    wait_until_served(capped)
    first, second = hold_request(capped), hold_request(capped)
    try:
        wait_for_request_cap(capped.port, capped.ca_file, reached=True)  # both with the app
        status, message = refused(capped, request_head("/healthz"))
        assert status == 503
        assert message == ("more than 2 requests in progress (--max-concurrent-requests): "
                           "retry later")
        first.sendall(REVIEW[len(REVIEW) // 2:])  # in progress means answered in the end
        assert read_response(first).status == 200
    finally:
        first.close()
        second.close()
    wait_until_served(capped)


def test_connections_beyond_max_connections_get_503(capped: RunningService) -> None:
    wait_until_served(capped)
    idle = [connect(capped) for _ in range(4)]
    try:
        for sock in idle:
            assert get(sock).status == 200
        status, message = refused(capped, request_head("/healthz"))
        assert status == 503
        assert message == ("more than 4 open connections (--max-connections): "
                           "retry on another connection later")
        assert get(idle[0]).status == 200  # the connections within the cap are served
    finally:
        for sock in idle:
            sock.close()
    wait_until_served(capped)


MEMORY_LIMIT_KIB = 256 * 1024
"""The Deployment's memory limit, 256Mi."""
IDLE_CLIENTS = 800
PARTIAL_CLIENTS = 30
PARTIAL_BODY = 7_900_000
"""Just under the 8 MiB body limit, so the body is not refused for its declared size."""


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def send_partial_body(service: RunningService, connections: list[socket.socket]) -> None:
    """Headers for an 8,000,000-byte review, 7.9 MB of it, then nothing."""
    sock = connect(service)
    connections.append(sock)
    with contextlib.suppress(OSError):  # refused at once, the server may stop reading
        sock.sendall(post_head(8_000_000) + b"x" * PARTIAL_BODY)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
def test_memory_stays_under_the_limit_with_idle_and_stalled_clients(tmp_path: Path) -> None:
    """800 idle keep-alive connections and 30 clients that send 7.9 MB of a body and stop:
    the service stays under 256 MiB (bodies past the body memory budget get 503), the
    stalled clients are cut at the read deadline, the idle ones are still served."""
    service = start_service(tmp_path)  # the default limits
    idle: list[socket.socket] = []
    stalled: list[socket.socket] = []
    try:
        for _ in range(IDLE_CLIENTS):
            idle.append(connect(service))
            assert get(idle[-1]).status == 200
        senders = [threading.Thread(target=send_partial_body, args=(service, stalled))
                   for _ in range(PARTIAL_CLIENTS)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=120)
        assert len(stalled) == PARTIAL_CLIENTS
        answers = [received_until_closed(sock, limit=10 + SLACK) for sock in stalled]
        peak = peak_rss_kib(service.process.pid)
        assert peak < MEMORY_LIMIT_KIB, f"peak RSS {peak} KiB"
        refused_503 = [answer for answer in answers if answer.startswith(b"HTTP/1.1 503 ")]
        assert all(answer == b"" for answer in answers if answer not in refused_503)
        assert len(refused_503) >= PARTIAL_CLIENTS - BODY_BUDGET_BYTES // PARTIAL_BODY
        assert b"request bodies being received would take more than the" in refused_503[0]
        assert get(idle[0]).status == 200 and get(idle[-1]).status == 200
        with connect(service) as sock:
            sock.sendall(post_head(len(REVIEW)) + REVIEW)
            assert read_response(sock).status == 200
    finally:
        for sock in idle + stalled:
            sock.close()
        stop_service(service)
