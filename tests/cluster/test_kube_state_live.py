"""`--state kube` against the real API server: what the cluster holds, as it changes, is what
the next migration is decided by. Moved here from tests/live_cluster/ (issue 19), where the
API stand-in played these ordinary changes.

Decisions are asked of the service directly (`decide`: a migration review, the patch
applied), so a warning is read as the service words it. Each test makes its own namespace,
VMIs and policies, under names no other test uses, and deletes them again.
"""

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cluster_state import (
    apply,
    delete_namespace,
    delete_policies,
    finalize,
    kill_apiserver,
    namespace,
    policy,
    state_service,
    vmi,
    without_validating_webhook,
)
from tests.support.control_plane import ControlPlane
from tests.support.live_cluster import (
    METRICS_PREFIX,
    PREFIX,
    Decision,
    decide,
    scrape,
    value,
    wait_for,
)
from tests.support.service import RunningService

KINDS = ("migrationpolicies", "namespaces", "virtualmachineinstances")
RESTART_REASONS = ("expired", "too_large_resource_version", "idle", "closed", "error")
DIRECT_GET_RESULTS = ("found", "not_found", "negative_cached", "rate_limited", "error",
                      "coalesced")


@pytest.fixture
def webhook_client(webhook: RunningService) -> Iterator[httpx.Client]:
    """A client of the session's service (on the shipped ServiceAccount's token)."""
    with webhook.client() as each:
        yield each


def policy_now(client: httpx.Client, namespace_name: str, vmi_name: str) -> str | None:
    return decide(client, namespace_name, vmi_name).policy


PRECEDENCE = "ks-precedence"


@pytest.fixture
def precedence_space(installed: ControlPlane) -> Iterator[ControlPlane]:
    apply(installed, namespace(PRECEDENCE, {"env": "ks-prod"}),
          vmi(PRECEDENCE, "db", {"app": "ks-db", "tier": "gold"}),
          vmi(PRECEDENCE, "web", {"app": "ks-web"}))
    yield installed
    delete_policies(installed, "ks-db", "ks-gold-db")
    delete_namespace(installed, PRECEDENCE)


def test_a_more_specific_policy_created_takes_over_and_deleted_gives_the_vmi_back(
        precedence_space: ControlPlane, webhook_client: httpx.Client) -> None:
    """test_live_cluster.py follows one policy created, changed and deleted; here a second
    policy, created live, outranks the first: only its parameters are stamped, and its
    deletion hands the VMI back to the first."""
    plane = precedence_space
    assert wait_for(lambda: decide(webhook_client, PRECEDENCE, "db"), Decision({})) == Decision({})

    apply(plane, policy("ks-db", vmi_selector={"app": "ks-db"}, bandwidthPerMigration="64Mi"))
    assert wait_for(lambda: policy_now(webhook_client, PRECEDENCE, "db"), "ks-db") == "ks-db"
    assert decide(webhook_client, PRECEDENCE, "db").annotations[
        PREFIX + "bandwidthPerMigration"] == "64Mi"

    apply(plane, policy("ks-gold-db", namespace_selector={"env": "ks-prod"},
                        vmi_selector={"app": "ks-db", "tier": "gold"}, allowPostCopy=True))
    assert wait_for(lambda: policy_now(webhook_client, PRECEDENCE, "db"), "ks-gold-db") == \
        "ks-gold-db"
    gold = decide(webhook_client, PRECEDENCE, "db").annotations
    assert gold[PREFIX + "allowPostCopy"] == "true"
    assert PREFIX + "bandwidthPerMigration" not in gold  # the winner's alone, not merged
    assert decide(webhook_client, PRECEDENCE, "web") == Decision({})

    delete_policies(plane, "ks-gold-db")
    assert wait_for(lambda: policy_now(webhook_client, PRECEDENCE, "db"), "ks-db") == "ks-db"
    assert decide(webhook_client, PRECEDENCE, "db").annotations[
        PREFIX + "bandwidthPerMigration"] == "64Mi"
    delete_policies(plane, "ks-db")
    assert wait_for(lambda: decide(webhook_client, PRECEDENCE, "db"), Decision({})) == Decision({})


DELETIONS = "ks-deletions"


@pytest.fixture
def deletions_space(installed: ControlPlane) -> Iterator[ControlPlane]:
    apply(installed, namespace(DELETIONS, {"env": "ks-doomed"}),
          vmi(DELETIONS, "db", {"app": "db"}), vmi(DELETIONS, "web", {"app": "web"}),
          policy("ks-doomed", namespace_selector={"env": "ks-doomed"}))
    yield installed
    delete_policies(installed, "ks-doomed")
    delete_namespace(installed, DELETIONS)


def test_a_deleted_vmi_and_a_deleted_namespace_are_named_as_not_found(
        deletions_space: ControlPlane, webhook_client: httpx.Client) -> None:
    """Relabels are followed in test_live_cluster.py; deletions here. The namespace goes
    while a VMI of it is still stored (the namespace controller, which would delete the VMI
    first, does not run here): the VMI whose deletion the service has not seen yet."""
    plane = deletions_space
    for name in ("db", "web"):
        assert wait_for(lambda n=name: policy_now(webhook_client, DELETIONS, n), "ks-doomed") == \
            "ks-doomed"

    plane.kubectl("delete", "vmi", "db", "-n", DELETIONS)
    gone = wait_for(lambda: decide(webhook_client, DELETIONS, "db"), lambda d: bool(d.warnings))
    assert gone == Decision({}, [f"no migration policy applied: VMI 'db' not found in "
                                 f"namespace '{DELETIONS}'"])

    plane.kubectl("delete", "namespace", DELETIONS, "--wait=false")
    finalize(plane, DELETIONS)
    orphan = wait_for(lambda: decide(webhook_client, DELETIONS, "web"), lambda d: bool(d.warnings))
    assert orphan == Decision({}, [f"no migration policy applied: namespace '{DELETIONS}' "
                                   "not found"])


INVALID = "ks-invalid"


@pytest.fixture
def invalid_space(installed: ControlPlane) -> Iterator[ControlPlane]:
    apply(installed, namespace(INVALID), vmi(INVALID, "db", {"app": "ks-inv", "tier": "gold"}),
          policy("ks-valid", vmi_selector={"app": "ks-inv"}))
    yield installed
    delete_policies(installed, "ks-valid", "ks-broken")
    delete_namespace(installed, INVALID)


def broken(**spec: object) -> dict[str, object]:
    """A policy more specific than ks-valid for the VMI db."""
    return policy("ks-broken", vmi_selector={"app": "ks-inv", "tier": "gold"}, **spec)


def test_an_invalid_policy_stored_in_the_cluster_is_left_out(
        invalid_space: ControlPlane, tmp_path: Path) -> None:
    """A policy the CRD schema takes and the webhook refuses (a negative bandwidth, then a
    selector key that is no label key), stored while the validating webhook is not
    registered: listed or watched, it is logged and left out (not cached, not counted),
    and the others decide."""
    plane = invalid_space
    with without_validating_webhook(plane, broken(bandwidthPerMigration="-1Gi")), \
            state_service(plane, tmp_path) as service, service.client() as client:
        assert decide(client, INVALID, "db").policy == "ks-valid"
        assert "MigrationPolicy 'ks-broken' is invalid and is ignored" in service.log()
        stored = stored_counts(plane)["migrationpolicies"]
        assert value(scrape(client), "cache_objects", resource="migrationpolicies") == \
            stored - 1

        apply(plane, broken(bandwidthPerMigration="1Gi"))
        assert wait_for(lambda: policy_now(client, INVALID, "db"), "ks-broken") == "ks-broken"
        apply(plane, policy("ks-broken", vmi_selector={"app": "ks-inv", "tier": "gold",
                                                       "-not-a-key": "x"}))
        assert wait_for(lambda: policy_now(client, INVALID, "db"), "ks-valid") == "ks-valid"
        assert service.log().count("MigrationPolicy 'ks-broken' is invalid") >= 2


METRICS = "ks-metrics"


@pytest.fixture
def metrics_space(installed: ControlPlane) -> Iterator[ControlPlane]:
    apply(installed, namespace(METRICS), vmi(METRICS, "db", {"app": "ks-metrics"}),
          vmi(METRICS, "web"), policy("ks-metrics", vmi_selector={"app": "ks-metrics"}))
    yield installed
    delete_policies(installed, "ks-metrics")
    delete_namespace(installed, METRICS)


def stored_counts(plane: ControlPlane) -> dict[str, int]:
    """How many objects of each kind the API server holds, listed as the admin."""
    with plane.client() as admin:
        return {kind: len(admin.get(path).json()["items"]) for kind, path in (
            ("migrationpolicies", "/apis/migrations.kubevirt.io/v1alpha1/migrationpolicies"),
            ("namespaces", "/api/v1/namespaces"),
            ("virtualmachineinstances", "/apis/kubevirt.io/v1/virtualmachineinstances"))}


def test_a_fresh_service_s_state_metrics_over_http(metrics_space: ControlPlane,
                                                   tmp_path: Path) -> None:
    """Once listed: as many objects cached as the API server holds, each kind's last sync
    since the start, no watch restarted; a missing VMI is one GET, then remembered."""
    expected = stored_counts(metrics_space)
    started = time.time()
    with state_service(metrics_space, tmp_path) as service, service.client() as client:
        samples = scrape(client)
        for kind in KINDS:
            assert value(samples, "cache_objects", resource=kind) == expected[kind], kind
            synced = value(samples, "cache_last_sync_timestamp_seconds", resource=kind)
            assert synced is not None and started - 1 < synced <= time.time()
            for reason in RESTART_REASONS:
                assert value(samples, "watch_restarts_total", resource=kind,
                             reason=reason) == 0
        assert not any(name.endswith("_created") and METRICS_PREFIX in name
                       for name, _ in samples)

        missing = Decision({}, [f"no migration policy applied: VMI 'nope' not found in "
                                f"namespace '{METRICS}'"])
        assert decide(client, METRICS, "nope") == missing
        assert decide(client, METRICS, "nope") == missing
        samples = scrape(client)
        gets = {result: value(samples, "direct_gets_total",
                              resource="virtualmachineinstances", result=result)
                for result in DIRECT_GET_RESULTS}
        assert gets == {"found": 0, "not_found": 1, "negative_cached": 1, "rate_limited": 0,
                        "error": 0, "coalesced": 0}
        assert decide(client, METRICS, "db").policy == "ks-metrics"


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def api_connection_timers(pid: int, api_port: int) -> list[int]:
    """The kernel's timer kind of each established TCP connection of process `pid` to the
    API server's port (/proc/net/tcp `tr`: 0 none, 1 retransmit, 2 keepalive)."""
    inodes = _socket_inodes(pid)
    timers = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[3] == "01" and remote_port == api_port and int(fields[9]) in inodes:
            timers.append(int(fields[5].split(":")[0], 16))
    return timers


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_api_connections_have_tcp_keepalive(installed: ControlPlane, webhook: RunningService,
                                            webhook_client: httpx.Client) -> None:
    """Each connection of the service to the API server (three watches at least) has the
    kernel's keepalive timer armed, so a peer gone without a reset is noticed."""
    assert webhook_client.get("/readyz").status_code == 200
    timers = wait_for(lambda: api_connection_timers(webhook.process.pid, installed.port),
                      lambda found: len(found) >= 3 and set(found) == {2})
    assert len(timers) >= 3, timers
    assert set(timers) == {2}, timers


DOWN = "ks-down"


@pytest.fixture
def down_space(installed: ControlPlane) -> Iterator[ControlPlane]:
    apply(installed, namespace(DOWN), vmi(DOWN, "db", {"app": "ks-down"}),
          policy("ks-down", vmi_selector={"app": "ks-down"}))
    yield installed
    if installed.apiserver is None:  # the test failed while it was stopped
        installed.start_apiserver()
    delete_policies(installed, "ks-down", "ks-down-gold")
    delete_namespace(installed, DOWN)


def test_while_the_api_server_is_down_the_last_known_state_decides(
        down_space: ControlPlane, webhook_client: httpx.Client) -> None:
    """The API server gone (killed, as in a crash): the service stays ready and decides
    from what it last knew; started again (test_live_cluster.py restarts it after a
    compaction), a change shows."""
    plane = down_space
    assert wait_for(lambda: policy_now(webhook_client, DOWN, "db"), "ks-down") == "ks-down"
    known = decide(webhook_client, DOWN, "db")
    kill_apiserver(plane)
    with plane.client() as admin, pytest.raises(httpx.ConnectError):
        admin.get("/readyz")
    assert webhook_client.get("/readyz").status_code == 200
    assert decide(webhook_client, DOWN, "db") == known
    plane.start_apiserver()

    apply(plane, policy("ks-down-gold", vmi_selector={"app": "ks-down"},
                        namespace_selector={"kubernetes.io/metadata.name": DOWN}))
    assert wait_for(lambda: policy_now(webhook_client, DOWN, "db"), "ks-down-gold") == \
        "ks-down-gold"
