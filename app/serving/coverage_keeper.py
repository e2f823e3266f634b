"""Keeps what each policy governs current, off the event loop: the view of the cluster that
impact warnings read, and the coverage metrics.

A pass runs in a worker thread once the state is ready, then again whenever the state has
changed (a policy, or the labels of a VMI or namespace), at most every
`--coverage-interval`. It yields the GIL between chunks of VMIs, so the event loop goes on
answering reviews during a pass of seconds.
"""

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.policy.coverage import Coverage, coverage
from app.policy.impact import ClusterView
from app.state import ClusterState

log = logging.getLogger(__name__)

CHANGE_POLL_SECONDS = 0.5
"""How often a changed state is looked for, once the interval since the last pass is over."""
READY_POLL_SECONDS = 0.05
"""How often the state is asked whether it is ready, before the first pass."""
PREFIX = "migration_policy_webhook_"
K = TypeVar("K")
V = TypeVar("V")
PASS_SWITCH_INTERVAL = 0.001
"""Seconds a thread may hold the GIL while another waits, during a pass (Python's default
is 0.005)."""


class CoverageKeeper:
    """The latest ClusterView and Coverage of a state; `run` keeps them current."""

    def __init__(self, state: ClusterState, *, interval: float) -> None:
        self.state = state
        self.interval = interval
        self.view: ClusterView | None = None
        self.figures: CoverageFigures | None = None
        self.passes = 0
        self._seen = -1

    def refresh(self) -> None:
        """One pass (blocking: call it in a worker thread).

        The cyclic garbage collector is paused for the pass: its garbage is acyclic, freed
        as it goes, and a full collection started by its allocations would hold the GIL
        (the event loop's) for as long as it scans. What it leaves is a few objects. And
        the interpreter's switch interval is 1 ms meanwhile, not 5: the event loop waits
        for the GIL at most that long behind the pass."""
        paused = gc.isenabled()
        interval = sys.getswitchinterval()
        gc.disable()
        sys.setswitchinterval(PASS_SWITCH_INTERVAL)
        try:
            self._pass()
        finally:
            sys.setswitchinterval(interval)
            if paused:
                gc.enable()

    def _pass(self) -> None:
        started = time.perf_counter()
        changes = self.state.changes()
        vmis = self.state.all_vmi_labels()
        namespaces = self.state.all_namespace_labels()
        count = len(vmis)
        # First, as readiness waits for it. The copy of 100,000 entries is emptied as the
        # view is built: dropped at once, it would be one C call of milliseconds (holding
        # the GIL), and the pass reads the view.
        view = self.view = ClusterView.build(_drained(vmis), namespaces)
        report = coverage(self.state.policies, _vmis_of(view), view.namespaces,
                          pause=_yield_the_gil)
        self.figures = CoverageFigures.of(report)
        self._seen = changes
        self.passes += 1
        log.debug("coverage of %d policies over %d VMIs in %.3f s", len(report.policies),
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
    for namespace in view.spans:
        for labels in view.vmis_in(namespace):
            yield (namespace, ""), labels


def _drained(entries: dict[K, V]) -> Iterator[tuple[K, V]]:
    """The entries of a dict, each removed as it is read."""
    while entries:
        yield entries.popitem()


def _yield_the_gil() -> None:
    time.sleep(0)


@dataclass(frozen=True)
class CoverageFigures:
    """What the metrics need of a pass, kept as dicts of strings and integers, which the
    garbage collector does not track (a young collection after a pass would otherwise
    scan 10,000 new tuples in one step, holding the GIL)."""

    statuses: Mapping[str, int]
    governed: Mapping[str, int]
    """VMIs governed, by policy name."""
    matched: Mapping[str, int]
    """VMIs matched, by policy name."""

    @classmethod
    def of(cls, report: Coverage) -> "CoverageFigures":
        return cls({status.value: count for status, count in report.status_counts().items()},
                   {share.name: share.governs for share in report.policies},
                   {share.name: share.matches for share in report.policies})


class CoverageCollector(Collector):
    """`policies{status}`, and per policy `policy_governed_vmis` and `policy_matched_vmis`,
    read from the keeper's latest pass at scrape time (nothing before the first)."""

    def __init__(self, keeper: CoverageKeeper, *, per_policy: bool) -> None:
        self._keeper = keeper
        self._per_policy = per_policy

    def collect(self) -> Iterator[Metric]:
        figures = self._keeper.figures
        if figures is None:
            return
        statuses = GaugeMetricFamily(
            PREFIX + "policies", "MigrationPolicies by what they govern: active, shadowed "
            "(applies to VMIs, governs none), unused (applies to none), no-selectors.",
            labels=["status"])
        for status, count in figures.statuses.items():
            statuses.add_metric([status], count)
        yield statuses
        if not self._per_policy:
            return
        governed = GaugeMetricFamily(
            PREFIX + "policy_governed_vmis", "VMIs a policy takes precedence for now.",
            labels=["policy"])
        matched = GaugeMetricFamily(
            PREFIX + "policy_matched_vmis", "VMIs a policy applies to now, whether or not it "
            "takes precedence.", labels=["policy"])
        for name, governs in figures.governed.items():
            governed.add_metric([name], governs)
            matched.add_metric([name], figures.matched[name])
        yield governed
        yield matched
