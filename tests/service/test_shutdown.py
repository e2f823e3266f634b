"""Graceful stop of the real service on SIGTERM (issue 10), over real sockets: readiness
false at once, no new connections, requests in flight answered, idle and slow
connections closed, exit within --shutdown-grace-period."""

import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.raw_clients import (
    get,
    post_head,
    read_response,
    seconds_until_closed,
    tls_connect,
    wait_for_request_cap,
)
from tests.support.service import (
    SAMPLE_REVIEWS,
    RunningService,
    free_port,
    start_service,
    stop_service,
)

REVIEW = (SAMPLE_REVIEWS / "policy-valid-example.json").read_bytes()
HALF = len(REVIEW) // 2
SLACK = 6.0
ONE_REQUEST = ["--max-concurrent-requests", "1"]
"""The cap that shows when a test's one request is with the app: a probe then gets 503."""


def connect(service: RunningService) -> socket.socket:
    return tls_connect(service.port, service.ca_file)


def wait_for_log(service: RunningService, line: str) -> None:
    """Until the service's log holds `line`; the deadline only ends a failure."""
    deadline = time.monotonic() + 30
    while line not in service.log():
        assert time.monotonic() < deadline, f"no {line!r} in the log:\n{service.log()}"
        time.sleep(0.05)


def wait_for_exit(process: subprocess.Popen[bytes], limit: float) -> float:
    """Seconds until the process exits; fail if it is still running after `limit`."""
    started = time.monotonic()
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"serve still running {limit} s after SIGTERM") from None
    return time.monotonic() - started


def test_sigterm_answers_in_flight_requests_and_closes_the_rest(tmp_path: Path) -> None:
    health_port = free_port()
    service = start_service(tmp_path, [
        "--shutdown-grace-period", "20", "--request-read-timeout", "60",
        "--health-probe-bind-address", f"127.0.0.1:{health_port}", *ONE_REQUEST])
    probe = httpx.Client(base_url=f"http://127.0.0.1:{health_port}", timeout=5)
    idle, slow_headers, in_flight = connect(service), connect(service), connect(service)
    try:
        assert get(idle).status == 200
        slow_headers.sendall(b"POST /validate-migrationpolicy HTTP/1.1\r\nHost: local")
        in_flight.sendall(post_head(len(REVIEW)) + REVIEW[:HALF])
        wait_for_request_cap(service.port, service.ca_file, reached=True)  # with the app
        assert probe.get("/readyz").status_code == 200

        service.process.send_signal(signal.SIGTERM)
        assert seconds_until_closed(idle, limit=SLACK) < SLACK
        assert seconds_until_closed(slow_headers, limit=SLACK) < SLACK
        readiness = probe.get("/readyz")
        assert (readiness.status_code, readiness.text) == (503, "shutting down\n")
        with pytest.raises(OSError):
            connect(service).close()  # the webhook port accepts no more
        assert service.process.poll() is None  # still waiting for the request in flight

        in_flight.sendall(REVIEW[HALF:])
        answer = read_response(in_flight)
        assert answer.status == 200
        assert b'"allowed":true' in answer.body
        assert answer.headers["connection"] == "close"
        assert wait_for_exit(service.process, SLACK) < SLACK
        assert service.process.returncode == 0
    finally:
        for sock in (idle, slow_headers, in_flight):
            sock.close()
        probe.close()
        stop_service(service)
    assert "SIGTERM: not ready any more, no new connections" in service.log()


@contextmanager
def terminated_with_a_stalled_request(
    tmp_path: Path, args: Sequence[str] = (),
) -> Iterator[tuple[RunningService, socket.socket]]:
    """The service started with `args`, half a review sent on one connection and with the
    app, then SIGTERM; the connection closed and the service stopped at the end. Yields the
    service, the connection and the time just before the signal was sent."""
    service = start_service(tmp_path, [*args, *ONE_REQUEST])
    stalled = connect(service)
    try:
        stalled.sendall(post_head(len(REVIEW)) + REVIEW[:HALF])
        wait_for_request_cap(service.port, service.ca_file, reached=True)
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        yield service, stalled, signalled
    finally:
        stalled.close()
        stop_service(service)


def test_a_stalled_request_is_cut_at_the_end_of_the_grace_period(tmp_path: Path) -> None:
    with terminated_with_a_stalled_request(tmp_path, [
            "--shutdown-grace-period", "2", "--request-read-timeout", "60"]) as (
            service, stalled, signalled):
        wait_for_exit(service.process, 2 + SLACK)
        assert time.monotonic() - signalled >= 2 - 0.1  # it did wait for the request
        assert seconds_until_closed(stalled, limit=SLACK) < SLACK
    assert "still open at the end of the shutdown grace period: closed" in service.log()


def test_with_the_defaults_a_slow_client_does_not_hold_the_exit_past_15_s(
    tmp_path: Path,
) -> None:
    """Default --request-read-timeout (10 s) and --shutdown-grace-period (15 s)."""
    with terminated_with_a_stalled_request(tmp_path) as (service, _, _):
        assert wait_for_exit(service.process, 15 + SLACK) <= 15


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    with terminated_with_a_stalled_request(tmp_path, [
            "--shutdown-grace-period", "60", "--request-read-timeout", "60"]) as (
            service, _, _):
        wait_for_log(service, "SIGTERM: not ready any more")  # the first signal handled
        assert service.process.poll() is None
        service.process.send_signal(signal.SIGINT)
        assert wait_for_exit(service.process, SLACK) < SLACK
    assert "SIGINT again: stopping now" in service.log()
