"""Prometheus metrics, in a registry of the app's own (no process-wide state)."""

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """Counters and latencies of admission reviews, by webhook and outcome."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reviews = Counter(
            "migration_policy_webhook_reviews",
            "Admission reviews answered, by webhook path and outcome.",
            ["webhook", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "migration_policy_webhook_review_duration_seconds",
            "Time to answer one admission review, body read included.",
            ["webhook"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.rejected_bodies = Counter(
            "migration_policy_webhook_bad_requests",
            "Requests refused before review: not an AdmissionReview, or too large.",
            ["webhook", "status"],
            registry=self.registry,
        )
