"""`--state kube`: the calls the service makes, read from a real kube-apiserver's audit log
(tests/support/audit_log.py) on a control plane of this module's own. Moved here from
tests/live_cluster/ (issue 19), where the stand-in's call log counted them.

Each test runs its services on a ServiceAccount of its own bound to the shipped ClusterRole's
rules, so its calls are told apart from the others' by the user that made them.
"""

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.audit_log import (
    calls,
    completed,
    most_at_once,
    service_account_user,
    start_audited_control_plane,
)
from tests.support.cluster_state import (
    VMIS_PATH,
    account,
    apply,
    delete_namespace,
    namespace,
    policy,
    shipped_rules,
    state_service,
    vmi,
)
from tests.support.control_plane import ControlPlane
from tests.support.in_cluster import install
from tests.support.live_cluster import DEADLINE, Decision, decide, scrape, value, wait_for

VMIS = "virtualmachineinstances"
KINDS = ("migrationpolicies", VMIS, "namespaces")


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start_audited_control_plane(tmp_path_factory.mktemp("audited-control-plane"))
    try:
        install(plane)
        apply(plane, namespace("hpc"), vmi("hpc", "db", {"app": "db"}),
              policy("db", vmi_selector={"app": "db"}))
        yield plane
    finally:
        plane.stop()


PAGES = "pages"
LISTED = 1001
"""Three pages of the service's 500 (app/state/kube.py `page_size`)."""


@pytest.fixture
def many_vmis(audited: ControlPlane) -> Iterator[ControlPlane]:
    apply(audited, namespace(PAGES))
    with audited.client() as admin, ThreadPoolExecutor(8) as pool:
        def create(index: int) -> None:
            made = admin.post(VMIS_PATH.format(namespace=PAGES), json=vmi(
                PAGES, f"vm-{index:05}", {"app": "db" if index % 2 else "web"}))
            assert made.status_code == 201, made.text

        list(pool.map(create, range(LISTED)))
    yield audited
    delete_namespace(audited, PAGES)


def test_a_large_list_is_read_in_pages(many_vmis: ControlPlane, tmp_path: Path) -> None:
    """More VMIs than a page holds: the server pages them (it cuts at `limit`), and the
    service follows every continue token, so each VMI is cached, none fetched alone."""
    with many_vmis.client() as admin:
        first = admin.get("/apis/kubevirt.io/v1/virtualmachineinstances",
                          params={"limit": "500"}).json()
    assert len(first["items"]) == 500 and first["metadata"]["continue"]

    with account(many_vmis, "ks-pages", shipped_rules()) as token, \
            state_service(many_vmis, tmp_path, token) as service, service.client() as client:
        for index in (0, 1, LISTED // 2, LISTED - 2, LISTED - 1):  # odd ones are app=db
            expected = "db" if index % 2 else None
            assert decide(client, PAGES, f"vm-{index:05}").policy == expected, index
        assert value(scrape(client), "cache_objects", resource=VMIS) == LISTED + 1  # and hpc/db
    user = service_account_user("ks-pages")
    assert calls(many_vmis, user, "get", VMIS) == []
    pages = calls(many_vmis, user, "list", VMIS)
    assert len(pages) == 3
    assert all(call.query["limit"] == "500" for call in pages)
    assert "continue" not in pages[0].query
    assert all(call.query["continue"] for call in pages[1:])


FLOOD = 500
CLIENTS = 10
MAX_GETS = 50
RATE_LIMITED = ("no migration policy applied: could not look up VMI '{}' in namespace 'hpc': "
                "the webhook is rate-limiting direct lookups")
NOT_FOUND = "no migration policy applied: VMI '{}' not found in namespace 'hpc'"


def says(warning: str, text: str) -> bool:
    """`warning` is `text`, or `text` shortened to the 120 characters a warning may have."""
    return warning == text or (warning.endswith("...") and text.startswith(warning[:-3]))


def test_a_flood_of_missing_vmis_costs_at_most_50_gets_and_no_slow_answer(
        audited: ControlPlane, tmp_path: Path) -> None:
    """500 migrations of VMIs that do not exist, from 10 clients at once: the API server
    sees at most 50 GETs, 4 at a time at most; every other one is answered as rate-limited,
    and none waits a second."""
    with account(audited, "ks-flood", shipped_rules()) as token, \
            state_service(audited, tmp_path, token) as service, service.client() as client:
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
        made = completed(audited, service_account_user("ks-flood"), "get", VMIS)
        assert len(made) <= MAX_GETS, f"{len(made)} GETs for {FLOOD} migrations"
        assert most_at_once(made) <= 4
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
        assert kinds["not found"] == len(made)
        assert sorted(call.name for call in made) == sorted(
            name for name, _, decision in answers
            if decision.warnings == [NOT_FOUND.format(name)])
        assert kinds["rate-limited"] == FLOOD - len(made)
        assert "direct lookups of objects not cached are rate-limited" in service.log()
        # Cache hits are not limited.
        assert decide(client, "hpc", "db").policy == "db"


REPLICAS = 3


def test_watches_ask_for_bookmarks_and_spread_their_timeouts(audited: ControlPlane,
                                                             tmp_path: Path) -> None:
    """Three replicas, each watching the three kinds: every watch asks for bookmarks, from
    a resourceVersion (where its list ended), with a timeout drawn from [5 min, 10 min), so
    that the replicas do not all reconnect at once."""
    user = service_account_user("ks-watches")
    with account(audited, "ks-watches", shipped_rules()) as token, ExitStack() as stack:
        for index in range(REPLICAS):
            stack.enter_context(state_service(audited, tmp_path / f"replica-{index}", token))
        watches = {kind: wait_for(lambda k=kind: calls(audited, user, "watch", k),
                                  lambda made: len(made) >= REPLICAS) for kind in KINDS}
    for kind in KINDS:
        assert len(watches[kind]) == REPLICAS, kind
    every = [call for kind in KINDS for call in watches[kind]]
    assert all(call.query["allowWatchBookmarks"] == "true" for call in every)
    assert all(call.query["resourceVersion"].isdigit() for call in every)
    timeouts = {int(call.query["timeoutSeconds"]) for call in every}
    assert all(300 <= seconds < 600 for seconds in timeouts), timeouts
    assert len(timeouts) > 1, "every watch asked for the same timeout"
