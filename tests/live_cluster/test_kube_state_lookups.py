"""Direct GETs of VMIs missing from the cache are bounded (`--state kube`).

The real service against the stand-in API server: a flood of migrations naming VMIs that do
not exist must not become a flood of GETs, and no answer waits on the API for long.
"""

import threading
import time
import uuid

from tests.support.kubeapi import VMIS, vmi
from tests.support.live_cluster import DEADLINE, Decision, db_policy, decide, seed, webhook

FLOOD = 500
CLIENTS = 10
MAX_GETS = 50
RATE_LIMITED = ("no migration policy applied: could not look up VMI '{}' in namespace 'hpc': "
                "the webhook is rate-limiting direct lookups")
NOT_FOUND = "no migration policy applied: VMI '{}' not found in namespace 'hpc'"


def says(warning: str, text: str) -> bool:
    """`warning` is `text`, or `text` shortened to the 120 characters a warning may have."""
    return warning == text or (warning.endswith("...") and text.startswith(warning[:-3]))


def test_a_flood_of_missing_vmis_costs_at_most_50_gets_and_no_slow_answer(tmp_path, api):
    seed(api, db_policy())
    with webhook(tmp_path, api) as (service, client):
        assert decide(client, "hpc", "db").policy == "db"
        answers: list[tuple[str, float, Decision]] = []
        lock = threading.Lock()

        def flood(count: int) -> None:
            with service.client() as own:
                for _ in range(count):
                    name = f"missing-{uuid.uuid4().hex[:12]}"
                    sent = time.monotonic()
                    decision = decide(own, "hpc", name)
                    with lock:
                        answers.append((name, time.monotonic() - sent, decision))

        threads = [threading.Thread(target=flood, args=(FLOOD // CLIENTS,))
                   for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)

        assert len(answers) == FLOOD
        gets = api.count("get", VMIS)
        assert gets <= MAX_GETS, f"{gets} GETs for {FLOOD} migrations"
        assert api.max_gets_in_flight <= 4
        slowest = max(seconds for _, seconds, _ in answers)
        assert slowest < 1.0, f"an answer took {slowest:.2f} s"
        kinds = {"rate-limited": 0, "not found": 0}
        for name, _, decision in answers:
            assert decision.annotations == {}
            assert len(decision.warnings) == 1
            if says(decision.warnings[0], RATE_LIMITED.format(name)):
                kinds["rate-limited"] += 1
            else:
                assert decision.warnings == [NOT_FOUND.format(name)]
                kinds["not found"] += 1
        assert kinds["not found"] == gets
        assert kinds["rate-limited"] == FLOOD - gets
        assert "direct lookups of objects not cached are rate-limited" in service.log()
        # Cache hits are not limited.
        assert decide(client, "hpc", "db").policy == "db"


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


def test_lookups_of_one_vmi_at_once_share_one_get(tmp_path, api):
    seed(api, db_policy())
    with webhook(tmp_path, api) as (service, _):
        results: list[Decision] = []
        with api.holding_events():
            api.create(VMIS, vmi("hpc", "new-db", {"app": "db"}))
            api.hold_gets()

            def migrate() -> None:
                with service.client() as own:
                    results.append(decide(own, "hpc", "new-db"))

            threads = [threading.Thread(target=migrate) for _ in range(3)]
            try:
                for thread in threads:
                    thread.start()
                time.sleep(0.3)  # all three are waiting on the one GET held by the API
            finally:
                api.release_gets()
            for thread in threads:
                thread.join(DEADLINE)
        assert [decision.policy for decision in results] == ["db"] * 3
        assert api.count("get", VMIS) == 1
