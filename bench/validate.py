"""Benchmark of the validating webhook: run by hand (`make bench`); it prints figures only.

(a) validate_policy calls per second, in-process, on the reference example and on a policy
    with five mistakes;
(b) POST /validate-migrationpolicy against a real `serve` on loopback, over TLS, with one
    keep-alive client: requests per second and p50/p99 latency, bounded in count and time.
"""

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import SAMPLE_REVIEWS, start_service, stop_service  # noqa: E402

from app.policy_validation import validate_policy  # noqa: E402

VALIDATE = "/validate-migrationpolicy"


def example_review() -> dict[str, Any]:
    return json.loads((SAMPLE_REVIEWS / "policy-valid-example.json").read_text())


def five_mistakes_review() -> dict[str, Any]:
    review = example_review()
    review["request"]["uid"] = "00000000-0000-4000-8000-000000000555"
    policy = review["request"]["object"]
    policy["metadata"]["name"] = "Five_Mistakes"
    spec = policy["spec"]
    spec["bandwidthPerMigration"] = "-1Gi"
    spec["completionTimeoutPerGiB"] = "23"
    spec["bandwithPerMigration"] = "1Gi"
    spec["selectors"]["namespaceSelector"]["hpc-workloads"] = True
    return review


CASES = {
    "example (valid)": example_review,
    "five mistakes": five_mistakes_review,
}


def rate(call: Callable[[], object], seconds: float, limit: int) -> tuple[int, float]:
    """Calls made and elapsed time, calling until `seconds` pass or `limit` calls are made."""
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while calls < limit:
        for _ in range(100):
            call()
        calls += 100
        if time.perf_counter() >= deadline:
            break
    return calls, time.perf_counter() - started


def bench_in_process(seconds: float) -> list[tuple[str, str]]:
    rows = []
    for name, make in CASES.items():
        policy = make()["request"]["object"]
        causes = len(validate_policy(copy.deepcopy(policy)).causes)
        calls, elapsed = rate(lambda p=policy: validate_policy(p), seconds, 10_000_000)
        rows.append((f"validate_policy, {name}, {causes} causes",
                     f"{calls / elapsed:,.0f} calls/s  ({elapsed / calls * 1e6:.1f} µs/call)"))
    return rows


def bench_http(requests: int, seconds: float) -> list[tuple[str, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        service = start_service(Path(tmp))
        try:
            with service.client() as client:
                for name, make in CASES.items():
                    body = json.dumps(make()).encode()
                    headers = {"content-type": "application/json"}
                    for _ in range(50):  # warm up: connection, TLS session, code paths
                        client.post(VALIDATE, content=body, headers=headers).raise_for_status()
                    latencies = []
                    started = time.perf_counter()
                    deadline = started + seconds
                    while len(latencies) < requests and time.perf_counter() < deadline:
                        sent = time.perf_counter()
                        answer = client.post(VALIDATE, content=body, headers=headers)
                        latencies.append(time.perf_counter() - sent)
                        answer.raise_for_status()
                    elapsed = time.perf_counter() - started
                    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
                    rows.append((
                        f"POST {VALIDATE}, {name}",
                        f"{len(latencies) / elapsed:,.0f} req/s  p50 {cuts[49] * 1e3:.2f} ms  "
                        f"p99 {cuts[98] * 1e3:.2f} ms  ({len(latencies)} requests)",
                    ))
        finally:
            stop_service(service)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="time per in-process case (default 2)")
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per HTTP case (default 2000)")
    parser.add_argument("--http-seconds", type=float, default=30.0,
                        help="time limit per HTTP case (default 30)")
    args = parser.parse_args()
    rows = bench_in_process(args.seconds) + bench_http(args.requests, args.http_seconds)
    width = max(len(label) for label, _ in rows)
    print(f"{'benchmark':<{width}}  result")
    print(f"{'-' * width}  {'-' * 50}")
    for label, result in rows:
        print(f"{label:<{width}}  {result}")


if __name__ == "__main__":
    main()
