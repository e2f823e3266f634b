"""What a client of the API server sees (issue 19): the time to create a MigrationPolicy and
a VirtualMachineInstanceMigration through a real kube-apiserver (tests/support/
control_plane.py), without the webhooks registered and then with them, p50 and p99 over
--creates creates of each, one after another as kubectl sends them, from a compiled client
(bench/apiload/main.go). The webhook is installed as tests/cluster installs it, on the
sample cluster. `make bench` runs it last; it prints figures and asserts nothing.
"""

import argparse
import datetime
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import loadgen
from cluster import REPO

from tests.support.control_plane import ControlPlane, start_control_plane
from tests.support.in_cluster import install, start_webhook
from tests.support.service import SAMPLE_CLUSTER, SAMPLES, stop_service

SOURCE = REPO / "bench" / "apiload" / "main.go"


def creates(binary: Path, plane: ControlPlane, kind: str, prefix: str,
            count: int) -> dict[str, Any]:
    done = subprocess.run(
        [str(binary), "-server", plane.url, "-ca", str(plane.ca_file),
         "-cert", str(plane.directory / "admin.crt"), "-key", str(plane.directory / "admin.key"),
         "-kind", kind, "-n", str(count), "-prefix", prefix],
        capture_output=True, text=True, check=True, timeout=count * 2 + 60)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def wait_until_registered(plane: ControlPlane) -> None:
    """The API server picks up new webhook configurations a moment after they are stored:
    until a policy with a mistake is refused (a server-side dry run stores nothing)."""
    deadline = time.monotonic() + 30
    policy = str(SAMPLES / "policies" / "two-mistakes.yaml")
    while plane.kubectl("apply", "--dry-run=server", "-f", policy,
                        check=False).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the webhooks were not called within 30 s of registering them")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=1000,
                        help="objects of each kind created in each phase (default 1000)")
    count = parser.parse_args().creates
    binary = loadgen.build(SOURCE, loadgen.BUILD_DIR / "apiload")
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plane = start_control_plane(Path(tmp) / "control-plane")
        try:
            install(plane)
            for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml"):
                plane.kubectl("apply", "-f", str(SAMPLE_CLUSTER / name))
            service, registered = start_webhook(plane, Path(tmp) / "webhook")
            try:
                for phase in ("without", "with"):
                    if phase == "with":
                        plane.kubectl("apply", "-f", "-", stdin=registered)
                        wait_until_registered(plane)
                    for kind in ("policy", "migration"):
                        results[phase, kind] = creates(binary, plane, kind,
                                                       f"{phase}-{kind}", count)
                        print(f"  {phase} webhooks, {kind}: {results[phase, kind]}",
                              flush=True)
            finally:
                stop_service(service)
        finally:
            plane.stop()
    print(f"\ncreates through kube-apiserver v1.37.2 (etcd v3.7.3, no fsync), one client, "
          f"{count:,} of each, p50 / p99 ms:")
    print(f"{'what':<36}{'without webhooks':>20}{'with webhooks':>20}")
    for kind, what in (("policy", "create a MigrationPolicy"),
                       ("migration", "create a migration")):
        shown = []
        for phase in ("without", "with"):
            result = results[phase, kind]
            failed = f", {result['failed']} failed" if result["failed"] else ""
            shown.append(f"{result['p50_ms']:.2f} / {result['p99_ms']:.2f}{failed}")
        print(f"{what:<36}{shown[0]:>20}{shown[1]:>20}")


if __name__ == "__main__":
    main()
