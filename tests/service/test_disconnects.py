"""A client that hangs up mid-request is counted, not an error."""

import socket
import ssl
import time

import pytest

from tests.support.raw_clients import wait_for_request_cap
from tests.support.service import start_service, stop_service

DISCONNECTS = "migration_policy_webhook_client_disconnects_total"


@pytest.fixture(scope="module")
def debug_service(tmp_path_factory):
    """With room for one request at once: a probe that gets 503 shows that a test's one
    request is with the app."""
    service = start_service(tmp_path_factory.mktemp("disconnects"),
                            ["--log-level", "debug", "--max-concurrent-requests", "1"])
    yield service
    stop_service(service)


def disconnects(client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(DISCONNECTS + " "):
            return float(line.split()[1])
    raise AssertionError(f"{DISCONNECTS} is not exported")


def hang_up_mid_body(service, path: str) -> None:
    """Hang up while the app waits for the rest of the body; return once it is done with
    the request."""
    context = ssl.create_default_context(cafile=str(service.ca_file))
    with socket.create_connection(("127.0.0.1", service.port)) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                    "\r\nContent-Length: 5000\r\n\r\n{\"apiVersion\":".encode())
        wait_for_request_cap(service.port, service.ca_file, reached=True)
    wait_for_request_cap(service.port, service.ca_file, reached=False)


def test_a_client_hanging_up_is_counted_and_logged_once_at_debug(debug_service):
    with debug_service.client() as client:
        before = disconnects(client)
        for _ in range(5):
            hang_up_mid_body(debug_service, "/validate-migrationpolicy")
        deadline = time.monotonic() + 10
        while disconnects(client) < before + 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert disconnects(client) == before + 5
    log = debug_service.log()
    assert "Traceback" not in log
    assert log.count("client hung up before sending its review") == 5
