"""Direct GETs of VMIs missing from the cache are bounded (`--state kube`).

The real service against the stand-in API server, which holds a watch's events or a GET's
answer on demand: a VMI not found is remembered missing for a while, and lookups of one VMI
at once share one GET. The flood of missing VMIs (at most 50 GETs) is counted in a real
API server's audit log, tests/cluster/test_kube_state_calls.py.
"""

import threading
import time

import httpx

from tests.support.kubeapi import VMIS, vmi
from tests.support.live_cluster import (
    DEADLINE,
    Decision,
    db_policy,
    decide,
    scrape,
    seed,
    value,
    webhook,
)
from tests.support.service import RunningService

NOT_FOUND = "no migration policy applied: VMI '{}' not found in namespace 'hpc'"
SILENT = ("no migration policy applied: could not look up VMI '{}' in namespace 'hpc': the "
          "API did not answer within 1 s")


def test_a_missing_vmi_is_remembered_missing_for_a_few_seconds(tmp_path, api):
    seed(api, db_policy())
    with webhook(tmp_path, api) as (_, client):
        with api.holding_events():  # created, but the watch has not told the webhook
            for _ in range(5):
                assert decide(client, "hpc", "late") == Decision({}, [NOT_FOUND.format("late")])
            assert api.count("get", VMIS) == 1
            api.create(VMIS, vmi("hpc", "late", {"app": "db"}))
            # Remembered missing for a few seconds, then asked again.
            deadline = time.monotonic() + DEADLINE
            while decide(client, "hpc", "late").policy != "db":
                assert time.monotonic() < deadline, "never asked again"
                time.sleep(0.2)
        assert api.count("get", VMIS) == 2


def decide_at_once(service: RunningService, vmi_name: str, count: int) -> list[Decision]:
    """`count` migrations of one VMI reviewed at once: each client connects first, then all
    send together (a barrier), so they reach the service within milliseconds."""
    results: list[Decision] = []
    clients = [service.client() for _ in range(count)]
    barrier = threading.Barrier(count)

    def migrate(own: httpx.Client) -> None:
        barrier.wait(DEADLINE)
        results.append(decide(own, "hpc", vmi_name))

    try:
        for own in clients:
            assert own.get("/healthz").status_code == 200  # the connection is open
        threads = [threading.Thread(target=migrate, args=(own,)) for own in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        assert not any(thread.is_alive() for thread in threads), "a review never came back"
    finally:
        for own in clients:
            own.close()
    assert len(results) == count
    return results


def direct_gets(client: httpx.Client) -> dict[str, float | None]:
    """The service's direct lookups of VMIs so far, by result (from /metrics)."""
    samples = scrape(client)
    return {result: value(samples, "direct_gets_total", resource=VMIS.plural, result=result)
            for result in ("found", "not_found", "error", "coalesced")}


def test_lookups_of_one_vmi_at_once_share_one_get(tmp_path, api):
    """Three lookups of one VMI sent at once while the API holds the GET past the lookups'
    1 s limit: one GET, and all three fail with it. The GET is held until the lookups have
    given up, not for a guessed time, so the three surely overlap it: they are sent within
    milliseconds of each other, and it lasts the whole second. Released, three more at once
    are all answered with the VMI found, by one more GET. Catches a lookup that makes a GET
    of its own while another's is in flight (three GETs), or that does not wait for it (an
    answer other than the API's silence)."""
    seed(api, db_policy())
    with webhook(tmp_path, api) as (service, client), api.holding_events():
        api.create(VMIS, vmi("hpc", "new-db", {"app": "db"}))
        api.hold_gets()
        try:
            held = decide_at_once(service, "new-db", 3)
        finally:
            api.release_gets()
        assert held == [Decision({}, [SILENT.format("new-db")])] * 3
        assert api.count("get", VMIS) == 1
        # The leader's GET failed; those waiting on it took its failure, or ended at
        # their own deadline a moment after it: none made a GET (found, not_found).
        gets = direct_gets(client)
        assert (gets["found"], gets["not_found"], gets["error"] + gets["coalesced"]) == \
            (0, 0, 3), gets

        # A failure is not remembered: three at once now share one GET, which finds it.
        found = decide_at_once(service, "new-db", 3)
        assert [(decision.policy, decision.warnings) for decision in found] == \
            [("db", [])] * 3
        assert api.count("get", VMIS) == 2
