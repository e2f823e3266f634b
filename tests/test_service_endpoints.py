"""Liveness, readiness and metrics of the real service (contract §1)."""

import httpx
from conftest import SAMPLE_REVIEWS


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
