"""`--state kube` never goes blind: the reflectors recover from what real API servers do.

The real service against the stand-in API server (tests/support/kubeapi/). Each test breaks the
API under the running service and measures, from the moment of the fault, how long until
the decisions are right again: at once (within 3 s, where waiting would take 4 s or more)
after a 410 (and a cut) or a 504 "too large resource version", within
--watch-idle-timeout + 3 s after a stream goes silent. A
forbidden list or watch, the watches' queries and their TCP keepalive are checked against
the real API server in tests/cluster/ (issue 19).
"""

import time
from collections.abc import Callable

import httpx
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
from tests.support.live_cluster import decide, list_count, scrape, seed, value, wait_for, webhook

RECOVERY_SECONDS = 3.0
"""Blind at most this long after a fault the service recovers from at once (a 410, a 504,
or one refused watch after the backoff was reset): what it would wait otherwise is 4 s or
more (the outage's backoff, 4 to 8 s; the idle timeout; the watch's timeoutSeconds), what
it needs is a relist of a few objects, so 3 s keeps a loaded machine's margin on both
sides."""
BOOKMARK_INTERVAL = 0.5
IDLE_TIMEOUT = 4.0
BOOKMARKS_PAST_IDLE = int(IDLE_TIMEOUT / BOOKMARK_INTERVAL) + 2
"""Bookmarks each watch receives over more than the idle timeout."""
RESUME_MARGIN = 3.0
"""A silent watch is resumed within the idle timeout plus this (README: closed and resumed
after --watch-idle-timeout): the resume and one event, on a loaded machine."""


def seconds_until(probe: Callable[[], object], expected: object, *, limit: float) -> float:
    """Seconds until `probe()` returns `expected`, polled as fast as the service answers;
    fails after `limit` + a margin, saying what it last saw."""
    started = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - started
        if value == expected:
            return elapsed
        assert elapsed < limit + 5, f"still {value!r} after {elapsed:.1f} s"


def policy_now(client: httpx.Client, vmi_name: str = "db") -> Callable[[], str | None]:
    return lambda: decide(client, "hpc", vmi_name).policy


def test_a_410_and_a_cut_after_an_outage_of_lists_recover_at_once(tmp_path, api):
    seed(api)
    api.create(MIGRATION_POLICIES, policy("prod", namespace_selector={"env": "prod"}))
    with webhook(tmp_path, api) as (service, client):
        assert decide(client, "hpc", "db").policy == "prod"

        # The API refuses lists for a while; the watches are cut after a compaction, so
        # every kind must list again, and fails, backing off further each time.
        for resource in RESOURCES:
            api.fail("list", resource, 503)
        lists = {resource: list_count(api, resource) for resource in RESOURCES}
        with api.holding_events():
            api.update(NAMESPACES, namespace("hpc", {"env": "dev"}))
            api.create(MIGRATION_POLICIES, policy("unrelated", vmi_selector={"app": "x"}))
            api.create(VMIS, vmi("hpc", "unrelated"))
            api.compact()
            api.cut_watches()
        for resource in RESOURCES:
            assert wait_for(lambda r=resource: list_count(api, r),
                            lambda n, r=resource: n >= lists[r] + 4) >= lists[resource] + 4
        healed = {resource: list_count(api, resource) for resource in RESOURCES}
        api.heal()
        # The API is back: each kind lists when its backoff ends (up to 8 s here).
        assert wait_for(policy_now(client), None) is None
        for resource in RESOURCES:
            assert wait_for(lambda r=resource: list_count(api, r),
                            lambda n, r=resource: n > healed[r]) > healed[resource]
        assert wait_for(lambda: api.active_watches, len(RESOURCES)) == len(RESOURCES)

        # The successful list reset the backoff: one refused watch waits the shortest delay,
        # not the 4 to 8 s the outage had reached.
        api.fail("watch", NAMESPACES, 503)
        watches = api.count("watch", NAMESPACES)
        api.cut_watches()
        assert wait_for(lambda: api.count("watch", NAMESPACES), watches + 1) == watches + 1
        api.heal()
        waited = seconds_until(lambda: api.count("watch", NAMESPACES) > watches + 1, True,
                               limit=RECOVERY_SECONDS)
        assert waited < RECOVERY_SECONDS, f"the watch waited {waited:.2f} s after one failure"
        assert wait_for(lambda: api.active_watches, len(RESOURCES)) == len(RESOURCES)

        # Later, a compaction and a cut: the resumed watch is answered 410 and lists again.
        with api.holding_events():
            api.update(NAMESPACES, namespace("hpc", {"env": "prod"}))
            api.compact()
            api.cut_watches()
        elapsed = seconds_until(policy_now(client), "prod", limit=RECOVERY_SECONDS)
        assert elapsed < RECOVERY_SECONDS, f"blind for {elapsed:.2f} s after the 410"
        assert "retrying in" in service.log()  # the outage did back off


@pytest.mark.parametrize("too_large_as", ["http-status", "error-event"])
def test_a_504_too_large_resource_version_relists_from_scratch_at_once(
        tmp_path, api, too_large_as):
    seed(api)
    api.create(MIGRATION_POLICIES, policy("old", vmi_selector={"app": "db"}))
    api.load(NAMESPACES, [namespace(f"filler-{index}") for index in range(30)])
    api.too_large_as_event = too_large_as == "error-event"
    with webhook(tmp_path, api) as (service, client):
        assert decide(client, "hpc", "db").policy == "old"
        lists = {resource: list_count(api, resource) for resource in RESOURCES}

        # Restored from a backup 20 writes old: the service has seen newer versions.
        with api.holding_events():
            api.restore(20)
            api.create(MIGRATION_POLICIES, policy("new", vmi_selector={"app": "db"},
                                                  namespace_selector={"env": "prod"}))
        elapsed = seconds_until(policy_now(client), "new", limit=RECOVERY_SECONDS)
        assert elapsed < RECOVERY_SECONDS, f"blind for {elapsed:.2f} s after the 504"

        for resource in RESOURCES:
            assert wait_for(lambda r=resource: list_count(api, r), lists[resource] + 1) == \
                lists[resource] + 1, f"{resource.plural} not listed again"
        relists = [call for call in api.calls("list")
                   if call.resource == MIGRATION_POLICIES.plural][lists[MIGRATION_POLICIES]:]
        assert all("resourceVersion" not in call.query for call in relists)
        assert "Too large resource version" in service.log()
        samples = scrape(client)
        for resource in RESOURCES:
            assert value(samples, "watch_restarts_total", resource=resource.plural,
                         reason="too_large_resource_version") == 1
        # Back to normal: the watches follow the restored server's versions.
        api.delete(MIGRATION_POLICIES, "new")
        assert wait_for(policy_now(client), "old") == "old"


def test_a_silent_watch_is_resumed_within_the_idle_timeout(tmp_path, api):
    """Watches the stand-in bookmarks every 0.5 s are kept past the idle timeout; silenced,
    each is resumed (from its resourceVersion, no relist) once the idle timeout has passed.
    The idle timeout (4 s) leaves a loaded machine 3.5 s between two bookmarks before a
    healthy watch is taken for idle. Catches a watch dropped although bookmarks came (a
    reflector that counts only events as news), and a silent watch left open (one that
    waits for the server's timeoutSeconds, minutes)."""
    seed(api)
    api.bookmark_interval = BOOKMARK_INTERVAL  # as a real API server bookmarks, only more often
    with webhook(tmp_path, api, args=["--watch-idle-timeout", str(IDLE_TIMEOUT)]) as (
            service, client):
        assert decide(client, "hpc", "db").policy is None
        assert wait_for(lambda: api.active_watches, len(RESOURCES)) == len(RESOURCES)
        lists = len(api.calls("list"))
        watches = len(api.calls("watch"))
        assert watches == len(RESOURCES)
        # Quiet but healthy watches are kept: their bookmarks show they are alive. Counted
        # in bookmarks sent, enough of them that every watch has lived past the idle timeout.
        sent = api.bookmarks_sent
        kept = sent + len(RESOURCES) * BOOKMARKS_PAST_IDLE
        assert wait_for(lambda: api.bookmarks_sent, lambda n: n >= kept) >= kept
        assert len(api.calls("watch")) == watches
        assert api.active_watches == len(RESOURCES)
        samples = scrape(client)
        for resource in RESOURCES:
            assert value(samples, "watch_restarts_total", resource=resource.plural,
                         reason="idle") == 0
        assert "no event or bookmark" not in service.log()

        api.silence_watches()
        api.create(MIGRATION_POLICIES, policy("db", vmi_selector={"app": "db"}))
        elapsed = seconds_until(policy_now(client), "db", limit=IDLE_TIMEOUT + RESUME_MARGIN)
        assert elapsed < IDLE_TIMEOUT + RESUME_MARGIN, \
            f"blind for {elapsed:.2f} s after the silence"

        assert wait_for(lambda: len(api.calls("watch")), watches + len(RESOURCES)) == \
            watches + len(RESOURCES)
        resumed = api.calls("watch")[watches:]
        assert all(call.query["resourceVersion"].isdigit() for call in resumed)
        assert len(api.calls("list")) == lists, "a silent watch is resumed, not relisted"
        assert f"the watch brought no event or bookmark for {IDLE_TIMEOUT:g} s" in service.log()
        samples = wait_for(lambda: scrape(client), lambda s: all(
            value(s, "watch_restarts_total", resource=r.plural, reason="idle") == 1
            for r in RESOURCES))
        for resource in RESOURCES:
            assert value(samples, "watch_restarts_total", resource=resource.plural,
                         reason="idle") == 1
