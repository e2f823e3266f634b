"""What the cluster state tells about itself: staleness warnings and its metrics.

The real service over HTTPS: `--state kube` against the stand-in API server (which
bookmarks every 0.5 s where a real one does once a minute, and cuts watches and holds
events on demand), and the bundled sample directory. Metrics are read from `/metrics` as
Prometheus scrapes them.
"""

import re
import time

import httpx
import yaml

from app.state.kube import FRESHNESS_CHECK_SECONDS
from tests.support.kubeapi import (
    NAMESPACES,
    RESOURCES,
    VMIS,
    namespace,
)
from tests.support.live_cluster import (
    METRICS_PREFIX,
    Decision,
    db_policy,
    decide,
    scrape,
    seed,
    value,
    wait_for,
    webhook,
)
from tests.support.service import SAMPLE_CLUSTER

BOOKMARK_INTERVAL = 0.5
MAX_STALENESS = 4.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STALE = "cluster state may be stale: no news from the API for "


def stale_for(decision: Decision) -> int:
    """The seconds without news that the decision's staleness warning gives."""
    [warning] = decision.warnings
    found = re.fullmatch(re.escape(STALE) + r"(\d+) s \(.*\)", warning)
    assert found, warning
    return int(found[1])


def test_a_cache_the_api_has_not_confirmed_for_too_long_is_said_to_be_stale(tmp_path, api):
    """Bookmarks every 0.5 s keep the cache fresh past --max-staleness (4 s: a loaded
    machine has 3.5 s between two bookmarks before the cache is stale); with the API gone
    the decisions warn, the log says so once however many checks find it still stale, and
    once when the API is back. Catches bookmarks that do not confirm the cache (its last
    sync stays at the list), and a warning logged at every check."""
    seed(api, db_policy())
    api.bookmark_interval = BOOKMARK_INTERVAL  # healthy watches confirm the cache, as real ones do
    with webhook(tmp_path, api, args=["--max-staleness", str(MAX_STALENESS)]) as (
            service, client):
        # Every kind confirmed by a bookmark after the moment its list would be stale (and
        # a freshness check, once a second, since): the cache is fresh only by bookmarks.
        past_the_list = time.time() + MAX_STALENESS + FRESHNESS_CHECK_SECONDS

        def synced(samples: Samples) -> list[float | None]:
            return [value(samples, "cache_last_sync_timestamp_seconds", resource=r.plural)
                    for r in RESOURCES]

        confirmed = synced(wait_for(lambda: scrape(client), lambda samples: all(
            (stamp or 0) > past_the_list for stamp in synced(samples))))
        assert all((stamp or 0) > past_the_list for stamp in confirmed), confirmed
        fresh = decide(client, "hpc", "db")
        assert (fresh.policy, fresh.warnings) == ("db", [])
        assert STALE not in service.log()

        api.stop()
        stale = wait_for(lambda: decide(client, "hpc", "db"), lambda d: bool(d.warnings))
        assert stale.policy == "db", "the last known state still decides"
        [warning] = stale.warnings
        assert warning.startswith(STALE), warning
        assert warning.endswith(" s (migrationpolicies, namespaces, virtualmachineinstances)")
        assert len(warning) < 120
        # Still stale at two more checks (the age the warning gives has grown by 2 s):
        # said once in the log.
        later = wait_for(lambda: decide(client, "hpc", "db"),
                         lambda d: bool(d.warnings) and stale_for(d) >= stale_for(stale) + 2)
        assert stale_for(later) >= stale_for(stale) + 2, later
        assert service.log().count(STALE) == 1
        assert "--max-staleness" in service.log()

        api.start()
        back = wait_for(lambda: decide(client, "hpc", "db"), lambda d: not d.warnings)
        assert (back.policy, back.warnings) == ("db", [])
        assert service.log().count("cluster state fresh again") == 1


def test_watch_restarts_and_direct_gets_in_the_state_metrics(tmp_path, api):
    """What needs faults on demand: watches cut, and cut after a compaction, counted by
    reason; a VMI fetched directly while its watch event is held. The metrics of a service
    as it starts are read against the real API server, tests/cluster/test_kube_state_live.py."""
    seed(api, db_policy())
    with webhook(tmp_path, api) as (_, client):
        # A cut (error), then a compaction and a cut (error, then expired).
        assert wait_for(lambda: api.active_watches, len(RESOURCES)) == len(RESOURCES)
        watches = api.count("watch")
        api.cut_watches()
        assert wait_for(lambda: api.count("watch"), watches + len(RESOURCES)) == \
            watches + len(RESOURCES)
        assert wait_for(lambda: api.active_watches, len(RESOURCES)) == len(RESOURCES)
        with api.holding_events():
            api.create(NAMESPACES, namespace("new"))
            api.compact()
            api.cut_watches()
        samples = wait_for(lambda: scrape(client), lambda s: all(
            value(s, "watch_restarts_total", resource=r.plural, reason="expired") == 1
            for r in RESOURCES) and value(s, "cache_objects", resource="namespaces") == 3)
        for resource in RESOURCES:
            assert value(samples, "watch_restarts_total", resource=resource.plural,
                         reason="expired") == 1
            assert value(samples, "watch_restarts_total", resource=resource.plural,
                         reason="error") == 2
        assert value(samples, "cache_objects", resource="namespaces") == 3

        # Direct lookups: one not found, then the same one remembered missing.
        decide(client, "hpc", "nope")
        decide(client, "hpc", "nope")
        with api.holding_events():
            api.create(VMIS, {"metadata": {"name": "fresh", "namespace": "hpc",
                                           "labels": {"app": "db"}}})
            assert decide(client, "hpc", "fresh").policy == "db"
        samples = scrape(client)
        gets = {result: value(samples, "direct_gets_total", resource="virtualmachineinstances",
                              result=result)
                for result in ("found", "not_found", "negative_cached", "rate_limited",
                               "error", "coalesced")}
        assert gets == {"found": 1, "not_found": 1, "negative_cached": 1, "rate_limited": 0,
                        "error": 0, "coalesced": 0}
        assert api.count("get", VMIS) == 2


def sample_objects(kind: str) -> int:
    """How many objects of `kind` the bundled sample cluster's manifests hold."""
    count = 0
    for path in SAMPLE_CLUSTER.glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            items = document["items"] if document.get("kind") == "List" else [document]
            count += sum(1 for item in items if item.get("kind") == kind)
    return count


def test_the_directory_state_metrics(client: httpx.Client) -> None:
    """The session's service on the sample directory counts what its files hold."""
    samples = scrape(client)
    for resource, kind in (("migrationpolicies", "MigrationPolicy"),
                           ("virtualmachineinstances", "VirtualMachineInstance"),
                           ("namespaces", "Namespace")):
        expected = sample_objects(kind)
        assert expected > 0, kind
        assert value(samples, "cache_objects", resource=resource) == expected, resource
    loaded = value(samples, "cache_last_sync_timestamp_seconds", resource="namespaces")
    assert loaded is not None and time.time() - 3600 < loaded <= time.time()
    assert not any(METRICS_PREFIX + "watch_restarts" in name for name, _ in samples)
