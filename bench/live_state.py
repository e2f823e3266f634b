"""Benchmark of `--state kube`, prints figures only.

Run by `make bench`, or by hand: `PYTHONPATH=. python bench/live_state.py`.

Loads a large cluster into the stand-in API server (tests/support/kubeapi/): by default 100,000
VMIs in 10,000 namespaces and 10,000 MigrationPolicies, with labels, annotations and
managedFields shaped like KubeVirt's. Then:
(a) starts a real `serve --state kube --kubeconfig` and prints the time until /readyz
    answers 200, each kind's list time as the service logs it, and the service's resident
    memory (and, for comparison, that of the same service on an empty cluster);
(b) POSTs migration reviews for random VMIs over TLS with one keep-alive client: p50/p99
    latency and requests per second;
(c) in-process: a KubeState synced from the same server, and the MigrationStamper's time
    per decision (cache hits, no HTTP).
"""

import argparse
import asyncio
import gc
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from app.admission.handlers import MUTATE_PATH, MigrationStamper
from app.admission.review import AdmissionRequest, parse_review
from app.policy.precedence import PolicyIndex
from app.settings import KUBE_STATE, Settings
from app.state.kube import KubeState
from app.state.kube_api import KubeApi
from tests.support.kubeapi import MIGRATION_POLICIES, NAMESPACES, VMIS, KubeApiServer
from tests.support.service import RunningService, start_service, stop_service

ENVS = ("prod", "staging", "dev")
TIERS = ("gold", "silver", "bronze")
OSES = ("linux", "windows")


def namespace_name(index: int) -> str:
    return f"ns-{index:05}"


def make_namespace(index: int) -> dict[str, Any]:
    name = namespace_name(index)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name,
        "labels": {"kubernetes.io/metadata.name": name, "team": f"team-{index % 200}",
                   "env": ENVS[index % 3]}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def make_vmi(index: int, namespaces: int) -> dict[str, Any]:
    name = f"vm-{index:06}"
    metadata = {
        "name": name, "namespace": namespace_name(index % namespaces),
        "labels": {"app": f"app-{index % 1000}", "tier": TIERS[index % 3],
                   "os": OSES[index % 2], "kubevirt.io/domain": name,
                   "kubevirt.io/nodeName": f"node-{index % 100:03}",
                   "vm.kubevirt.io/name": name},
        "annotations": {"kubevirt.io/latest-observed-api-version": "v1",
                        "kubevirt.io/storage-observed-api-version": "v1"},
        "finalizers": ["kubevirt.io/virtualMachineControllerFinalize",
                       "foregroundDeleteVirtualMachine"],
        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                             "name": name, "uid": f"00000000-0000-4000-8000-{index:012}",
                             "controller": True, "blockOwnerDeletion": True}],
        "managedFields": [{
            "apiVersion": "kubevirt.io/v1", "fieldsType": "FieldsV1", "manager": "virt-handler",
            "operation": "Update", "time": "2026-01-01T00:00:00Z",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:kubevirt.io/nodeName": {}}},
                         "f:status": {"f:conditions": {}, "f:interfaces": {},
                                      "f:migrationState": {}, "f:nodeName": {},
                                      "f:phase": {}, "f:volumeStatus": {}}}}],
    }
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": metadata,
            "spec": {"domain": {"cpu": {"cores": 2}, "memory": {"guest": "4Gi"},
                                "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                                            "interfaces": [{"name": "default",
                                                            "masquerade": {}}]}},
                     "networks": [{"name": "default", "pod": {}}],
                     "volumes": [{"name": "root", "dataVolume": {"name": f"{name}-root"}}]},
            "status": {"phase": "Running", "nodeName": f"node-{index % 100:03}",
                       "conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "LiveMigratable", "status": "True"}],
                       "interfaces": [{"name": "default", "ipAddress": "10.0.0.1"}]}}


def make_policy(index: int, namespaces: int) -> dict[str, Any]:
    """Four shapes of selectors, all different: specific ones (an app, a namespace) and
    broad ones (tier, os, env are shared by thousands of policies)."""
    shape, number = index % 4, index // 4
    app = f"app-{number % 1000}"
    if shape == 0:
        selectors = {"virtualMachineInstanceSelector": {"app": app},
                     "namespaceSelector": {"team": f"team-{number // 1000 % 200}"}}
    elif shape == 1:
        selectors = {"virtualMachineInstanceSelector": {"app": app,
                                                        "tier": TIERS[number // 1000 % 3]}}
    elif shape == 2:
        selectors = {"namespaceSelector": {
            "kubernetes.io/metadata.name": namespace_name(number % namespaces)}}
    else:
        selectors = {"virtualMachineInstanceSelector": {"os": OSES[number % 2],
                                                        "tier": TIERS[number // 2 % 3]},
                     "namespaceSelector": {"team": f"team-{number // 6 % 200}",
                                           "env": ENVS[number // 1200 % 3]}}
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": f"policy-{index:05}"},
            "spec": {"allowAutoConverge": bool(index % 2), "bandwidthPerMigration": "64Mi",
                     "completionTimeoutPerGiB": 800, "selectors": selectors}}


def migration_review(namespace: str, vmi: str, uid: int) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"00000000-0000-4000-9000-{uid:012}",
        "kind": {"group": "kubevirt.io", "version": "v1",
                 "kind": "VirtualMachineInstanceMigration"},
        "resource": {"group": "kubevirt.io", "version": "v1",
                     "resource": "virtualmachineinstancemigrations"},
        "name": f"migrate-{vmi}", "namespace": namespace, "operation": "CREATE",
        "object": {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                   "metadata": {"name": f"migrate-{vmi}", "namespace": namespace},
                   "spec": {"vmiName": vmi}}}}


def random_reviews(count: int, vmis: int, namespaces: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    reviews = []
    for uid in range(count):
        index = rng.randrange(vmis)
        reviews.append(migration_review(namespace_name(index % namespaces),
                                        f"vm-{index:06}", uid))
    return reviews


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def start(tmp: Path, api: KubeApiServer) -> tuple[RunningService, float]:
    tmp.mkdir(parents=True, exist_ok=True)
    kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
    started = time.perf_counter()
    service = start_service(tmp, ["--state", KUBE_STATE, "--kubeconfig", str(kubeconfig)])
    return service, time.perf_counter() - started


def load(api: KubeApiServer, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    api.load(NAMESPACES, (make_namespace(index) for index in range(args.namespaces)))
    api.load(VMIS, (make_vmi(index, args.namespaces) for index in range(args.vmis)))
    api.load(MIGRATION_POLICIES, (make_policy(index, args.namespaces)
                                  for index in range(args.policies)))
    return time.perf_counter() - started


def bench_service(tmp: Path, api: KubeApiServer, args: argparse.Namespace) -> None:
    with KubeApiServer(tmp / "empty-api") as empty:
        service, empty_ready = start(tmp / "empty", empty)
        baseline = memory_kib(service.process.pid)
        baseline_cpu = cpu_seconds(service.process.pid)
        stop_service(service)

    service, ready = start(tmp / "loaded", api)
    try:
        memory = memory_kib(service.process.pid)
        cpu = cpu_seconds(service.process.pid)
        print(f"time to ready (process start to /readyz 200): {ready:.2f} s "
              f"({empty_ready:.2f} s on an empty cluster); the service's CPU time until then "
              f"{cpu:.2f} s ({baseline_cpu:.2f} s on an empty cluster)")
        for kind, count, seconds in re.findall(r"(\w+): listed (\d+) in ([\d.]+)s",
                                               service.log()):
            print(f"  {kind}: listed {int(count):,} in {float(seconds):.2f} s")
        print(f"resident memory: {memory['VmRSS'] / 1024:.0f} MiB "
              f"(peak {memory['VmHWM'] / 1024:.0f} MiB); on an empty cluster "
              f"{baseline['VmRSS'] / 1024:.0f} MiB")

        reviews = random_reviews(args.requests, args.vmis, args.namespaces)
        bodies = [orjson.dumps(review) for review in reviews]
        latencies = []
        stamped = 0
        with service.client(headers={"Content-Type": "application/json"}) as client:
            for body in bodies[:50]:  # warm up the connection and the code paths
                client.post(MUTATE_PATH, content=body)
            started = time.perf_counter()
            for body in bodies:
                sent = time.perf_counter()
                response = client.post(MUTATE_PATH, content=body)
                latencies.append(time.perf_counter() - sent)
                stamped += "patch" in response.json()["response"]
            elapsed = time.perf_counter() - started
        latencies.sort()
        print(f"POST {MUTATE_PATH} over TLS, {len(bodies):,} random VMIs, one client: "
              f"p50 {statistics.median(latencies) * 1e3:.2f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms, "
              f"{len(bodies) / elapsed:,.0f} req/s ({stamped:,} stamped)")
        after = memory_kib(service.process.pid)
        print(f"resident memory after the requests: {after['VmRSS'] / 1024:.0f} MiB")
    finally:
        stop_service(service)


async def synced_state(kubeconfig: Path) -> tuple[KubeState, float]:
    state = KubeState(KubeApi.from_kubeconfig(kubeconfig), Settings().precedence)
    started = time.perf_counter()
    await state.start()
    while not state.is_ready():
        await asyncio.sleep(0.01)
    return state, time.perf_counter() - started


def bench_in_process(tmp: Path, api: KubeApiServer, args: argparse.Namespace) -> None:
    kubeconfig = api.write_kubeconfig(tmp / "kubeconfig-in-process")
    loop = asyncio.new_event_loop()
    state, synced = loop.run_until_complete(synced_state(kubeconfig))
    try:
        print(f"in-process KubeState synced in {synced:.2f} s "
              f"(sharing the process with the API fixture): {state.counts()}")
        stamper = MigrationStamper(Settings(state=KUBE_STATE), state)
        requests: list[AdmissionRequest] = [
            parse_review(orjson.dumps(review))
            for review in random_reviews(10_000, args.vmis, args.namespaces)]
        for request in requests[:500]:
            stamper(request)
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            for request in requests:
                stamper(request)
            rounds.append((time.perf_counter() - started) / len(requests))
        winner_rounds = []
        lookups = [(state.vmi_labels(r.namespace, r.object["spec"]["vmiName"]),
                    state.namespace_labels(r.namespace)) for r in requests]
        for _ in range(5):
            started = time.perf_counter()
            for vmi_labels, ns_labels in lookups:
                state.policies.winner(vmi_labels, ns_labels)
            winner_rounds.append((time.perf_counter() - started) / len(lookups))
        specific = PolicyIndex(state.policies.mode, [
            policy for policy in state.policies if int(policy.name.split("-")[1]) % 4 != 3])
        specific_rounds = []
        for _ in range(5):
            started = time.perf_counter()
            for vmi_labels, ns_labels in lookups:
                specific.winner(vmi_labels, ns_labels)
            specific_rounds.append((time.perf_counter() - started) / len(lookups))
        applicable = statistics.mean(len(state.policies.applicable(vmi_labels, ns_labels))
                                     for vmi_labels, ns_labels in lookups[:1000])
        print(f"decision in-process (MigrationStamper, cache hit, patch built): "
              f"{min(rounds) * 1e6:.1f} µs/migration (best of 5 x {len(requests):,})")
        print(f"  of which the policy lookup (PolicyIndex.winner over "
              f"{len(state.policies):,} policies): {min(winner_rounds) * 1e6:.1f} µs; "
              f"{applicable:.1f} policies apply to a VMI on average")
        print(f"  the same lookup without the {len(state.policies) - len(specific):,} policies "
              f"whose selectors use tier/os/env (values thousands of policies share): "
              f"{min(specific_rounds) * 1e6:.1f} µs")
    finally:
        loop.run_until_complete(state.stop())
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vmis", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-live-state-") as tmp_name:
        tmp = Path(tmp_name)
        with KubeApiServer(tmp / "api", history_limit=1_000) as api:
            loaded = load(api, args)
            # The fixture's objects live in this process: keep them out of the cyclic GC's
            # way, so the in-process figures are the webhook's own.
            gc.collect()
            gc.freeze()
            print(f"cluster: {args.vmis:,} VMIs, {args.namespaces:,} namespaces, "
                  f"{args.policies:,} policies (loaded into the API fixture in {loaded:.1f} s)")
            bench_service(tmp, api, args)
            bench_in_process(tmp, api, args)


if __name__ == "__main__":
    main()
