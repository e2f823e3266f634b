"""What the cluster state tells about itself: staleness warnings and its metrics.

The real service over HTTPS: `--state kube` against the stand-in API server, and the
bundled sample directory. Metrics are read from `/metrics` as Prometheus scrapes them.
"""

import time

import httpx

from tests.support.kubeapi import (
    MIGRATION_POLICIES,
    NAMESPACES,
    RESOURCES,
    VMIS,
    namespace,
    policy,
)
from tests.support.live_cluster import (
    METRICS_PREFIX,
    db_policy,
    decide,
    scrape,
    seed,
    value,
    wait_for,
    webhook,
)

MAX_STALENESS = 2.0
STALE = "cluster state may be stale: no news from the API for "


def test_a_cache_the_api_has_not_confirmed_for_too_long_is_said_to_be_stale(tmp_path, api):
    seed(api, db_policy())
    api.bookmark_interval = 0.5  # healthy watches confirm the cache, as real ones do
    with webhook(tmp_path, api, args=["--max-staleness", str(MAX_STALENESS)]) as (
            service, client):
        time.sleep(MAX_STALENESS + 1.5)
        fresh = decide(client, "hpc", "db")
        assert (fresh.policy, fresh.warnings) == ("db", [])

        api.stop()
        stale = wait_for(lambda: decide(client, "hpc", "db"), lambda d: bool(d.warnings))
        assert stale.policy == "db", "the last known state still decides"
        [warning] = stale.warnings
        assert warning.startswith(STALE), warning
        assert warning.endswith(" s (migrationpolicies, namespaces, virtualmachineinstances)")
        assert len(warning) < 120
        time.sleep(1.5)  # still stale: said once in the log
        assert service.log().count(STALE) == 1
        assert "--max-staleness" in service.log()

        api.start()
        back = wait_for(lambda: decide(client, "hpc", "db"), lambda d: not d.warnings)
        assert (back.policy, back.warnings) == ("db", [])
        assert service.log().count("cluster state fresh again") == 1


def test_the_state_metrics_over_http(tmp_path, api):
    seed(api, db_policy())
    api.create(MIGRATION_POLICIES, policy("broken", bandwidthPerMigration="-1Gi",
                                          vmi_selector={"app": "web"}))
    with webhook(tmp_path, api) as (_, client):
        started = time.time()
        samples = scrape(client)
        assert value(samples, "cache_objects", resource="migrationpolicies") == 1
        assert value(samples, "cache_objects", resource="virtualmachineinstances") == 2
        assert value(samples, "cache_objects", resource="namespaces") == 2
        for resource in RESOURCES:
            synced = value(samples, "cache_last_sync_timestamp_seconds",
                           resource=resource.plural)
            assert synced is not None and started - 60 < synced <= time.time()
            for reason in ("expired", "too_large_resource_version", "idle", "closed", "error"):
                assert value(samples, "watch_restarts_total", resource=resource.plural,
                             reason=reason) == 0
        assert not any(name.endswith("_created") and METRICS_PREFIX in name for name, _ in samples)

        # A cut (error), then a compaction and a cut (error, then expired).
        assert wait_for(lambda: api.active_watches, 3) == 3
        watches = api.count("watch")
        api.cut_watches()
        assert wait_for(lambda: api.count("watch"), watches + 3) == watches + 3
        assert wait_for(lambda: api.active_watches, 3) == 3
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


def test_the_directory_state_metrics(client: httpx.Client) -> None:
    samples = scrape(client)
    assert value(samples, "cache_objects", resource="migrationpolicies") == 4
    assert value(samples, "cache_objects", resource="virtualmachineinstances") == 4
    assert value(samples, "cache_objects", resource="namespaces") == 3
    loaded = value(samples, "cache_last_sync_timestamp_seconds", resource="namespaces")
    assert loaded is not None and time.time() - 3600 < loaded <= time.time()
    assert not any(METRICS_PREFIX + "watch_restarts" in name for name, _ in samples)
