"""Fuzzing: random, mutated and hand-written nasty reviews against the real service over TLS,
and validate_policy in-process: never a 5xx, never an exception, always a bounded answer.

Over HTTP, a review whose uid the contract lets the service read (a JSON object, an
AdmissionReview apiVersion and kind, a request object with a non-empty string uid) is
answered 200 with a well-formed AdmissionReview echoing the uid; anything else 400, 413 or
415. `tests/service/fuzz_corpus/` holds the hand-written cases, named by what they expect: `uid-*`
(answered in the protocol with uid "fuzz-uid"), `nouid-*` (an HTTP error), `any-*` (either).

A short run by default (`make test`); FUZZ_LONG=1 runs many more examples (`make fuzz`).
"""

import copy
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.admission.review import encode_review, invalid
from app.k8s.json_values import OutOfRangeNumber
from app.policy.findings import MAX_CAUSES, MAX_WARNING_LENGTH, MAX_WARNINGS, SUMMARY_BUDGET
from app.policy.model import policy_from_object
from app.policy.validation import validate_policy
from tests.support.reviews import sample_review
from tests.support.service import RunningService, running_service

LONG = os.environ.get("FUZZ_LONG") == "1"
HTTP_EXAMPLES = 2000 if LONG else 60
LOCAL_EXAMPLES = 5000 if LONG else 100

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
VALIDATE = "/validate-migrationpolicy"
MUTATE = "/mutate-virtualmachineinstancemigration"
PATHS = (VALIDATE, MUTATE)
MAX_ANSWER = 256 * 1024
TIMEOUT = 5.0
"""Seconds any one answer may take: generous, the bound is about never hanging."""
HUGE_TIMEOUT = 20.0
"""For the bodies of several megabytes, on a machine that may be busy."""
REVIEW_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
CORPUS_UID = "fuzz-uid"

SEED_REVIEW = sample_review("policy-valid-example.json")
SEED_POLICY = SEED_REVIEW["request"]["object"]
MIGRATION_REVIEW = sample_review("migration-db-vmi.json")

def fuzz(examples: int) -> settings:
    """Hypothesis settings: reproducible short runs, random long ones, no per-example deadline
    (the answers' own timeout bounds them)."""
    return settings(max_examples=examples, deadline=None, derandomize=not LONG,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The fuzz suite's own service, apart from the session's."""
    with running_service(tmp_path_factory.mktemp("fuzz")) as service:
        yield service


@pytest.fixture(scope="module")
def http(fuzz_service: RunningService) -> Iterator[httpx.Client]:
    with fuzz_service.client(timeout=TIMEOUT) as client:
        yield client


def post(http: httpx.Client, path: str, body: bytes, timeout: float = TIMEOUT) -> httpx.Response:
    return http.post(path, content=body, headers={"Content-Type": "application/json"},
                     timeout=timeout)


def readable_uid(review: Any) -> str | None:
    """The uid the contract says the service can read from this review, if any."""
    if not isinstance(review, dict) or review.get("apiVersion") not in REVIEW_VERSIONS:
        return None
    request = review.get("request")
    if review.get("kind") != "AdmissionReview" or not isinstance(request, dict):
        return None
    uid = request.get("uid")
    return uid if isinstance(uid, str) and uid else None


def assert_answer(response: httpx.Response, uid: str | None) -> dict[str, Any] | None:
    """A well-formed answer: the review echoing `uid`, or an HTTP error when there is none."""
    assert response.status_code < 500, response.text[:2000]
    assert len(response.content) <= MAX_ANSWER
    if uid is None:
        assert response.status_code in (400, 413, 415), response.text[:2000]
        assert isinstance(orjson.loads(response.content), dict)
        return None
    assert response.status_code == 200, response.text[:2000]
    review = orjson.loads(response.content)
    assert review["kind"] == "AdmissionReview"
    assert review["apiVersion"] in REVIEW_VERSIONS
    answer = review["response"]
    assert answer["uid"] == uid
    assert isinstance(answer["allowed"], bool)
    for warning in answer.get("warnings", []):
        assert isinstance(warning, str)
        assert len(warning) <= MAX_WARNING_LENGTH
    if not answer["allowed"]:
        status = answer["status"]
        assert isinstance(status["code"], int)
        assert isinstance(status["message"], str) and status["message"]
        for cause in status.get("details", {}).get("causes", []):
            assert cause["reason"] == cause["type"]
            assert isinstance(cause["field"], str)
            assert isinstance(cause["message"], str) and cause["message"]
    return answer


# The hand-written corpus.

CORPUS_FILES = sorted(CORPUS.glob("*.json"))


def test_the_corpus_has_every_kind_of_case():
    kinds = {path.name.split("-", 1)[0] for path in CORPUS_FILES}
    assert kinds == {"uid", "nouid", "any"}
    assert len(CORPUS_FILES) >= 40


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CORPUS_FILES, ids=[case.stem for case in CORPUS_FILES])
def test_corpus(http, case, path):
    response = post(http, path, case.read_bytes())
    kind = case.name.split("-", 1)[0]
    if kind == "any":
        uid = CORPUS_UID if response.status_code == 200 else None
    else:
        uid = CORPUS_UID if kind == "uid" else None
    assert_answer(response, uid)


# Large and deep reviews, built here rather than stored.

def policy_review(policy: Any, *, operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    review = copy.deepcopy(SEED_REVIEW)
    review["request"].update(object=policy, operation=operation, oldObject=old)
    return review


def seed_policy(**spec: Any) -> dict[str, Any]:
    policy = copy.deepcopy(SEED_POLICY)
    policy["spec"].update(spec)
    return policy


def deep_text(depth: int) -> str:
    return '{"x": ' * depth + "1" + "}" * depth


def deep_update() -> bytes:
    body = orjson.dumps(policy_review(seed_policy(experimental={"stallDetector": "DEEP"}),
                                      operation="UPDATE",
                                      old=seed_policy(experimental={"stallDetector": "DEEP"})))
    return body.replace(b'"DEEP"', deep_text(1000).encode())


SEED_UID = SEED_REVIEW["request"]["uid"]
HUGE: dict[str, tuple[Callable[[], bytes], str | None, str]] = {
    # id: (the body, made when the test runs; the uid expected; a fragment of the denial)
    "300k-invalid-selector-keys": (lambda: orjson.dumps(policy_review(seed_policy(
        selectors={"namespaceSelector": {f"bad key {index}": "x" for index in range(300_000)}},
    ))), SEED_UID, "more problems not listed"),
    "4m-character-unknown-field": (lambda: orjson.dumps(policy_review(seed_policy(
        **{"x" * 4_000_000: 1}))), SEED_UID, "(4000000 characters)"),
    "200k-unknown-fields": (lambda: orjson.dumps(policy_review(seed_policy(
        **{f"unknown{index}": 1 for index in range(200_000)}))), SEED_UID,
        "more problems not listed"),
    "1000-deep-experimental-update": (deep_update, SEED_UID, "spec.experimental"),
    "body-over-the-limit": (lambda: b'{"a": "' + b"x" * (9 * 1024 * 1024) + b'"}', None, ""),
}


@pytest.mark.parametrize("case", list(HUGE))
def test_huge_and_deep_reviews(http, case):
    body, uid, fragment = HUGE[case]
    answer = assert_answer(post(http, VALIDATE, body(), timeout=HUGE_TIMEOUT), uid)
    if answer is not None:
        assert answer["allowed"] is False
        assert fragment in answer["status"]["message"]
        assert len(answer["status"]["details"]["causes"]) <= MAX_CAUSES + 1


# Wrong types at every path of the seed's policy.

WRONG_VALUES: list[Any] = [None, True, 0, -1, 1.5, "", "x", [], [1], {}, {"a": 1}]


def leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every path in `value`, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*prefix, key))


def field_of(path: tuple[str, ...]) -> str:
    """The field path a cause names for `path` (selector entries as `map[key]`)."""
    if len(path) == 4 and path[:2] == ("spec", "selectors"):
        return f"spec.selectors.{path[2]}[{path[3]}]"
    return ".".join(path)


def replaced(policy: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    policy = copy.deepcopy(policy)
    node = policy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return policy


EVERY_PATH = [path for path in leaf_paths(SEED_POLICY)]


@pytest.mark.parametrize("path", EVERY_PATH, ids=[".".join(path) or "object"
                                                  for path in EVERY_PATH])
def test_wrong_types_at_every_path(http, path):
    uid = SEED_REVIEW["request"]["uid"]
    seed_value: Any = SEED_POLICY
    for key in path:
        seed_value = seed_value[key]
    for value in WRONG_VALUES:
        body = orjson.dumps(policy_review(replaced(SEED_POLICY, path, value)))
        answer = assert_answer(post(http, VALIDATE, body), uid)
        assert answer is not None
        wrong_type = value is not None and type(value) is not type(seed_value) and not (
            path == ("spec", "bandwidthPerMigration") and type(value) is int)
        if wrong_type:
            assert answer["allowed"] is False, (path, value)
            if path:  # a policy that is not an object has no field to name
                fields = [cause["field"] for cause in answer["status"]["details"]["causes"]]
                assert any(field.startswith(field_of(path)) for field in fields), (
                    path, value, fields)


# Mutated and random reviews over HTTP.

RAW_NUMBERS = ["1e400", "-1e400", "1E+999", "123456789012345678901234567890",
               "-123456789012345678901234567890", "0.1e-400", "1.0", "-0"]
_RAW = re.compile(r'"@@raw:([^"@]*)@@"')


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(["", "217Ki", "-1Gi", "1 GB", "True", "zstd", "-", "a/b/c", "1e400"]),
        st.sampled_from(RAW_NUMBERS).map(lambda text: f"@@raw:{text}@@"),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=4),
                                   st.dictionaries(st.text(max_size=12), children, max_size=4)),
        max_leaves=max_leaves,
    )


def to_body(review: Any) -> bytes:
    """JSON as a client may write it: integers of any size, and numbers JSON parsers refuse."""
    return _RAW.sub(r"\1", json.dumps(review)).encode()


def parsed(body: bytes) -> Any:
    """The review as the contract reads it (a number out of range is still a number)."""
    return json.loads(body, parse_constant=float)


def every_path(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += every_path(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += every_path(item, (*prefix, index))
    return paths


@st.composite
def mutated(draw: st.DrawFn, seed: Any) -> Any:
    """`seed` with a few of its values replaced, keys removed or added, anywhere."""
    review = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = every_path(review)
        path = draw(st.sampled_from(paths))
        value = draw(json_values())
        if not path:
            review = value
            continue
        parent = review
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = value
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=12))] = value
        else:
            parent[path[-1]] = value
    return review


def assert_review_answered(http: httpx.Client, review: Any, path: str) -> None:
    body = to_body(review)
    assert_answer(post(http, path, body), readable_uid(parsed(body)))


@fuzz(HTTP_EXAMPLES)
@given(review=mutated(SEED_REVIEW))
def test_mutated_policy_reviews(http, review):
    assert_review_answered(http, review, VALIDATE)


@fuzz(HTTP_EXAMPLES)
@given(review=mutated(MIGRATION_REVIEW))
def test_mutated_migration_reviews(http, review):
    assert_review_answered(http, review, MUTATE)


@fuzz(HTTP_EXAMPLES // 2)
@given(review=json_values(max_leaves=30), path=st.sampled_from(PATHS))
def test_random_json(http, review, path):
    assert_review_answered(http, review, path)


@fuzz(HTTP_EXAMPLES // 2)
@given(body=st.binary(max_size=200), path=st.sampled_from(PATHS))
def test_random_bytes(http, body, path):
    try:
        uid = readable_uid(orjson.loads(body))
    except orjson.JSONDecodeError:
        uid = None
    assert_answer(post(http, path, body), uid)


# validate_policy in-process: never raises, bounded whatever it is given.

def python_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Values as the parsers hand them over, OutOfRangeNumber and non-finite floats too."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
        st.sampled_from(["1e400", "-1e400", "9" * 400]).map(OutOfRangeNumber),
        st.sampled_from(["217Ki", "-1Gi", "0.4", "1e1.5", "Ki", "db", "", "x" * 400]),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=4),
                                   st.dictionaries(st.text(max_size=12), children, max_size=4)),
        max_leaves=max_leaves,
    )


@st.composite
def mutated_policy(draw: st.DrawFn) -> Any:
    policy = copy.deepcopy(SEED_POLICY)
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        path = draw(st.sampled_from(every_path(policy)))
        value = draw(python_values())
        if not path:
            policy = value
            continue
        parent = policy
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(st.sampled_from(["stallDetector", "downtimeTuning", "maxDowntimeMs",
                                         "experimental", "labels", "status", "x"]))] = value
        else:
            parent[path[-1]] = value
    return policy


GATES = st.sets(st.sampled_from(["MigrationStallDetection", "MigrationDowntimeTuning"]))


def assert_bounded(policy: Any, **kwargs: Any) -> None:
    findings = validate_policy(policy, **kwargs)
    assert findings.valid == (not findings.causes)
    assert len(findings.causes) <= MAX_CAUSES + 1
    assert len(findings.warnings) <= MAX_WARNINGS + 1
    for warning in findings.warnings:
        assert len(warning) <= MAX_WARNING_LENGTH
    for cause in findings.causes:
        assert len(cause.field) <= 400
        assert 0 < len(cause.message) <= 2000
    if findings.valid:
        policy_from_object(policy)  # what the stores and the lint build from a valid one
        return
    assert len(orjson.dumps(findings.summary())) <= SUMMARY_BUDGET
    decision = invalid(findings=findings, group="migrations.kubevirt.io",
                       kind="MigrationPolicy", name="name")
    assert len(encode_review("admission.k8s.io/v1", "uid", decision)) <= MAX_ANSWER
    again = validate_policy(policy, **kwargs)
    assert again.causes == findings.causes
    assert again.warnings == findings.warnings


@fuzz(LOCAL_EXAMPLES)
@given(policy=mutated_policy(), old=st.one_of(st.none(), mutated_policy()), gates=GATES,
       deny=st.booleans())
def test_validate_policy_never_raises_and_stays_bounded(policy, old, gates, deny):
    assert_bounded(policy, old=old, feature_gates=frozenset(gates),
                   same_selectors=lambda candidate: ["another-policy", candidate.name],
                   deny_duplicate_selectors=deny)


@fuzz(LOCAL_EXAMPLES // 3)
@given(policy=python_values(max_leaves=40))
def test_validate_policy_on_any_value(policy):
    assert_bounded(policy)


@fuzz(LOCAL_EXAMPLES // 5)
@given(entries=st.dictionaries(st.text(max_size=60), python_values(max_leaves=1),
                               min_size=95, max_size=120),
       where=st.sampled_from(["namespaceSelector", "virtualMachineInstanceSelector"]))
def test_many_selector_entries_of_any_text(entries, where):
    assert_bounded(seed_policy(selectors={where: entries}))
