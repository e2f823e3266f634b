"""Liveness, readiness and metrics of the real service (contract §1), on the webhook port
and on the plain-HTTP ports; the listening addresses."""

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.serving.certificates import load_certificate
from tests.support.raw_clients import get, post_head, read_response, tls_connect
from tests.support.service import (
    SAMPLE_REVIEWS,
    RunningService,
    free_port,
    run_cli,
    start_service,
    stop_service,
)


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text exposition, 0 if absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").text == "ok\n"
    assert client.get("/readyz").status_code == 200


def test_metrics_count_reviews_by_outcome(client: httpx.Client) -> None:
    answer = client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    name = "migration_policy_webhook_reviews_total"
    path = "/mutate-virtualmachineinstancemigration"
    before = metric(client, name, webhook=path, outcome="patched")
    body = (SAMPLE_REVIEWS / "migration-db-vmi.json").read_bytes()
    for _ in range(3):
        assert client.post(path, content=body).status_code == 200
    assert metric(client, name, webhook=path, outcome="patched") == before + 3
    denied_before = metric(client, name, webhook="/validate-migrationpolicy", outcome="denied")
    bad = (SAMPLE_REVIEWS / "policy-negative-bandwidth.json").read_bytes()
    client.post("/validate-migrationpolicy", content=bad)
    assert metric(client, name, webhook="/validate-migrationpolicy",
                  outcome="denied") == denied_before + 1
    bad_before = metric(client, "migration_policy_webhook_bad_requests_total", webhook=path,
                        status="400")
    client.post(path, content=b"not json")
    assert metric(client, "migration_policy_webhook_bad_requests_total", webhook=path,
                  status="400") == bad_before + 1


def test_a_declared_body_over_the_limit_is_refused_unread_and_counted_for_its_webhook(
        service: RunningService, client: httpx.Client) -> None:
    """The 413 for a Content-Length over --max-body-bytes (8 MiB) comes before the app,
    from the per-request limits; it is counted under the webhook's path, and a path that
    is not a webhook gets no series."""
    name = "migration_policy_webhook_bad_requests_total"
    path = "/validate-migrationpolicy"
    before = metric(client, name, webhook=path, status="413")
    for target in (path, "/healthz"):
        with tls_connect(service.port, service.ca_file) as sock:
            sock.sendall(post_head(8 * 1024 * 1024 + 1, target))
            answer = read_response(sock)
        assert answer.status == 413
        assert answer.body == b'{"error":"the body is larger than the limit of 8388608 bytes"}'
        assert answer.headers["connection"] == "close"
    assert metric(client, name, webhook=path, status="413") == before + 1
    assert 'webhook="/healthz"' not in client.get("/metrics").text


# The plain-HTTP probe and metrics ports (issue 12).


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def with_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningService,
                                                                           int, int]]:
    """The service with --health-probe-bind-address and --metrics-bind-address."""
    health, metrics = free_port(), free_port()
    running = start_service(tmp_path_factory.mktemp("ports"), [
        "--health-probe-bind-address", f"127.0.0.1:{health}",
        "--metrics-bind-address", f":{metrics}"])
    yield running, health, metrics
    stop_service(running)


def test_probes_are_served_over_plain_http(with_ports: tuple[RunningService, int, int]) -> None:
    _, health, _ = with_ports
    with httpx.Client(base_url=f"http://127.0.0.1:{health}", timeout=10) as plain:
        assert plain.get("/healthz").text == "ok\n"
        assert plain.get("/readyz").text == "ok\n"
        assert plain.get("/metrics").status_code == 404
        assert plain.post("/validate-migrationpolicy", content=b"{}").status_code in (404, 405)


def test_metrics_are_served_over_plain_http_on_every_address(
    with_ports: tuple[RunningService, int, int],
) -> None:
    service, _, metrics = with_ports
    hosts = ["127.0.0.1"] + (["[::1]"] if has_ipv6() else [])
    for host in hosts:
        with httpx.Client(base_url=f"http://{host}:{metrics}", timeout=10) as plain:
            assert plain.get("/healthz").status_code == 404
            answer = plain.get("/metrics")
            assert answer.status_code == 200
            assert "migration_policy_webhook_reviews_total" in answer.text
    with service.client() as client:  # the webhook port keeps all three for curl users
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert "migration_policy_webhook_reviews_total" in client.get("/metrics").text


def test_the_metrics_port_reports_the_serving_certificate_expiry(
    with_ports: tuple[RunningService, int, int],
) -> None:
    service, _, metrics = with_ports
    expected = load_certificate(service.ca_file.parent / "tls.crt").not_valid_after_utc
    with httpx.Client(base_url=f"http://127.0.0.1:{metrics}", timeout=10) as plain:
        text = plain.get("/metrics").text
    name = "migration_policy_webhook_certificate_expiry_timestamp_seconds"
    value = next(line.split()[1] for line in text.splitlines() if line.startswith(f"{name} "))
    assert float(value) == expected.timestamp()


def test_the_ports_are_named_in_the_log(with_ports: tuple[RunningService, int, int]) -> None:
    service, health, metrics = with_ports
    log = service.log()
    assert f"serving /healthz and /readyz over HTTP on 127.0.0.1:{health}" in log
    assert f"serving /metrics over HTTP on [::]:{metrics} (IPv6 and IPv4)" in log or (
        f"serving /metrics over HTTP on 0.0.0.0:{metrics}" in log and not has_ipv6())


def test_a_taken_probe_port_is_a_usage_error_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--host", "127.0.0.1", "--port", str(free_port()),
                         "--certs-dir", str(tmp_path / "certs"),
                         "--health-probe-bind-address", f"127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    assert (f"--health-probe-bind-address 127.0.0.1:{port}: 127.0.0.1:{port} is already in "
            "use (is another serve running?): stop it or choose another "
            "--health-probe-bind-address") in result.stderr


# --host "" (the default): IPv4 and IPv6.


def test_every_address_means_ipv4_and_ipv6(tmp_path: Path) -> None:
    service = start_service(tmp_path, ["--host", ""])
    try:
        hosts = ["127.0.0.1"] + (["::1"] if has_ipv6() else [])
        for host in hosts:
            with tls_connect(service.port, service.ca_file, host=host) as sock:
                assert get(sock).status == 200
        expected = "(IPv6 and IPv4)" if has_ipv6() else f"0.0.0.0:{service.port}"
        assert expected in service.log()
    finally:
        stop_service(service)


def test_a_probe_port_equal_to_another_of_ours_is_a_usage_error(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli("serve", "--host", "127.0.0.1", "--port", str(port),
                     "--certs-dir", str(tmp_path / "certs"),
                     "--metrics-bind-address", f":{port}")
    assert result.returncode == 2, result.stderr
    assert (f"--metrics-bind-address :{port}: port {port} is --port {port} already: give "
            "--metrics-bind-address a port of its own") in result.stderr
