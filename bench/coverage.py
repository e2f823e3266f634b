"""Issue 20's bounds, in process: `coverage`, the impact warning and the coverage keeper at
100,000 VMIs, 10,000 namespaces and 10,000 policies (bench/cluster.py's generator).

`make bench` runs it (`PYTHONPATH=. python bench/coverage.py`); it prints figures and a table
against the bounds, and exits 0 whatever they are. docs/benchmarks.md ("Coverage and impact
(issue 20)") describes the method. In short:
- the coverage pass (`app.policy.coverage.coverage`, what the `coverage` command and every
  keeper pass run) over the state in memory: wall and CPU time, best of --rounds; the
  memory it allocates, tracemalloc's peak over a pass of its own;
- policy reviews with their `impact:` warning, answered as the server answers them: on a
  uvloop event loop, and when the impact needs more than the loop's share (WouldBlock),
  again in a worker thread; CPU per review (time.thread_time, both threads), whether the
  warning is complete or says `at least`, the longest stretch on the loop;
- a CoverageKeeper pass in a worker thread (`asyncio.to_thread(keeper.refresh)`) beside a
  lag probe on the loop (a task that sleeps 1 ms and records how late it wakes), against
  the same probe with no pass;
- apart, the `coverage` command (`python -m app coverage --state DIR`) on a generated
  directory of manifests, by default at a tenth of the size (--command-scale).
"""

import argparse
import asyncio
import datetime
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cluster
import orjson
import uvloop
from tables import print_table

from app.admission.answer import Answer, answer_review
from app.admission.handlers import (
    IMPACT_BUDGET_SECONDS,
    IMPACT_ON_LOOP_SECONDS,
    PolicyValidator,
)
from app.policy.coverage import Coverage, coverage
from app.policy.impact import ClusterView
from app.policy.model import policy_from_object
from app.policy.precedence import PolicyIndex
from app.serving.coverage_keeper import CoverageKeeper
from app.settings import KUBE_STATE, Settings
from app.state import WouldBlock
from app.state.stores import LabelStore, name_key, namespaced_key

T = TypeVar("T")
MIB = 1 << 20
PROBE_SLEEP = 0.001
"""The lag probe's sleep: it records how much later than this it wakes."""

COVERAGE_SECONDS = 2.0
COVERAGE_MIB = 100.0
REVIEW_CPU_SECONDS = 0.050
LOOP_STRETCH_SECONDS = 0.010


class BenchState:
    """What the handlers and a CoverageKeeper read of a ClusterState, over the live state's
    own label stores (interned labels, `snapshot()` copies); always ready, never changing."""

    def __init__(self, policies: PolicyIndex, vmis: LabelStore[tuple[str, str]],
                 namespaces: LabelStore[str]) -> None:
        self.policies = policies
        self._vmis = vmis
        self._namespaces = namespaces

    def is_ready(self) -> bool:
        return True

    def changes(self) -> int:
        return 0

    def staleness_warning(self) -> str | None:
        return None

    def vmi_labels(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self._vmis.get((namespace, name))

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        return self._namespaces.get(name)

    def all_vmi_labels(self) -> dict[tuple[str, str], Mapping[str, str]]:
        return self._vmis.snapshot()

    def all_namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        return self._namespaces.snapshot()


def build_state(settings: Settings, *, vmis: int, namespaces: int,
                policies: int) -> BenchState:
    index = PolicyIndex(settings.precedence, (policy_from_object(cluster.policy(i, namespaces))
                                              for i in range(policies)))
    vmi_store: LabelStore[tuple[str, str]] = LabelStore(namespaced_key)
    vmi_store.replace(cluster.vmi(i, namespaces) for i in range(vmis))
    namespace_store: LabelStore[str] = LabelStore(name_key)
    namespace_store.replace(cluster.namespace(i) for i in range(namespaces))
    return BenchState(index, vmi_store, namespace_store)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def header() -> list[str]:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return [f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
            f"machine: {os.cpu_count()} CPUs (nproc), {model}, Linux {platform.release()}",
            f"python: {platform.python_version()}, uvloop {uvloop.__version__}, not pinned",
            f"load average at start: {load_average()}"]


# -- the coverage pass ---------------------------------------------------------------------

@dataclass
class PassFigures:
    walls: list[float]
    cpus: list[float]
    report: Coverage


def time_coverage(state: BenchState, rounds: int) -> PassFigures:
    """`coverage` as the command runs it over a synced state: the snapshots, then the pass."""
    walls, cpus = [], []
    report = None
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.thread_time()
        report = coverage(state.policies, state.all_vmi_labels().items(),
                          state.all_namespace_labels())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)
    assert report is not None
    return PassFigures(walls, cpus, report)


def traced_peak_mib(work: Callable[[], object]) -> float:
    """The most memory `work` had allocated at once (tracemalloc; what it keeps included)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak / MIB


# -- the event loop: a lag probe, the keeper, the reviews ----------------------------------

async def lag_probe(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(PROBE_SLEEP)
        lags.append(time.perf_counter() - before - PROBE_SLEEP)


class Collections:
    """The cyclic garbage collector's full collections (generation 2) while it is installed:
    each holds the GIL throughout, whichever thread runs it."""

    def __init__(self) -> None:
        self.full: list[tuple[float, float, str]] = []
        """(wall seconds, CPU seconds, thread name) of each."""
        self._started: dict[int, tuple[float, float]] = {}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now, cpu, thread = time.perf_counter(), time.thread_time(), threading.get_ident()
        if phase == "start":
            self._started[thread] = now, cpu
        elif thread in self._started:
            started, cpu_started = self._started.pop(thread)
            if info["generation"] == 2:
                self.full.append((now - started, cpu - cpu_started,
                                  threading.current_thread().name))

    def __enter__(self) -> "Collections":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    @property
    def longest(self) -> tuple[float, float]:
        """The longest full collection's wall and CPU seconds (0, 0 without one)."""
        return max(((wall, cpu) for wall, cpu, _ in self.full), default=(0.0, 0.0))

    def line(self) -> str:
        if not self.full:
            return "no full collection"
        threads = sorted({thread for _, _, thread in self.full})
        wall, cpu = self.longest
        return (f"{len(self.full)} full collection(s) of the cyclic GC, the longest "
                f"{wall * 1e3:.1f} ms ({cpu * 1e3:.1f} ms of CPU; in {', '.join(threads)})")


async def probed(work: Awaitable[T]) -> tuple[T, list[float], float, Collections]:
    """Await `work` beside the lag probe: its result, the probe's lags, its wall time, and
    the full collections of the GC meanwhile."""
    stop, lags = asyncio.Event(), []
    probe = asyncio.create_task(lag_probe(stop, lags))
    await asyncio.sleep(0)  # the probe's first sleep begins
    with Collections() as collections:
        started = time.perf_counter()
        result = await work
        elapsed = time.perf_counter() - started
    stop.set()
    await probe
    return result, lags, elapsed, collections


def with_thread_time(call: Callable[[], T]) -> tuple[T, float]:
    cpu = time.thread_time()
    result = call()
    return result, time.thread_time() - cpu


@dataclass
class LagFigures:
    what: str
    seconds: float
    lags: list[float]
    collections: Collections
    cpu: float = 0.0

    @property
    def max(self) -> float:
        return max(self.lags, default=0.0)

    def line(self) -> str:
        lags = sorted(self.lags)
        p99 = lags[int(len(lags) * 0.99)] if lags else 0.0
        over = sum(lag > LOOP_STRETCH_SECONDS for lag in lags)
        cpu = f", {self.cpu:.2f} s of CPU in the worker" if self.cpu else ""
        return (f"  {self.what}: {self.seconds:.2f} s{cpu}; {len(lags):,} wake-ups, lag p50 "
                f"{statistics.median(lags) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, max "
                f"{self.max * 1e3:.2f} ms, {over} over {LOOP_STRETCH_SECONDS * 1e3:.0f} ms; "
                f"{self.collections.line()}")


async def keeper_passes(keeper: CoverageKeeper, passes: int,
                        floor_seconds: float) -> list[LagFigures]:
    """The probe alone, then each keeper pass in a worker thread beside it."""
    _, lags, elapsed, collections = await probed(asyncio.sleep(floor_seconds))
    found = [LagFigures("no pass (the floor)", elapsed, lags, collections)]
    for number in range(1, passes + 1):
        (_, cpu), lags, elapsed, collections = await probed(
            asyncio.to_thread(with_thread_time, keeper.refresh))
        found.append(LagFigures(f"keeper pass {number}", elapsed, lags, collections, cpu))
    return found


@dataclass
class ReviewFigures:
    on_loop_wall: float
    on_loop_cpu: float
    worker_cpu: float
    """0 when the loop answered it."""
    warning: str


async def one_review(body: bytes, handler_for: Callable[[str], PolicyValidator]
                     ) -> ReviewFigures:
    """As ReviewEndpoint answers a body under 64 KiB: on the loop, and when the handler
    raises WouldBlock, again in a worker thread."""
    wall, cpu = time.perf_counter(), time.thread_time()
    worker_cpu = 0.0
    answered: Answer
    try:
        answered = answer_review(body, handler_for)
        on_loop_wall, on_loop_cpu = time.perf_counter() - wall, time.thread_time() - cpu
    except WouldBlock:
        on_loop_wall, on_loop_cpu = time.perf_counter() - wall, time.thread_time() - cpu
        answered, worker_cpu = await asyncio.to_thread(
            with_thread_time, lambda: answer_review(body, handler_for))
    assert answered.decision["allowed"], answered.decision
    impact = [warning for warning in answered.decision.get("warnings", ())
              if warning.startswith("impact:")]
    assert len(impact) == 1, answered.decision
    return ReviewFigures(on_loop_wall, on_loop_cpu, worker_cpu, impact[0])


@dataclass
class CaseFigures:
    what: str
    reviews: list[ReviewFigures]
    lags: list[float]
    collections: Collections

    @property
    def cpus(self) -> list[float]:
        return [review.on_loop_cpu + review.worker_cpu for review in self.reviews]

    @property
    def longest_on_loop(self) -> float:
        return max(review.on_loop_wall for review in self.reviews)

    @property
    def longest_on_loop_cpu(self) -> float:
        return max(review.on_loop_cpu for review in self.reviews)

    @property
    def complete(self) -> bool:
        return all("at least" not in review.warning for review in self.reviews)


async def review_cases(cases: list[tuple[str, list[bytes]]],
                       handler_for: Callable[[str], PolicyValidator]) -> list[CaseFigures]:
    found = []
    for what, bodies in cases:
        async def answer_all(bodies: list[bytes] = bodies) -> list[ReviewFigures]:
            return [await one_review(body, handler_for) for body in bodies]
        reviews, lags, _, collections = await probed(answer_all())
        found.append(CaseFigures(what, reviews, lags, collections))
    return found


def policy_review_bodies(name: str, selectors: dict[str, Any], count: int) -> list[bytes]:
    """The bench's reference review (bench/cluster.py) with another name and selectors."""
    bodies = []
    for body in cluster.policy_reviews(count):
        review = orjson.loads(body)
        request = review["request"]
        request["name"] = name
        request["object"]["metadata"]["name"] = name
        request["object"]["spec"]["selectors"] = selectors
        bodies.append(orjson.dumps(review))
    return bodies


def review_cases_of(count: int) -> list[tuple[str, list[bytes]]]:
    # team-5's prod namespaces that hold app-205's VMIs: ns-00205, ns-01205, ... (10 of 50)
    specific = {"namespaceSelector": {"env": "prod", "team": "team-5"},
                "virtualMachineInstanceSelector": {"app": "app-205"}}
    return [
        ("(a) the reference review (bench/cluster.py)", cluster.policy_reviews(count)),
        ("(b) a specific policy: team-5's app-205", policy_review_bodies(
            "team-5-app-205", specific, count)),
        ("(c) a broad policy: namespaceSelector env: prod", policy_review_bodies(
            "prod-broad", {"namespaceSelector": {"env": "prod"}}, count)),
        ("(d) selectors {}: every VMI", policy_review_bodies("every-vmi", {}, count)),
    ]


# -- the command on a directory state ------------------------------------------------------

def write_directory_state(directory: Path, *, vmis: int, namespaces: int,
                          policies: int) -> int:
    """Three List manifests (JSON); VMIs with their metadata only. The bytes written."""
    def manifest(items: list[dict[str, Any]]) -> bytes:
        return orjson.dumps({"apiVersion": "v1", "kind": "List", "items": items})

    vmi_objects = []
    for i in range(vmis):
        metadata = cluster.vmi(i, namespaces)["metadata"]
        vmi_objects.append({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                            "metadata": {key: metadata[key]
                                         for key in ("name", "namespace", "labels")}})
    files = {"namespaces.json": [cluster.namespace(i) for i in range(namespaces)],
             "vmis.json": vmi_objects,
             "policies.json": [cluster.policy(i, namespaces) for i in range(policies)]}
    written = 0
    for name, items in files.items():
        written += (directory / name).write_bytes(manifest(items))
    return written


def time_command(directory: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of `python -m app coverage --state DIR`, and its summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "app", "coverage", "--state", str(directory)],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout.strip().splitlines()[-2]


# -- the table -----------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vmis", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="coverage passes timed (best)")
    parser.add_argument("--passes", type=int, default=2, help="keeper passes under the probe")
    parser.add_argument("--reviews", type=int, default=20, help="reviews of each case")
    parser.add_argument("--command-scale", type=float, default=0.1,
                        help="the directory state's size for the `coverage` command, as a "
                        "fraction of the cluster (1 for all of it: over a minute); 0 skips it")
    args = parser.parse_args()
    lines = header()
    print("\n".join(lines), flush=True)
    settings = Settings(state=KUBE_STATE)

    started, rss = time.perf_counter(), rss_mib()
    state = build_state(settings, vmis=args.vmis, namespaces=args.namespaces,
                        policies=args.policies)
    gc.collect()
    gc.freeze()  # as serve does once the state is ready (app/serving/app.py)
    print(f"cluster: {args.vmis:,} VMIs, {args.namespaces:,} namespaces, {args.policies:,} "
          f"policies, built in {time.perf_counter() - started:.1f} s; resident "
          f"{rss_mib():.0f} MiB ({rss:.0f} MiB before)", flush=True)

    print("\nthe coverage pass (snapshots of the label stores, then `coverage`), "
          f"{args.rounds} rounds:")
    passes = time_coverage(state, args.rounds)
    report = passes.report
    counts = {status.value: count for status, count in report.status_counts().items()}
    governed = sum(policy.governs for policy in report.policies)
    print(f"  wall {', '.join(f'{wall:.2f}' for wall in passes.walls)} s; CPU "
          f"{', '.join(f'{cpu:.2f}' for cpu in passes.cpus)} s")
    print(f"  {report.vmi_count:,} VMIs, {governed:,} governed; policies {counts}")
    memory = traced_peak_mib(lambda: coverage(state.policies, state.all_vmi_labels().items(),
                                              state.all_namespace_labels()))
    per_vmi = traced_peak_mib(lambda: coverage(
        state.policies, state.all_vmi_labels().items(), state.all_namespace_labels(),
        per_vmi=True))
    view = traced_peak_mib(lambda: ClusterView.build(state.all_vmi_labels().items(),
                                                     state.all_namespace_labels()))
    print(f"  allocated at most (tracemalloc peak, the result included): {memory:.1f} MiB; "
          f"with per_vmi (`coverage --vmis`) {per_vmi:.1f} MiB; a keeper's ClusterView.build "
          f"{view:.1f} MiB", flush=True)

    keeper = CoverageKeeper(state, interval=30.0)  # type: ignore[arg-type]
    validator = PolicyValidator(settings, state, lambda: keeper.view)  # type: ignore[arg-type]

    async def on_the_loop() -> tuple[list[LagFigures], list[CaseFigures]]:
        lagged = await keeper_passes(keeper, args.passes, floor_seconds=2.0)
        reviewed = await review_cases(review_cases_of(args.reviews), lambda _: validator)
        return lagged, reviewed

    lagged, reviewed = uvloop.run(on_the_loop())
    print(f"\nthe event loop (uvloop) beside a CoverageKeeper pass in a worker thread; lag = "
          f"how late a {PROBE_SLEEP * 1e3:.0f} ms sleep wakes:")
    for figures in lagged:
        print(figures.line())
    print(f"\npolicy reviews with the impact warning, {args.reviews} of each, answered as the "
          f"server answers them (on the loop with a {IMPACT_ON_LOOP_SECONDS * 1e3:.0f} ms "
          f"budget, else again in a worker thread with {IMPACT_BUDGET_SECONDS * 1e3:.0f} ms):")
    for case in reviewed:
        cpus = case.cpus
        threaded = sum(review.worker_cpu > 0 for review in case.reviews)
        print(f"  {case.what}: {case.reviews[0].warning}")
        print(f"    CPU per review median {ms(statistics.median(cpus))}, max {ms(max(cpus))}; "
              f"{threaded} of {len(case.reviews)} judged again in a worker thread; on the loop "
              f"median {ms(statistics.median(r.on_loop_wall for r in case.reviews))}, max "
              f"{ms(case.longest_on_loop)} (CPU max "
              f"{ms(max(r.on_loop_cpu for r in case.reviews))}); worker CPU max "
              f"{ms(max(r.worker_cpu for r in case.reviews))}; probe lag max "
              f"{ms(max(case.lags, default=0.0))}; {case.collections.line()}")

    command = None
    if args.command_scale:
        vmis, namespaces, policies = (max(1, int(count * args.command_scale)) for count in
                                      (args.vmis, args.namespaces, args.policies))
        with tempfile.TemporaryDirectory(prefix="bench-coverage-") as tmp:
            written = write_directory_state(Path(tmp), vmis=vmis, namespaces=namespaces,
                                            policies=policies)
            wall, cpu, summary = time_command(Path(tmp))
        command = (vmis, namespaces, policies, wall)
        print(f"\nthe `coverage` command on a directory state (apart: not the bound; PyYAML "
              f"reads the files): {vmis:,} VMIs (metadata only), {namespaces:,} namespaces, "
              f"{policies:,} policies, {written / MIB:.0f} MiB of JSON: {wall:.1f} s "
              f"({cpu:.1f} s of CPU); it says: {summary}")

    print()
    print("\n".join(lines))
    print(f"load average at the end: {load_average()}")
    print()
    floor, *keeper_figures = lagged
    rows = [["what", "measured", "bound", ""],
            ["coverage pass, best of rounds (wall; CPU)",
             f"{min(passes.walls):.2f} s; {min(passes.cpus):.2f} s", f"≤ {COVERAGE_SECONDS:g} s",
             verdict(min(passes.walls) <= COVERAGE_SECONDS)],
            ["coverage pass, slowest round (wall)", f"{max(passes.walls):.2f} s", "", ""],
            ["coverage pass, memory allocated (peak)", f"{memory:.1f} MiB",
             f"≤ +{COVERAGE_MIB:g} MiB", verdict(memory <= COVERAGE_MIB)]]
    for case in reviewed:
        label = case.what.split(" ", 1)[0]
        rows.append([f"impact {label}: CPU per review, max ("
                     f"{'complete' if case.complete else 'at least'})", ms(max(case.cpus)),
                     f"≤ {ms(REVIEW_CPU_SECONDS)}",
                     verdict(max(case.cpus) <= REVIEW_CPU_SECONDS)])
        rows.append([f"impact {label}: longest stretch on the loop, wall (CPU), max",
                     f"{ms(case.longest_on_loop)} ({ms(case.longest_on_loop_cpu)})",
                     f"≤ {ms(LOOP_STRETCH_SECONDS)}",
                     verdict(case.longest_on_loop <= LOOP_STRETCH_SECONDS)])
    worst = max(keeper_figures, key=lambda figures: figures.max)
    rows.append(["keeper pass: the loop's max lag", ms(worst.max),
                 f"≤ {ms(LOOP_STRETCH_SECONDS)}", verdict(worst.max <= LOOP_STRETCH_SECONDS)])
    full = max((figures.collections.longest for figures in keeper_figures),
               default=(0.0, 0.0))
    rows.append(["  the longest full GC collection in a pass, wall (CPU)",
                 f"{ms(full[0])} ({ms(full[1])})" if full[0] else "none", "", ""])
    rows.append(["  the same probe, no pass (the floor)", ms(floor.max), "", ""])
    rows.append(["  keeper pass duration (wall)",
                 ", ".join(f"{figures.seconds:.2f} s" for figures in keeper_figures), "", ""])
    if command is not None:
        vmis, namespaces, policies, wall = command
        rows.append([f"apart: `coverage --state DIR`, {vmis:,} VMIs/{namespaces:,} ns/"
                     f"{policies:,} policies", f"{wall:.1f} s", "", ""])
    print_table(rows)


if __name__ == "__main__":
    main()
