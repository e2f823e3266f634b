"""Stamp checks (issue 21) where the API must misbehave on demand, so against the stand-in:
a watch of migrations cut mid-migration and resumed (each checked once), a relist after a
410 bringing migrations that finished meanwhile (not counted), a 403 on the VMI's GET (the
check skipped and logged, nothing counted). Each result and reason, the forgetting and the
shipped RBAC, with the migrations' status written as KubeVirt writes it, are
tests/cluster/test_kubevirt_agreement.py's.

The stand-in is not called by the webhook: a migration here carries the stamp the webhook
would have written. A check is known to be done, and nothing else counted, when a marker
migration created after it is counted too (one watch delivers the events in order)."""

from pathlib import Path
from typing import Any

import httpx

from tests.support.kubeapi import VMIMS, VMIS, KubeApiServer, Object, migration
from tests.support.live_cluster import (
    db_policy,
    decide,
    list_count,
    scrape,
    seed,
    value,
    wait_for,
    webhook,
)

RESULTS = ("agree", "disagree", "unstamped", "no-policy")
IN_FLIGHT = {"resource": VMIMS.plural}


def counts(client: httpx.Client) -> dict[str, float]:
    samples = scrape(client)
    return {result: value(samples, "stamp_checks_total", result=result) or 0.0
            for result in RESULTS}


def in_flight(client: httpx.Client) -> float | None:
    return value(scrape(client), "cache_objects", **IN_FLIGHT)


def running(api: KubeApiServer, stored: Object, policy_name: str | None,
            phase: str = "Running", **state: Any) -> Object:
    """The migration's status as KubeVirt writes it once it has chosen `policy_name`."""
    chosen = {"migrationUid": stored["metadata"]["uid"], **state}
    if policy_name is not None:
        chosen["migrationPolicyName"] = policy_name
    return api.update(VMIMS, {**stored, "status": {"phase": phase, "migrationState": chosen}})


def settled(api: KubeApiServer, client: httpx.Client, marker: str) -> dict[str, float]:
    """The counts once everything written before now has been handled: a marker migration
    (of hpc/web, matched by no policy; KubeVirt applied none) is counted no-policy after it.
    Its own count is taken off."""
    before = counts(client)
    api.create(VMIMS, migration("hpc", marker, "web", phase="Running", state={}))
    after = wait_for(lambda: counts(client), lambda now: now["no-policy"] > before["no-policy"])
    assert after["no-policy"] == before["no-policy"] + 1, "the marker was never counted"
    return {**after, "no-policy": after["no-policy"] - 1}


def test_a_watch_cut_mid_migration_resumes_and_checks_it_once(tmp_path: Path,
                                                              api: KubeApiServer) -> None:
    seed(api, db_policy())
    with webhook(tmp_path, api) as (_, client):
        assert decide(client, "hpc", "db").policy == "db"
        stored = api.create(VMIMS, migration("hpc", "move-db", "db", stamp="db",
                                             phase="Scheduling"))
        assert wait_for(lambda: in_flight(client), 1) == 1
        lists, watches = list_count(api, VMIMS), api.count("watch", VMIMS)

        # KubeVirt hands it off while the watch is down: the resumed watch brings it.
        with api.holding_events():
            stored = running(api, stored, "db", phase="TargetReady")
            api.cut_watches()
        assert wait_for(lambda: counts(client)["agree"], 1) == 1

        # Cut again with more of it to come: resumed, it is not checked a second time.
        with api.holding_events():
            stored = running(api, stored, "db", startTimestamp="2026-12-06T10:00:01Z")
            api.cut_watches()
        stored = running(api, stored, "db", phase="Succeeded")
        assert wait_for(lambda: in_flight(client), 0) == 0
        assert settled(api, client, "marker") == {
            "agree": 1, "disagree": 0, "unstamped": 0, "no-policy": 0}
        assert list_count(api, VMIMS) == lists, "a cut watch is resumed, not listed again"
        assert api.count("watch", VMIMS) >= watches + 2
        resumed = api.calls("watch", VMIMS)[watches:]
        assert all(call.query["resourceVersion"].isdigit() for call in resumed)


def test_a_relist_does_not_count_migrations_that_finished_meanwhile(
        tmp_path: Path, api: KubeApiServer) -> None:
    """After a 410 the service lists again: a migration that finished in the gap is
    dropped uncounted (its end was not seen; it may have been counted before the gap), and
    so is one it never saw in flight; one still running is followed and checked later."""
    seed(api, db_policy())
    with webhook(tmp_path, api) as (_, client):
        assert decide(client, "hpc", "db").policy == "db"
        finished = api.create(VMIMS, migration("hpc", "finished", "db", stamp="db",
                                               phase="Scheduling"))
        still = api.create(VMIMS, migration("hpc", "still-running", "db", stamp="db",
                                            phase="Scheduling"))
        assert wait_for(lambda: in_flight(client), 2) == 2
        lists = list_count(api, VMIMS)

        with api.holding_events():
            finished = running(api, finished, "db", phase="Succeeded")
            still = running(api, still, "db")
            api.create(VMIMS, migration("hpc", "never-seen", "db", stamp="db",
                                        phase="Failed", state={"migrationPolicyName": "x"}))
            api.compact()
            api.cut_watches()
        assert wait_for(lambda: list_count(api, VMIMS), lists + 1) == lists + 1
        assert wait_for(lambda: in_flight(client), 1) == 1
        samples = scrape(client)
        assert value(samples, "watch_restarts_total", resource=VMIMS.plural,
                     reason="expired") == 1
        assert settled(api, client, "marker-1") == dict.fromkeys(RESULTS, 0.0)

        # Finished ones changed or deleted later are still not counted; the one in flight
        # is checked at its next event.
        running(api, finished, "db", phase="Succeeded", endTimestamp="2026-12-06T10:00:09Z")
        api.delete(VMIMS, "never-seen", "hpc")
        running(api, still, "db", phase="Succeeded")
        assert settled(api, client, "marker-2") == {
            "agree": 1, "disagree": 0, "unstamped": 0, "no-policy": 1}  # marker-1
        assert wait_for(lambda: in_flight(client), 2) == 2  # the two markers run on


def test_a_refused_get_of_the_vmi_skips_the_check_and_says_why(
        tmp_path: Path, api: KubeApiServer) -> None:
    """KubeVirt's choice is on the VMI only (the migration's status has no
    migrationState): its GET answered 403, the check is skipped, logged, and not tried
    again for that migration (one GET per migration)."""
    seed(api, db_policy())
    with webhook(tmp_path, api) as (service, client):
        assert decide(client, "hpc", "db").policy == "db"
        gets = api.count("get", VMIS)
        api.fail("get", VMIS, 403)
        stored = api.create(VMIMS, migration("hpc", "move-db", "db", stamp="db",
                                             phase="Scheduling"))
        stored = api.update(VMIMS, {**stored, "status": {"phase": "Running"}})
        skipped = "stamp check of migration hpc/move-db skipped: its VMI 'db' could not be read"
        log = wait_for(service.log, lambda text: skipped in text)
        [line] = [line for line in log.splitlines() if skipped in line]
        assert ("permission missing: verb 'get' on resource 'virtualmachineinstances'"
                in line), line
        assert 'cannot get resource "virtualmachineinstances"' in line  # the API's words
        samples = scrape(client)
        assert value(samples, "direct_gets_total", resource=VMIS.plural, result="error") == 1

        api.heal()
        api.update(VMIMS, {**stored, "status": {"phase": "Succeeded"}})
        assert wait_for(lambda: in_flight(client), 0) == 0
        assert settled(api, client, "marker") == dict.fromkeys(RESULTS, 0.0)
        assert api.count("get", VMIS) == gets + 1
