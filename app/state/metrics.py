"""The cluster state's metrics, read from the state when Prometheus scrapes (no `*_created`).

A state source describes itself as `StateFigures`; `StateCollector` turns them into the
series of docs/metrics.md. Nothing is counted twice: the figures are the ones the state
keeps for its own work (store sizes, the reflectors' restarts, the lookups' counts).
"""

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "migration_policy_webhook_"


@dataclass(frozen=True)
class StateFigures:
    """What a state source tells about itself at one moment."""

    objects: Mapping[str, int]
    """Objects in memory by resource plural, the `resource` label (valid policies only)."""
    last_sync: Mapping[str, float]
    """By resource, the Unix time of the last list, event or bookmark (or load); 0: never."""
    watch_restarts: Mapping[tuple[str, str], int] | None = None
    """Watches ended by (resource, reason); None for a source without watches."""
    direct_gets: Mapping[tuple[str, str], int] | None = None
    """Direct lookups by (resource, result); None for a source without them."""
    stamp_checks: Mapping[str, int] | None = None
    """Migrations whose stamp was compared with KubeVirt's choice, by result; None for a
    source that does not check them."""


def unix_time(monotonic: float | None) -> float:
    """A `time.monotonic()` reading as a Unix time; 0 for None (never)."""
    if monotonic is None:
        return 0.0
    return time.time() - (time.monotonic() - monotonic)


class StateCollector(Collector):
    """Series read from `figures()` at every scrape."""

    def __init__(self, figures: Callable[[], StateFigures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self._figures()
        objects = GaugeMetricFamily(
            PREFIX + "cache_objects", "Objects the cluster state holds in memory, by resource "
            "(valid MigrationPolicies only).", labels=["resource"])
        for resource, count in figures.objects.items():
            objects.add_metric([resource], count)
        yield objects
        last_sync = GaugeMetricFamily(
            PREFIX + "cache_last_sync_timestamp_seconds", "When the API last confirmed the "
            "cache of a resource (a list, an event or a bookmark; for --state DIR, the last "
            "load), as a Unix time; 0 if never.", labels=["resource"])
        for resource, stamp in figures.last_sync.items():
            last_sync.add_metric([resource], stamp)
        yield last_sync
        if figures.watch_restarts is not None:
            yield _counter(
                "watch_restarts", "Watches that ended and were started again, by resource "
                "and reason (expired, too_large_resource_version, idle, closed, error).",
                "reason", figures.watch_restarts)
        if figures.direct_gets is not None:
            yield _counter(
                "direct_gets", "Lookups of objects missing from the cache, by resource and "
                "result (found, not_found, error: a GET was made; rate_limited, "
                "negative_cached, coalesced: none was).", "result", figures.direct_gets)
        if figures.stamp_checks is not None:
            checks = CounterMetricFamily(
                PREFIX + "stamp_checks", "Migrations whose stamp was compared with the policy "
                "KubeVirt applied: agree, disagree, unstamped (no stamp, a policy applied), "
                "no-policy (neither).", labels=["result"])
            for result, count in figures.stamp_checks.items():
                checks.add_metric([result], count)
            yield checks


def _counter(name: str, documentation: str, label: str,
             counts: Mapping[tuple[str, str], int]) -> CounterMetricFamily:
    """A counter by resource and one more label, from counts kept by (resource, value)."""
    family = CounterMetricFamily(PREFIX + name, documentation, labels=["resource", label])
    for (resource, value), count in counts.items():
        family.add_metric([resource, value], count)
    return family
