"""Direct GETs of VMIs missing from the cache are bounded (`--state kube`).

The real service against the stand-in API server, which holds a watch's events or a GET's
answer on demand: a VMI not found is remembered missing for a while, and lookups of one VMI
at once share one GET. The flood of missing VMIs (at most 50 GETs) is counted in a real
API server's audit log, tests/cluster/test_kube_state_calls.py.
"""

import threading
import time

from tests.support.kubeapi import VMIS, vmi
from tests.support.live_cluster import DEADLINE, Decision, db_policy, decide, seed, webhook

NOT_FOUND = "no migration policy applied: VMI '{}' not found in namespace 'hpc'"


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
