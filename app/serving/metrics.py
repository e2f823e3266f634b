"""Prometheus metrics, in a registry of the app's own (no process-wide registry).

Label children used on the request path are bound once, here, so that counting a review
costs an increment and not a label lookup.
"""

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

OUTCOMES = ("allowed", "denied", "patched", "warned")
"""How a review ended; `warned`: invalid, admitted by `--enforcement warn`."""

# The `*_created` series double every counter's series for no use here.
disable_created_metrics()


class Metrics:
    """Reviews by webhook and outcome, latencies, refused bodies, errors, the certificate."""

    def __init__(self, webhooks: tuple[str, ...]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
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
        self.internal_errors = Counter(
            "migration_policy_webhook_internal_errors",
            "Reviews whose handler failed with a bug, answered with its errored answer.",
            ["webhook"],
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "migration_policy_webhook_client_disconnects",
            "Requests whose client hung up before the answer was sent.",
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "migration_policy_webhook_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (its notAfter), as a Unix time.",
            registry=self.registry,
        )
        for webhook in webhooks:
            self.latency.labels(webhook)
            self.internal_errors.labels(webhook)
            for outcome in OUTCOMES:
                self.reviews.labels(webhook, outcome)
