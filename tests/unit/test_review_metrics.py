"""The answered reviews' series, counted as plain integers and read at scrape time."""

from prometheus_client import generate_latest

from app.serving.metrics import DURATION_BUCKETS, Metrics


def scrape(metrics: Metrics) -> dict[str, float]:
    found = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def test_outcomes_are_counted_per_webhook():
    metrics = Metrics(("/validate", "/mutate"))
    for outcome in ("allowed", "allowed", "denied"):
        metrics.reviews["/validate"].record(outcome, 0.0001)
    metrics.reviews["/mutate"].record("patched", 0.0001)
    series = scrape(metrics)
    name = "migration_policy_webhook_reviews_total"
    assert series[f'{name}{{outcome="allowed",webhook="/validate"}}'] == 2
    assert series[f'{name}{{outcome="denied",webhook="/validate"}}'] == 1
    assert series[f'{name}{{outcome="warned",webhook="/validate"}}'] == 0
    assert series[f'{name}{{outcome="patched",webhook="/mutate"}}'] == 1
    assert series[f'{name}{{outcome="allowed",webhook="/mutate"}}'] == 0


def test_durations_fill_cumulative_buckets_bounds_included():
    metrics = Metrics(("/validate",))
    counts = metrics.reviews["/validate"]
    # on a bound (le is inclusive), between two bounds, beyond the last one
    for seconds in (0.001, 0.003, 5.0):
        counts.record("allowed", seconds)
    series = scrape(metrics)
    name = "migration_policy_webhook_review_duration_seconds"

    def bucket(le: str) -> float:
        return series[f'{name}_bucket{{le="{le}",webhook="/validate"}}']

    assert bucket("0.0005") == 0
    assert bucket("0.001") == 1
    assert bucket("0.0025") == 1
    assert bucket("0.005") == 2
    assert bucket("1.0") == 2
    assert bucket("+Inf") == 3
    assert series[f'{name}_count{{webhook="/validate"}}'] == 3
    assert abs(series[f'{name}_sum{{webhook="/validate"}}'] - 5.004) < 1e-9
    buckets = [key for key in series if key.startswith(f"{name}_bucket")]
    assert len(buckets) == len(DURATION_BUCKETS) + 1
