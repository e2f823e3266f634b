"""The benchmark of issues 9 and 18: the service side by side with the floor, over TLS, one run.

`make bench` runs it; it prints figures and a table against the issue's targets, and exits 0
whatever they are. The floor (bench/floor.py) and the service are both up, but only one is
under load at a time, on CPU 1; the Go load generator (bench/loadgen/main.go, GOMAXPROCS=1)
and this script run on CPU 0 (where `taskset` exists). Throughput and latency are both
measured in rounds that alternate floor and service. The cluster state is the API
stand-in tests/support/kubeapi/, in this process, read by `serve --state kube --kubeconfig`.
docs/benchmarks.md describes the method.
"""

import argparse
import datetime
import gc
import importlib.metadata
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cluster
import in_process
import loadgen
import servers
from tables import print_table

from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH
from app.serving.tls import ensure_dev_certificates
from tests.support.kubeapi import MIGRATION_POLICIES, NAMESPACES, VMIS, KubeApiServer

Result = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What to measure, and for how long (the command line's options)."""

    seconds: float
    warmup: float
    rounds: int
    connections: int
    open_connections: int
    rates: tuple[int, ...]
    vmis: int
    namespaces: int
    policy_counts: tuple[int, int, int]
    in_process_number: int


def machine() -> list[str]:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    pinning = ("load generator on CPU 0, server on CPU 1 (taskset)" if servers.can_pin()
               else "not pinned (no taskset, or a single CPU)")
    return [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"machine: {os.cpu_count()} CPUs (nproc), {model}, Linux {platform.release()}",
        f"python: {platform.python_version()}; {pinning}",
        "packages: " + ", ".join(f"{name} {_version(name)}" for name in
                                 ("uvicorn", "uvloop", "httptools", "fastapi", "orjson")),
        f"load average at start: {load_average()}",
    ]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def busy_warning() -> str | None:
    """A warning when other work already loads the machine: req/s will be noisy."""
    one_minute = float(Path("/proc/loadavg").read_text().split()[0])
    if one_minute <= 0.5 * (os.cpu_count() or 1):
        return None
    return (f"warning: load average {one_minute:.2f} before the benchmark starts: other work "
            "shares these CPUs, so every figure is noisy, latencies most: run again on an idle "
            "machine for figures to publish")


API_SERVER_QUERY = "?timeout=10s"
"""What the API server adds to a webhook's URL on every call: its timeout."""


class Runner:
    """Puts the same load on the floor and on a service in turn, and keeps the figures."""

    def __init__(self, binary: Path, plan: Plan, bodies: dict[str, Path],
                 floor: servers.Server) -> None:
        self.binary = binary
        self.plan = plan
        self.bodies = bodies
        self.floor = floor
        self.results: dict[str, Result] = {}
        """By "floor KEY" and "service KEY"."""

    def throughput(self, key: str, service: servers.Server, path: str, bodies: str) -> None:
        """Closed loop, in rounds that alternate floor and service: each one's best round.

        Other work on the machine only ever slows a round down, and alternating gives both
        servers the same share of it, so the ratio of the best rounds is the steady one.
        """
        plan = self.plan
        rounds: dict[str, list[Result]] = {"floor": [], "service": []}
        for _ in range(plan.rounds):
            for name, server in (("floor", self.floor), ("service", service)):
                rounds[name].append(self._measure(
                    server, path, bodies, rate=0, seconds=plan.seconds / plan.rounds,
                    warmup=plan.warmup / plan.rounds))
        for name, results in rounds.items():
            best = dict(max(results, key=lambda result: float(result["rps"])))
            best["rounds_rps"] = [result["rps"] for result in results]
            best["server_cpu_us"] = min(result["server_cpu_us"] for result in results)
            for count in ("requests", "failures", "timeouts", "allowed", "patched"):
                best[count] = sum(result[count] for result in results)
            self.results[f"{name} {key}"] = best
            rates = " ".join(f"{rps:,.0f}" for rps in best["rounds_rps"])
            print(f"  {name:<8}{key:<19} closed loop  {describe(best)}\n"
                  f"  {'':<27} req/s of the {plan.rounds} rounds: {rates}", flush=True)

    def latency(self, key: str, service: servers.Server, path: str, bodies: str,
                rate: int) -> None:
        """Open loop at `rate`, in rounds that alternate floor and service: each one's median
        round by p99.

        A p99 over a few thousand requests is set by the slowest few dozen, so a single stall
        of this shared machine (tens of ms, seen by the floor as often as by the service)
        decides a whole measurement; the median of the rounds is the tail that recurs.
        """
        plan = self.plan
        rounds: dict[str, list[Result]] = {"floor": [], "service": []}
        for _ in range(plan.rounds):
            for name, server in (("floor", self.floor), ("service", service)):
                rounds[name].append(self._measure(
                    server, path, bodies, rate=rate, seconds=plan.seconds / plan.rounds,
                    warmup=plan.warmup / plan.rounds))
        for name, results in rounds.items():
            ordered = sorted(results, key=lambda result: float(result["p99_ms"]))
            median = dict(ordered[len(ordered) // 2])
            median["rounds_p99_ms"] = [result["p99_ms"] for result in results]
            median["max_ms"] = max(result["max_ms"] for result in results)
            for count in ("requests", "failures", "timeouts", "allowed", "patched", "late"):
                median[count] = sum(result[count] for result in results)
            self.results[f"{name} {key}"] = median
            p99s = " ".join(f"{p99:.2f}" for p99 in median["rounds_p99_ms"])
            print(f"  {name:<8}{key:<19} open loop    {describe(median)}\n"
                  f"  {'':<27} p99 ms of the {plan.rounds} rounds: {p99s}", flush=True)

    def _measure(self, server: servers.Server, path: str, bodies: str, *, rate: int,
                 seconds: float, warmup: float) -> Result:
        connections = self.plan.open_connections if rate else self.plan.connections
        load = loadgen.Load(url=server.url(path + API_SERVER_QUERY), bodies=self.bodies[bodies],
                            ca_file=server.ca_file, connections=connections, seconds=seconds,
                            warmup=warmup, rate=float(rate))
        cpu = server.cpu_seconds()
        result = loadgen.run(self.binary, load)
        answered = result["requests"] + result["warmup_requests"]
        result["server_cpu_us"] = (server.cpu_seconds() - cpu) / max(answered, 1) * 1e6
        return result


def describe(result: Result) -> str:
    """One measurement on one line: rate, latencies, counts, the server's CPU per request."""
    line = (f"{result['rps']:>7,.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
            f"p99 {result['p99_ms']:7.2f} ms  max {result['max_ms']:7.1f} ms  "
            f"{result['requests']:,} requests, {result['failures']} failed "
            f"({result['timeouts']} timeouts), {result['allowed']:,} allowed, "
            f"{result['patched']:,} patched, server CPU {result['server_cpu_us']:.0f} µs/req")
    if result["late"]:
        line += f", {result['late']} sent late"
    if result.get("first_error"):
        line += f"; first error: {result['first_error']}"
    return line


@contextmanager
def running(server: servers.Server) -> Iterator[servers.Server]:
    try:
        yield server
    finally:
        server.stop()


def start_kube_service(api: KubeApiServer, certs: Path, tmp: Path,
                       policies: int) -> servers.Server:
    kubeconfig = api.write_kubeconfig(tmp / f"kubeconfig-{policies}")
    started = time.perf_counter()
    service = servers.start_service(certs, tmp, ["--state", "kube",
                                                 "--kubeconfig", str(kubeconfig)])
    print(f"service (serve --state kube) with {policies:,} policies, "
          f"{cluster_counts(api)}: ready in {time.perf_counter() - started:.1f} s", flush=True)
    return service


def cluster_counts(api: KubeApiServer) -> str:
    vmis = len(api.snapshot(VMIS)[1])
    namespaces = len(api.snapshot(NAMESPACES)[1])
    return f"{vmis:,} VMIs, {namespaces:,} namespaces"


def measure(runner: Runner, certs: Path, tmp: Path) -> None:
    """Every figure: three services in turn (10, 10k, 100k policies), each against the floor."""
    plan = runner.plan
    few, many, most = plan.policy_counts
    with KubeApiServer(tmp / "api", history_limit=1000) as api:
        started = time.perf_counter()
        api.load(NAMESPACES, (cluster.namespace(i) for i in range(plan.namespaces)))
        api.load(VMIS, (cluster.vmi(i, plan.namespaces) for i in range(plan.vmis)))
        loaded = 0

        def grow_to(count: int) -> None:
            nonlocal loaded
            api.load(MIGRATION_POLICIES, (cluster.policy(i, plan.namespaces)
                                          for i in range(loaded, count)))
            loaded = count

        grow_to(few)
        gc.collect()
        gc.freeze()  # the stand-in's objects stay out of this process's collector's way
        print(f"cluster generated into the API stand-in in {time.perf_counter() - started:.1f} s",
              flush=True)
        with running(start_kube_service(api, certs, tmp, few)) as service:
            runner.throughput("validate", service, VALIDATE_PATH, "policy")
            runner.throughput(f"mutate {few}", service, MUTATE_PATH, "migration")
            for rate in plan.rates:
                runner.latency(f"validate @{rate}", service, VALIDATE_PATH, "policy", rate)
        grow_to(many)
        with running(start_kube_service(api, certs, tmp, many)) as service:
            runner.throughput(f"mutate {many}", service, MUTATE_PATH, "migration")
            for rate in plan.rates:
                runner.latency(f"mutate {many} @{rate}", service, MUTATE_PATH, "migration",
                               rate)
        grow_to(most)
        with running(start_kube_service(api, certs, tmp, most)) as service:
            runner.throughput(f"mutate {most}", service, MUTATE_PATH, "migration")


def verdict(value: float, target: float, *, at_least: bool) -> str:
    return "PASS" if (value >= target if at_least else value <= target) else "MISS"


def table(results: dict[str, Result], plan: Plan) -> list[list[str]]:
    """The rows: what, floor, service, ratio, target, PASS/MISS (each row's floor measured
    alongside that row's service)."""
    few, many, most = plan.policy_counts
    rows = [["what", "floor", "service", "ratio", "target", ""]]

    def rps(name: str, key: str) -> float:
        return float(results[f"{name} {key}"]["rps"])

    for what, key, target in (
            ("validate req/s, reference policy", "validate", 0.50),
            (f"mutate req/s, {few} policies", f"mutate {few}", None),
            (f"mutate req/s, {many:,} policies/{plan.vmis:,} VMIs/{plan.namespaces:,} ns",
             f"mutate {many}", 0.40),
            (f"mutate req/s, {most:,} policies (same VMIs, ns)", f"mutate {most}", None)):
        ratio = rps("service", key) / rps("floor", key)
        rows.append([what, f"{rps('floor', key):,.0f}", f"{rps('service', key):,.0f}",
                     f"{ratio:.2f} ×", f"≥ {target:.2f} ×" if target else "",
                     verdict(ratio, target, at_least=True) if target else ""])
    floor_drift = rps("floor", f"mutate {most}") / rps("floor", f"mutate {few}")
    service_flat = rps("service", f"mutate {most}") / rps("service", f"mutate {few}")
    flat = service_flat / floor_drift
    rows.append([f"mutate {most:,} vs {few} policies (÷ floor's drift)", f"{floor_drift:.2f} ×",
                 f"{service_flat:.2f} ×", f"{flat:.2f} ×", "≥ 0.80 ×",
                 verdict(flat, 0.80, at_least=True)])
    limits = {500: 1.3, 1000: 2.0}
    for what, key in (("validate", "validate"), (f"mutate {many:,}", f"mutate {many}")):
        for rate in plan.rates:
            f, s = results[f"floor {key} @{rate}"], results[f"service {key} @{rate}"]
            ratio = s["p99_ms"] / f["p99_ms"] if f["p99_ms"] else float("inf")
            limit = limits.get(rate, 2.0)
            failures = s["failures"] + f["failures"]
            ok = ratio <= limit and (rate != 1000 or failures == 0)
            rows.append([f"{what} @{rate} req/s p50 / p99 ms",
                         f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f}",
                         f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}", f"p99 {ratio:.2f} ×",
                         f"≤ {limit} ×" + (", no failures" if rate == 1000 else ""),
                         "PASS" if ok else "MISS"])
            rows.append([f"{what} @{rate} req/s failed (timeouts)",
                         f"{f['failures']} ({f['timeouts']}) of {f['requests']:,}",
                         f"{s['failures']} ({s['timeouts']}) of {s['requests']:,}", "", "", ""])
    return rows


def cpu_table(results: dict[str, Result], plan: Plan) -> list[list[str]]:
    """The throughput rows again, from the server's CPU time per request (closed loop)."""
    few, many, most = plan.policy_counts
    rows = [["server CPU per request (µs)", "floor", "service", "floor/service", "target", ""]]

    def us(name: str, key: str) -> float:
        return float(results[f"{name} {key}"]["server_cpu_us"])

    for what, key, target in (
            ("validate, reference policy", "validate", 0.50),
            (f"mutate, {few} policies", f"mutate {few}", None),
            (f"mutate, {many:,} policies", f"mutate {many}", 0.40),
            (f"mutate, {most:,} policies", f"mutate {most}", None)):
        ratio = us("floor", key) / us("service", key)
        rows.append([what, f"{us('floor', key):.0f}", f"{us('service', key):.0f}",
                     f"{ratio:.2f} ×", f"≥ {target:.2f} ×" if target else "",
                     verdict(ratio, target, at_least=True) if target else ""])
    flat = us("service", f"mutate {few}") / us("service", f"mutate {most}")
    rows.append([f"mutate {most:,} vs {few} policies", "", "", f"{flat:.2f} ×", "≥ 0.80 ×",
                 verdict(flat, 0.80, at_least=True)])
    return rows


def write_bodies(tmp: Path, plan: Plan) -> dict[str, Path]:
    bodies = {"policy": cluster.policy_reviews(64),
              "migration": cluster.migration_reviews(2000, plan.vmis, plan.namespaces)}
    paths = {}
    for name, items in bodies.items():
        path = tmp / f"{name}-reviews.ndjson"
        path.write_bytes(b"\n".join(items) + b"\n")
        paths[name] = path
        print(f"{name} reviews: {len(items):,}, {sum(map(len, items)) / len(items):,.0f} bytes "
              "on average", flush=True)
    return paths


def parse_args() -> tuple[Plan, bool]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured per server and measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="warm-up per server and measurement, split over the rounds")
    parser.add_argument("--rounds", type=int, default=5,
                        help="closed-loop rounds alternating floor and service (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="closed loop")
    parser.add_argument("--open-connections", type=int, default=64,
                        help="the open loop's connection pool limit")
    parser.add_argument("--vmis", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=10_000)
    parser.add_argument("--policies", type=int, nargs=3, default=(10, 10_000, 100_000),
                        metavar=("FEW", "MANY", "MOST"))
    parser.add_argument("--in-process-number", type=int, default=5000,
                        help="calls per round in process; 0 skips that section")
    parser.add_argument("--quick", action="store_true",
                        help="3 s per measurement, 1 s warm-up, a tenth of the cluster")
    args = parser.parse_args()
    plan = Plan(args.seconds, args.warmup, args.rounds, args.connections, args.open_connections,
                (500, 1000), args.vmis, args.namespaces, tuple(args.policies),
                args.in_process_number)
    if args.quick:
        plan = replace(plan, seconds=3.0, warmup=1.0, rounds=3, in_process_number=1000,
                       vmis=plan.vmis // 10, namespaces=plan.namespaces // 10,
                       policy_counts=(10, 1_000, 10_000))
    return plan, args.quick


def main() -> None:
    plan, quick = parse_args()
    if servers.can_pin():
        os.sched_setaffinity(0, {servers.LOADGEN_CPU})  # this process and its threads
    header = machine()
    busy = busy_warning()
    print("\n".join([*header, *([busy] if busy else [])]), flush=True)
    binary = loadgen.build()
    if plan.in_process_number:
        print()
        in_process.print_rows(in_process.rows(
            number=plan.in_process_number, policies=plan.policy_counts, vmis=plan.vmis,
            namespaces=plan.namespaces))
        gc.collect()
    print()
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp_name:
        tmp = Path(tmp_name)
        certs = tmp / "certs"
        ensure_dev_certificates(certs)
        bodies = write_bodies(tmp, plan)
        probe = bodies["policy"].read_bytes().split(b"\n")[0]
        with running(servers.start_floor(certs, tmp, probe)) as floor:
            print("floor: bench/floor.py on uvicorn with httptools and uvloop, up", flush=True)
            runner = Runner(binary, plan, bodies, floor)
            measure(runner, certs, tmp)
    print()
    print("\n".join(header))
    print(f"load average at the end: {load_average()}")
    if busy:
        print(busy)
    print(f"closed loop: {plan.connections} keep-alive connections, {plan.rounds} rounds of "
          f"{plan.seconds / plan.rounds:g} s (+{plan.warmup / plan.rounds:g} s warm-up) "
          "alternating floor and service, the best round of each; open loop: the same rounds "
          "at each rate, the median round by p99 of each (counts over all rounds), at most "
          f"{plan.open_connections} connections, latency from the scheduled send time"
          + ("; --quick: smaller cluster, figures only indicative" if quick else ""))
    print()
    print_table(table(runner.results, plan))
    print()
    print_table(cpu_table(runner.results, plan))


if __name__ == "__main__":
    main()
