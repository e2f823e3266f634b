"""Prometheus metrics, in a registry of the app's own (no process-wide registry).

Every answered review is counted in `ReviewCounts`, plain integers of its webhook, and read
as series only when Prometheus scrapes (`ReviewCollector`): an increment and a bisect, where
a client library Counter and Histogram cost a lock each and a loop over the buckets, about
3 µs of the request path over TLS. The rare counts (refused bodies, errors, disconnects)
are the client library's, their label children bound once.
"""

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

OUTCOMES = ("allowed", "denied", "patched", "warned")
"""How a review ended; `warned`: invalid, admitted by `--enforcement warn`."""

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds, in seconds, of the review duration histogram's buckets."""

# The `*_created` series double every counter's series for no use here.
disable_created_metrics()


class ReviewCounts:
    """The reviews one webhook answered: by outcome, and their durations as a histogram.

    Counted on the event loop only (an answer judged in a worker thread is counted when
    the loop sends it), so plain integers need no lock.
    """

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        """Observations in each bucket alone (not cumulative); the last one is +Inf's."""
        self.duration_sum = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] += 1
        self.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds


class ReviewCollector(Collector):
    """`reviews_total` and `review_duration_seconds`, read from each webhook's counts."""

    def __init__(self, counts: dict[str, ReviewCounts]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        reviews = CounterMetricFamily(
            "migration_policy_webhook_reviews",
            "Admission reviews answered, by webhook path and outcome.",
            labels=["webhook", "outcome"])
        durations = HistogramMetricFamily(
            "migration_policy_webhook_review_duration_seconds",
            "Time to answer one admission review, body read included.",
            labels=["webhook"])
        bounds = [*map(floatToGoString, DURATION_BUCKETS), "+Inf"]
        for webhook, counts in self._counts.items():
            for outcome, count in counts.outcomes.items():
                reviews.add_metric([webhook, outcome], count)
            cumulative = list(zip(bounds, accumulate(counts.buckets), strict=True))
            durations.add_metric([webhook], cumulative, counts.duration_sum)
        yield reviews
        yield durations


class Metrics:
    """Reviews by webhook and outcome, latencies, refused bodies, errors, the certificate."""

    def __init__(self, webhooks: tuple[str, ...]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.reviews = {webhook: ReviewCounts() for webhook in webhooks}
        """Answered reviews by webhook path."""
        self.registry.register(ReviewCollector(self.reviews))
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
            self.internal_errors.labels(webhook)
