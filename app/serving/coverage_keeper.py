"""Keeps what each policy governs current, off the event loop: the view of the cluster that
impact warnings read, and the coverage metrics.

A pass runs in a worker thread once the state is ready, then again whenever the state has
changed (a policy, or the labels of a VMI or namespace), at most every
`--coverage-interval`. It yields the GIL between chunks of VMIs, so the event loop goes on
answering reviews during a pass of seconds.
"""

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.policy.coverage import Coverage, Status, coverage
from app.policy.impact import ClusterView
from app.state import ClusterState

log = logging.getLogger(__name__)

CHANGE_POLL_SECONDS = 0.5
"""How often a changed state is looked for, once the interval since the last pass is over."""
READY_POLL_SECONDS = 0.05
"""How often the state is asked whether it is ready, before the first pass."""
PREFIX = "migration_policy_webhook_"


class CoverageKeeper:
    """The latest ClusterView and Coverage of a state; `run` keeps them current."""

    def __init__(self, state: ClusterState, *, interval: float) -> None:
        self.state = state
        self.interval = interval
        self.view: ClusterView | None = None
        self.report: Coverage | None = None
        self.passes = 0
        self._seen = -1

    def latest_view(self) -> ClusterView | None:
        return self.view

    def refresh(self) -> None:
        """One pass (blocking: call it in a worker thread)."""
        started = time.perf_counter()
        changes = self.state.changes()
        vmis = self.state.all_vmi_labels()
        namespaces = self.state.all_namespace_labels()
        count = len(vmis)
        view = self.view = ClusterView.build(vmis, namespaces)  # first: readiness waits for it
        del vmis  # a copy of 100,000 entries: gone before the pass, which reads the view
        self.report = coverage(self.state.policies, _vmis_of(view), view.namespaces,
                               pause=_yield_the_gil)
        self._seen = changes
        self.passes += 1
        log.debug("coverage of %d policies over %d VMIs in %.3f s", len(self.report.policies),
                  count, time.perf_counter() - started)

    async def run(self) -> None:
        while True:
            if self.state.is_ready() and self.state.changes() != self._seen:
                await asyncio.to_thread(self.refresh)
                await asyncio.sleep(self.interval)
            else:
                await asyncio.sleep(CHANGE_POLL_SECONDS if self.passes else READY_POLL_SECONDS)


def _vmis_of(view: ClusterView) -> Iterator[tuple[tuple[str, str], Mapping[str, str]]]:
    """The view's VMIs as `coverage` takes them (their names are not needed: no --vmis)."""
    for namespace, group in view.vmis_by_namespace.items():
        for labels in group:
            yield (namespace, ""), labels


def _yield_the_gil() -> None:
    time.sleep(0)


class CoverageCollector(Collector):
    """`policies{status}`, and per policy `policy_governed_vmis` and `policy_matched_vmis`,
    read from the keeper's latest pass at scrape time (nothing before the first)."""

    def __init__(self, keeper: CoverageKeeper, *, per_policy: bool) -> None:
        self._keeper = keeper
        self._per_policy = per_policy

    def collect(self) -> Iterator[Metric]:
        report = self._keeper.report
        if report is None:
            return
        statuses = GaugeMetricFamily(
            PREFIX + "policies", "MigrationPolicies by what they govern: active, shadowed "
            "(applies to VMIs, governs none), unused (applies to none), no-selectors.",
            labels=["status"])
        for status in Status:
            statuses.add_metric([status.value], len(report.in_status(status)))
        yield statuses
        if not self._per_policy:
            return
        governed = GaugeMetricFamily(
            PREFIX + "policy_governed_vmis", "VMIs a policy takes precedence for now.",
            labels=["policy"])
        matched = GaugeMetricFamily(
            PREFIX + "policy_matched_vmis", "VMIs a policy applies to now, whether or not it "
            "takes precedence.", labels=["policy"])
        for share in report.policies:
            governed.add_metric([share.name], share.governs)
            matched.add_metric([share.name], share.matches)
        yield governed
        yield matched
