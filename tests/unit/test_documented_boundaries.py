"""README "Limits" rows held at and just past their boundaries, in process (issue 22).

Every figure is written here as a literal, from the README's row, never imported from app/:
a limit changed in the code but not in the README (or the other way round) fails here.
The rows: `status.message` 64 KiB and the causes as JSON 96 KiB (the answer under 256 KiB);
20 warnings from validation, each under 120 characters; a body larger than 64 KiB judged in
a worker thread; the direct GETs of VMIs the cache lacks (5 a second, bursts of 10, 4 at
once, 1 s each, not-found kept 5 s), on a fake clock.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from app.admission.review import allowed, encode_review, invalid
from app.policy.findings import CauseType, Findings
from app.policy.precedence import Precedence
from app.serving.app import create_service
from app.settings import Settings
from app.state import LookupFailed
from app.state.files import DirectoryState
from app.state.lookups import DirectLookups
from tests.support.reviews import review_of_size, sample_review
from tests.support.service import SAMPLE_CLUSTER

KIB = 1024
STATUS_MESSAGE_BYTES = 64 * KIB
"""README: `status.message` 64 KiB (as JSON)."""
CAUSES_JSON_BYTES = 96 * KIB
"""README: the causes as JSON 96 KiB (each listed cause's field and message, encoded)."""
ANSWER_BYTES = 256 * KIB
"""README: the answer stays under 256 KiB."""


def add_causes(findings: Findings, message_lengths: list[int]) -> None:
    """One cause at field `f` per length: its JSON is `"f"` (3 bytes) and the message's
    (the length and 2 quotes)."""
    for length in message_lengths:
        findings.add(CauseType.INVALID, "f", "m" * length)


def answered(findings: Findings) -> bytes:
    """The AdmissionReview the webhook sends for these findings."""
    decision = invalid(findings=findings, group="migrations.kubevirt.io",
                       kind="MigrationPolicy", name="p")
    return encode_review("admission.k8s.io/v1", "00000000-0000-4000-8000-000000000001", decision)


# the causes as JSON: 96 KiB

def test_causes_filling_96_kib_of_json_are_all_listed_and_one_byte_more_is_counted() -> None:
    """49 causes of 2,005 bytes (a 2,000-character message, the longest kept whole) and one
    of 59 are 98,304 bytes, 96 KiB: all listed. A 50th of 60 bytes would pass the budget:
    it is counted in a last cause, not listed. Catches a budget other than 96 KiB, `>=` for
    `>`, and a budget measured otherwise than as JSON (characters, or the message alone)."""
    assert CAUSES_JSON_BYTES == 49 * (3 + 2002) + (3 + 56)
    at = Findings()
    add_causes(at, [2000] * 49 + [54])
    assert len(at.causes) == 50
    assert not any("not listed" in cause.message for cause in at.causes)
    past = Findings()
    add_causes(past, [2000] * 49 + [55])
    assert len(past.causes) == 50
    assert past.causes[-1].message.startswith("1 more problem not listed (only the first 49 are)")
    for findings in (at, past):
        body = answered(findings)
        assert len(body) < ANSWER_BYTES
        listed = orjson.loads(body)["response"]["status"]["details"]["causes"]
        assert len(listed) == 50


# status.message: 64 KiB

def summary_json(findings: Findings) -> bytes:
    """`status.message` of the answer, as JSON."""
    return orjson.dumps(orjson.loads(answered(findings))["response"]["status"]["message"])


def test_status_message_lists_every_problem_up_to_64_kib_less_room_for_the_count() -> None:
    """`status.message` is `field: message` lines joined by `; `. 32 lines of 2,005 bytes
    and one of 1,276 are 65,436 bytes as JSON, 64 KiB less the 100 kept for "and N more
    problems": listed whole. One byte more and the last line gives way to the count, and
    the message stays within 64 KiB. Catches a budget other than 64 KiB (or no room kept for
    the count, which would pass it), and a line dropped without being counted."""
    at = Findings()
    add_causes(at, [2000] * 32 + [1271])
    message = summary_json(at)
    assert len(message) == STATUS_MESSAGE_BYTES - 100
    assert not message.endswith(b'more problems"')
    assert message.count(b"f: ") == 33
    past = Findings()
    add_causes(past, [2000] * 32 + [1272])
    message = summary_json(past)
    assert message.endswith(b'; and 1 more problems"')
    assert message.count(b"f: ") == 32
    assert len(message) <= STATUS_MESSAGE_BYTES


def test_with_both_budgets_full_the_answer_stays_under_256_kib() -> None:
    """The largest answer validation makes: 100 causes filling 96 KiB, a message filling
    64 KiB, and 20 warnings of 119 characters, with characters JSON escapes to six bytes
    each. Catches a budget counted in characters rather than bytes as sent."""
    findings = Findings()
    for index in range(100):
        findings.add(CauseType.INVALID, f"spec.f{index}", "\u0001" * 2000)
    for index in range(25):
        findings.warn(f"{index} " + "w" * 200)
    body = answered(findings)
    assert len(body) < ANSWER_BYTES
    status = orjson.loads(body)["response"]["status"]
    assert len(orjson.dumps(status["message"])) <= STATUS_MESSAGE_BYTES
    causes = status["details"]["causes"]
    assert sum(len(orjson.dumps(c["field"])) + len(orjson.dumps(c["message"]))
               for c in causes[:-1]) <= CAUSES_JSON_BYTES
    assert causes[-1]["message"].split()[1:3] == ["more", "problems"]


# warnings: 20 from validation, each under 120 characters

def test_20_warnings_from_validation_are_kept_and_a_21st_is_counted() -> None:
    """Catches a cap of 19 or 21, and the count missing or added below the cap."""
    at = Findings()
    for index in range(20):
        at.warn(f"warning {index}")
    assert at.warnings == [f"warning {index}" for index in range(20)]
    past = Findings()
    for index in range(21):
        past.warn(f"warning {index}")
    assert past.warnings == [*(f"warning {index}" for index in range(20)),
                             "1 more warnings not shown"]


def validation_warnings(text: str) -> list[str]:
    findings = Findings()
    findings.warn(text)
    return findings.warnings


def answer_warnings(text: str) -> list[str]:
    return allowed([text])["warnings"]


@pytest.mark.parametrize("warn", [validation_warnings, answer_warnings],
                         ids=["validation", "any-answer"])
def test_a_warning_of_119_characters_is_kept_whole_and_one_of_120_is_cut_to_119(
        warn: Callable[[str], list[str]]) -> None:
    """The API server truncates a warning of 120 characters or more; ours end in "..."
    before that. Catches a cut at 120 (the API server would cut it again, without the
    "..."), and a cut that is longer than the limit."""
    assert warn("w" * 119) == ["w" * 119]
    [cut] = warn("w" * 120)
    assert cut == "w" * 116 + "..."
    assert len(cut) == 119


# a body larger than 64 KiB: judged in a worker thread

class CountingExecutor(ThreadPoolExecutor):
    """The event loop's default executor (where `asyncio.to_thread` sends work), counting
    what it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


POLICY_REVIEW = sample_review("policy-valid-example.json")


@pytest.fixture(scope="module")
def service_app() -> Any:
    """The HTTPS app `serve` runs, built by create_service on the sample cluster, without
    impact warnings (which may go to a thread of their own when slow)."""
    state = DirectoryState(SAMPLE_CLUSTER, Precedence.DOCUMENTED)
    return create_service(Settings(impact_warnings=False), state).app


def judged_in_threads(app: Any, body: bytes) -> tuple[dict[str, Any], int]:
    """POST `body` to the validating webhook through the app; its answer, and how many
    pieces of work went to the loop's worker threads."""
    sent: list[dict[str, Any]] = []
    executor = CountingExecutor()

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(executor)
        scope = {"type": "http", "method": "POST", "path": "/validate-migrationpolicy",
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())],
                 "state": {}, "client": ("127.0.0.1", 40000)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(main())
    assert sent[0]["status"] == 200
    return orjson.loads(sent[1]["body"]), executor.submitted


def test_a_body_of_64_kib_is_judged_on_the_loop_and_one_byte_more_in_a_worker_thread(
        service_app: Any) -> None:
    """Catches a threshold other than 64 KiB, `>=` for `>`, and a large body judged on the
    event loop (where it would hold every other connection)."""
    for size, threads in ((64 * KIB, 0), (64 * KIB + 1, 1)):
        answer, submitted = judged_in_threads(service_app, review_of_size(size))
        assert answer["response"]["uid"] == POLICY_REVIEW["request"]["uid"]
        assert answer["response"]["allowed"] is True
        assert submitted == threads, size


# direct GETs of VMIs the cache lacks: 5 a second (bursts of 10), 4 at once, 1 s each,
# not-found kept 5 s

class Clock:
    """The lookups' monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


RATE_LIMITED = "the webhook is rate-limiting direct lookups"


class Api:
    """The GETs the lookups make: each records its timeout and answers `found` (None: not
    found)."""

    def __init__(self, found: dict[str, str] | None = None) -> None:
        self.found = found
        self.timeouts: list[float] = []

    def get(self, timeout: float) -> dict[str, str] | None:
        self.timeouts.append(timeout)
        return self.found


def look_up(lookups: DirectLookups, api: Api, name: str) -> dict[str, str] | None:
    return lookups.look_up("virtualmachineinstances", ("hpc", name), api.get, on_loop=False,
                           what=f"VMI {name!r}")


def lookups_until_refused(lookups: DirectLookups, api: Api, prefix: str) -> int:
    """How many lookups of VMIs not seen before are let through before one is refused."""
    for count in range(100):
        try:
            look_up(lookups, api, f"{prefix}-{count}")
        except LookupFailed as error:
            assert str(error) == RATE_LIMITED
            return count
    raise AssertionError("100 lookups at once and none refused")


def test_10_gets_at_once_then_5_a_second(clock: Clock) -> None:
    """After a quiet time, a burst of 10 GETs; the 11th is refused. Then one every fifth of a
    second: 2 in half a second (the half left over), 5 in the next second. After a quiet
    minute, 10 again, not more. Catches another burst or rate, a bucket that does not
    refill, and one that saves up more than the burst."""
    lookups, api = DirectLookups(["virtualmachineinstances"], clock=clock), Api({"app": "db"})
    assert lookups_until_refused(lookups, api, "first") == 10
    clock.now += 0.5
    assert lookups_until_refused(lookups, api, "half") == 2
    clock.now += 1.0
    assert lookups_until_refused(lookups, api, "second") == 5
    clock.now += 60.0
    assert lookups_until_refused(lookups, api, "later") == 10
    assert api.timeouts == [1.0] * 27


def test_each_get_is_given_1_s(clock: Clock) -> None:
    lookups, api = DirectLookups(["virtualmachineinstances"], clock=clock), Api({"app": "db"})
    assert look_up(lookups, api, "db") == {"app": "db"}
    assert api.timeouts == [1.0]


def test_a_not_found_answer_is_kept_5_s(clock: Clock) -> None:
    """Asked again within 5 s, a VMI found missing is missing without a GET; at 5 s the
    API is asked again. Catches another time, and a not-found never remembered."""
    lookups, api = DirectLookups(["virtualmachineinstances"], clock=clock), Api(None)
    assert look_up(lookups, api, "late") is None
    clock.now += 4.9
    assert look_up(lookups, api, "late") is None
    assert len(api.timeouts) == 1
    clock.now += 0.1
    api.found = {"app": "db"}
    assert look_up(lookups, api, "late") == {"app": "db"}
    assert len(api.timeouts) == 2
    counts = lookups.counts()
    assert [counts[("virtualmachineinstances", result)]
            for result in ("not_found", "negative_cached", "found")] == [1, 1, 1]


class HeldApi:
    """GETs that wait until the test releases them, so that several are in flight."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.all_in = threading.Event()
        self.expected = 0

    def get(self, timeout: float) -> dict[str, str] | None:
        with self.lock:
            self.in_flight += 1
            if self.in_flight == self.expected:
                self.all_in.set()
        assert self.release.wait(30), "the test never released the GETs"
        return {"app": "db"}


def test_4_gets_at_once_and_a_5th_is_refused_until_one_ends(clock: Clock) -> None:
    """Four lookups of four VMIs, their GETs held by the API: each was let through; a fifth,
    of another VMI, is refused there and then (not queued), in a worker thread and on the
    event loop alike. Once they end, a lookup is let through again. Catches a concurrency
    other than 4, and a fifth that waits for a free slot."""
    lookups, api = DirectLookups(["virtualmachineinstances"], clock=clock), HeldApi()
    api.expected = 4
    results: list[dict[str, str] | None] = []

    def held(name: str) -> None:
        results.append(lookups.look_up("virtualmachineinstances", ("hpc", name), api.get,
                                       on_loop=False, what=name))

    threads = [threading.Thread(target=held, args=(f"vm-{n}",)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        assert api.all_in.wait(30), f"only {api.in_flight} GETs in flight"
        with pytest.raises(LookupFailed, match=RATE_LIMITED):
            look_up(lookups, Api({"app": "db"}), "fifth")
        with pytest.raises(LookupFailed, match=RATE_LIMITED):
            lookups.look_up("virtualmachineinstances", ("hpc", "fifth"), Api().get,
                            on_loop=True, what="fifth")
    finally:
        api.release.set()
        for thread in threads:
            thread.join(30)
    assert results == [{"app": "db"}] * 4
    assert look_up(lookups, Api({"app": "db"}), "fifth") == {"app": "db"}


def test_a_lookup_waiting_for_another_ones_get_gives_up_after_1_s(clock: Clock) -> None:
    """A second lookup of a VMI whose GET is in flight waits for it (one GET per VMI), at
    most 1 s: the README's promise, timed on the real clock with a margin for a loaded
    machine. Catches a wait without end, and one far shorter than 1 s."""
    lookups, api = DirectLookups(["virtualmachineinstances"], clock=clock), HeldApi()
    api.expected = 1
    leader = threading.Thread(target=look_up, args=(lookups, api, "slow"))
    leader.start()
    try:
        assert api.all_in.wait(30)
        started = time.perf_counter()
        with pytest.raises(LookupFailed, match=r"^the API did not answer within 1 s$"):
            look_up(lookups, Api({"app": "db"}), "slow")
        waited = time.perf_counter() - started
    finally:
        api.release.set()
        leader.join(30)
    assert 0.95 <= waited < 6.0
    assert lookups.counts()[("virtualmachineinstances", "error")] == 1

