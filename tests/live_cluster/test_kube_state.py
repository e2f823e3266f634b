"""`--state kube` (contract §5): the real service against a stand-in API server, for the
faults a real one cannot be made to show on demand.

The service runs as a user runs it, with `--state kube --kubeconfig FILE`; the only
stand-in is `kubeapi.KubeApiServer`, which speaks the API server's wire protocol over
HTTPS. Tests break the API under the running service (watches cut, refused or replayed
from a compacted history, events and GETs held, error statuses injected), then poll its
decisions until they show the change (never a timed assertion). Ordinary changes of the
cluster (policies, labels, deletions, invalid policies, pages, permissions) are decided
against the real API server in tests/cluster/ (issue 19).
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.kubeapi import (
    MIGRATION_POLICIES,
    NAMESPACES,
    RESOURCES,
    VMIS,
    namespace,
    policy,
    vmi,
)
from tests.support.live_cluster import (
    DEADLINE,
    Decision,
    db_policy,
    decide,
    list_count,
    policy_of,
    seed,
    wait_for,
    webhook,
)
from tests.support.service import REPO, free_port


@pytest.mark.parametrize("expired_as", ["error-event", "http-status"])
def test_relists_after_410_gone_and_applies_what_changed_meanwhile(tmp_path, api, expired_as):
    seed(api)
    api.create(MIGRATION_POLICIES, policy("old", vmi_selector={"app": "db"}))
    with webhook(tmp_path, api) as (_, client):
        assert decide(client, "hpc", "db").policy == "old"
        lists = {resource: list_count(api, resource) for resource in RESOURCES}

        # The watches go away and cannot come back while the cluster changes, and then
        # the history they would resume from is compacted.
        for resource in RESOURCES:
            api.fail("watch", resource)
        api.cut_watches()
        api.delete(MIGRATION_POLICIES, "old")
        api.create(MIGRATION_POLICIES, policy("new", vmi_selector={"tier": "gold"}))
        api.create(MIGRATION_POLICIES, policy("prod", namespace_selector={"env": "prod"}))
        api.delete(VMIS, "web", "hpc")
        api.update(NAMESPACES, namespace("hpc", {"env": "dev"}))
        api.compact()
        api.expire_with_http_status = expired_as == "http-status"
        api.heal()

        assert wait_for(policy_of(client, "hpc", "db"), "new") == "new"
        for resource in RESOURCES:
            assert wait_for(lambda r=resource: list_count(api, r), lists[resource] + 1) == \
                lists[resource] + 1, f"{resource.plural} not listed again"
        gone = wait_for(lambda: decide(client, "hpc", "web"), lambda d: bool(d.warnings))
        assert gone.warnings == ["no migration policy applied: VMI 'web' not found in "
                                 "namespace 'hpc'"]
        # The namespace lost env=prod in the gap: "prod" no longer applies anywhere there.
        assert decide(client, "hpc", "db").policy == "new"


def test_resumes_from_the_last_resource_version_after_a_dropped_connection(tmp_path, api):
    seed(api)
    with webhook(tmp_path, api) as (service, client):
        assert decide(client, "hpc", "db").policy is None
        lists = len(api.calls("list"))
        watches = len(api.calls("watch"))

        api.cut_watches()
        api.create(MIGRATION_POLICIES, policy("db", vmi_selector={"app": "db"}))
        api.update(VMIS, vmi("hpc", "web", {"app": "db"}))
        assert wait_for(policy_of(client, "hpc", "db"), "db") == "db"
        assert wait_for(policy_of(client, "hpc", "web"), "db") == "db"

        every_kind = {r.plural for r in RESOURCES}
        # Namespaces changed nothing the decisions show: wait for their watch to resume too.
        assert wait_for(lambda: {call.resource for call in api.calls("watch")[watches:]},
                        every_kind) == every_kind
        assert len(api.calls("list")) == lists, "a dropped connection must not relist"
        resumed = api.calls("watch")[watches:]
        for call in resumed:
            assert call.query["resourceVersion"].isdigit()
            assert call.query["allowWatchBookmarks"] == "true"
        assert "Connection broken" in service.log()


def test_bookmarks_move_the_resume_point(tmp_path, api):
    seed(api, db_policy())
    with webhook(tmp_path, api) as (_, client):
        assert decide(client, "hpc", "db").policy == "db"
        assert wait_for(lambda: api.active_watches, len(RESOURCES)) == len(RESOURCES)
        # Changes to namespaces only: the policy watch sees nothing of them...
        for index in range(5):
            api.create(NAMESPACES, namespace(f"extra-{index}"))
        policy_lists = list_count(api, MIGRATION_POLICIES)
        # ...until a bookmark tells it the resourceVersion it has reached.
        bookmark_version = api.resource_version
        sent = api.bookmarks_sent
        api.send_bookmark()
        assert wait_for(lambda: api.bookmarks_sent, sent + len(RESOURCES)) == sent + len(RESOURCES)
        # Counted before the cut: the watch may resume before the next line runs.
        watches = len(api.calls("watch", MIGRATION_POLICIES))
        api.compact()
        api.cut_watches()

        api.create(MIGRATION_POLICIES, policy("gold", vmi_selector={"tier": "gold"},
                                              namespace_selector={"env": "prod"}))
        assert wait_for(policy_of(client, "hpc", "db"), "gold") == "gold"
        resumed = api.calls("watch", MIGRATION_POLICIES)[watches:]
        assert resumed[0].query["resourceVersion"] == str(bookmark_version)
        assert list_count(api, MIGRATION_POLICIES) == policy_lists


def test_recovers_when_the_api_server_restarts_with_its_history_kept(tmp_path, api):
    """A restart after which the watches can resume where they were (another replica of an
    HA API server, with the history): no relist. A single real kube-apiserver starts its
    watch cache afresh and answers such a resume 410, so this needs the stand-in; the
    restart that loses the history is tests/cluster/test_live_cluster.py's, and serving the
    last known state meanwhile tests/cluster/test_kube_state_live.py's."""
    seed(api)
    with webhook(tmp_path, api) as (_, client):
        assert decide(client, "hpc", "db").policy is None
        lists = list_count(api, MIGRATION_POLICIES)

        api.stop()
        # The last known state keeps serving while the API is away.
        assert client.get("/readyz").status_code == 200
        assert decide(client, "hpc", "db") == Decision({})
        api.create(MIGRATION_POLICIES, policy("db", vmi_selector={"app": "db"}))
        api.start()

        assert wait_for(policy_of(client, "hpc", "db"), "db") == "db"
        assert wait_for(lambda: list_count(api, MIGRATION_POLICIES), lists) == lists


def test_a_vmi_created_just_before_its_migration_is_fetched_directly(tmp_path, api):
    seed(api, db_policy())
    with webhook(tmp_path, api) as (service, client):
        assert decide(client, "hpc", "db").policy == "db"
        assert api.calls("get") == []

        with api.holding_events():  # the watch does not deliver it yet
            api.create(VMIS, vmi("hpc", "new-db", {"app": "db"}))
            assert decide(client, "hpc", "new-db").policy == "db"
            gets = api.calls("get", VMIS)
            assert [(call.namespace, call.name) for call in gets] == [("hpc", "new-db")]
            # Remembered until the watch catches up: no second GET.
            assert decide(client, "hpc", "new-db").policy == "db"
            assert len(api.calls("get", VMIS)) == 1

            missing = decide(client, "hpc", "no-such-vmi")
            assert missing == Decision({}, ["no migration policy applied: VMI 'no-such-vmi' "
                                            "not found in namespace 'hpc'"])
            assert [call.name for call in api.calls("get", VMIS)] == ["new-db", "no-such-vmi"]
        assert "fetched directly" in service.log()
        assert decide(client, "hpc", "new-db").policy == "db"


def test_a_failed_direct_get_says_so(tmp_path, api):
    seed(api, db_policy())
    with webhook(tmp_path, api) as (_, client):
        api.fail("get", VMIS, 503)
        failed = decide(client, "hpc", "not-yet-watched")
        assert failed == Decision({}, ["no migration policy applied: could not look up VMI "
                                       "'not-yet-watched' in namespace 'hpc': the API "
                                       "answered 503"])
        assert decide(client, "hpc", "db").policy == "db"  # cache hits are unaffected


def test_a_direct_get_does_not_hold_up_other_requests(tmp_path, api):
    seed(api, db_policy())
    with webhook(tmp_path, api) as (service, client):
        results: list[Decision] = []
        with api.holding_events():
            api.create(VMIS, vmi("hpc", "new-db", {"app": "db"}))
            api.hold_gets()
            try:
                def migrate() -> None:
                    with service.client() as other:
                        results.append(decide(other, "hpc", "new-db"))

                thread = threading.Thread(target=migrate)
                thread.start()
                assert wait_for(lambda: len(api.calls("get", VMIS)), 1) == 1
                # The lookup is waiting on the API; the event loop is not.
                assert client.get("/healthz").status_code == 200
                assert decide(client, "hpc", "db").policy == "db"
                # The held GET gives up at its deadline: the migration is not held with it.
                thread.join(timeout=DEADLINE)
            finally:
                api.release_gets()
            assert results == [Decision({}, [
                "no migration policy applied: could not look up VMI 'new-db' in namespace "
                "'hpc': the API did not answer within 1 s"])]
            # A failure is not remembered: the next migration asks again, and finds it.
            assert decide(client, "hpc", "new-db").policy == "db"
        assert len(api.calls("get", VMIS)) == 2


def _serve_without_cluster(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("KUBERNETES_")}
    return subprocess.run(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port",
         str(free_port()), "--certs-dir", str(tmp_path / "certs"), "--state", "kube", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_state_kube_outside_a_cluster_needs_a_kubeconfig(tmp_path):
    result = _serve_without_cluster(tmp_path)
    assert result.returncode == 2, result.stderr
    assert "in-cluster configuration" in result.stderr
    assert "--kubeconfig" in result.stderr


def test_state_kube_with_a_missing_kubeconfig_names_it(tmp_path):
    missing = tmp_path / "no-such-kubeconfig"
    result = _serve_without_cluster(tmp_path, "--kubeconfig", str(missing))
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr
