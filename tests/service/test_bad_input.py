"""What a client sends that is not a proper review: 400 or 413 with a JSON error, never a 500."""

import copy
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support.reviews import sample_review

VALIDATE = "/validate-migrationpolicy"
MUTATE = "/mutate-virtualmachineinstancemigration"
PATHS = [VALIDATE, MUTATE]
LIMIT = 8 * 1024 * 1024

POLICY_REVIEW = sample_review("policy-valid-example.json")
MIGRATION_REVIEW = sample_review("migration-db-vmi.json")


def review_with(base: dict[str, Any] = POLICY_REVIEW, **request: Any) -> bytes:
    """The sample review with `request` keys replaced (a value of ... removes the key)."""
    review = copy.deepcopy(base)
    for key, value in request.items():
        if value is ...:
            review["request"].pop(key, None)
        else:
            review["request"][key] = value
    return orjson.dumps(review)


def top_with(**fields: Any) -> bytes:
    review = copy.deepcopy(POLICY_REVIEW)
    for key, value in fields.items():
        if value is ...:
            review.pop(key, None)
        else:
            review[key] = value
    return orjson.dumps(review)


# (id, body, a fragment of the error)
BAD_REQUESTS = [
    ("empty", b"", "not valid JSON"),
    ("blank", b"  \n", "not valid JSON"),
    ("malformed", b'{"apiVersion": "admission.k8s.io/v1",', "not valid JSON"),
    ("trailing-garbage", orjson.dumps(POLICY_REVIEW) + b"}", "not valid JSON"),
    ("not-utf8", b"\xff\xfe{}", "not valid JSON"),
    ("nan", b'{"a": NaN}', "not valid JSON"),
    ("single-quotes", b"{'a': 1}", "not valid JSON"),
    ("yaml", b"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n", "not valid JSON"),
    ("array", b"[]", "must be a JSON object"),
    ("array-of-review", b"[" + orjson.dumps(POLICY_REVIEW) + b"]", "must be a JSON object"),
    ("string", b'"AdmissionReview"', "must be a JSON object"),
    ("number", b"42", "must be a JSON object"),
    ("null", b"null", "must be a JSON object"),
    ("true", b"true", "must be a JSON object"),
    ("empty-object", b"{}", "expected kind AdmissionReview"),
    ("deeply-nested", b"[" * 10000 + b"]" * 10000, "not valid JSON"),
    ("deeply-nested-objects", b'{"a":' * 5000 + b"1" + b"}" * 5000, "not valid JSON"),
    ("wrong-kind", top_with(kind="Pod"), 'got kind "Pod"'),
    ("no-kind", top_with(kind=...), "got kind null"),
    ("kind-list", top_with(kind=["AdmissionReview"]), "expected kind AdmissionReview"),
    ("wrong-api-version", top_with(apiVersion="admission.k8s.io/v2"),
     'apiVersion "admission.k8s.io/v2"'),
    ("api-version-number", top_with(apiVersion=1), "apiVersion 1"),
    ("no-request", top_with(request=...), "request is missing"),
    ("request-null", top_with(request=None), "request is missing"),
    ("request-string", top_with(request="x"), "request is missing"),
    ("request-list", top_with(request=[]), "request is missing"),
    ("no-uid", review_with(uid=...), "request.uid"),
    ("uid-empty", review_with(uid=""), "request.uid"),
    ("uid-number", review_with(uid=5), "request.uid"),
    ("uid-object", review_with(uid={"a": 1}), "request.uid"),
    ("uid-null", review_with(uid=None), "request.uid"),
]

# Reviews whose uid is known but whose other parts are wrong: answered in the protocol.
IN_PROTOCOL = [
    ("no-operation", review_with(operation=...), "request.operation"),
    ("operation-number", review_with(operation=1), "request.operation"),
    ("no-resource", review_with(resource=...), "request.resource"),
    ("resource-string", review_with(resource="migrationpolicies"), "request.resource"),
    ("resource-group-number", review_with(resource={"group": 1, "version": "v1alpha1",
                                                    "resource": "migrationpolicies"}),
     "request.resource"),
    ("name-number", review_with(name=5), "request.name"),
    ("namespace-list", review_with(namespace=[]), "request.namespace"),
    ("object-string", review_with(object="x"), 'request.object must be a JSON object, got "x"'),
    ("object-list", review_with(object=[]), "request.object must be a JSON object"),
    ("object-number", review_with(object=1), "request.object must be a JSON object, got 1"),
    ("old-object-string", review_with(oldObject="x"), "request.oldObject"),
    ("no-object-on-create", review_with(object=...), "request.object is missing"),
    ("null-object-on-update", review_with(object=None, operation="UPDATE"),
     "request.object is missing"),
]


@pytest.mark.parametrize(("body", "fragment"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request(client, body, fragment):
    answer = client.post(VALIDATE, content=body)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    assert list(error) == ["error"]
    assert fragment in error["error"]


@pytest.mark.parametrize(("body", "fragment"), [case[1:] for case in IN_PROTOCOL],
                         ids=[case[0] for case in IN_PROTOCOL])
def test_a_review_with_a_uid_is_refused_in_the_protocol(client, body, fragment):
    answer = client.post(VALIDATE, content=body)
    assert answer.status_code == 200, answer.text
    review = answer.json()
    assert review["apiVersion"] == POLICY_REVIEW["apiVersion"]
    response = review["response"]
    assert response["uid"] == POLICY_REVIEW["request"]["uid"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["reason"] == "BadRequest"
    assert fragment in response["status"]["message"]


# An UPDATE of a migration is let through untouched, whatever its object; a review of a
# policy sent to the mutating webhook without its object says first that it is no migration.
MALFORMED_FOR_BOTH = [case for case in IN_PROTOCOL
                      if case[0] not in ("null-object-on-update", "no-object-on-create")]


def test_a_migration_review_without_its_object_is_let_through_with_a_warning(client):
    answer = client.post(MUTATE, content=review_with(MIGRATION_REVIEW, object=...))
    response = answer.json()["response"]
    assert response["uid"] == MIGRATION_REVIEW["request"]["uid"]
    assert response["allowed"] is True
    assert response["warnings"] == ["no migration policy applied: the review is malformed: "
                                    "request.object is missing: a CREATE review carries the "
                                    "object"]


@pytest.mark.parametrize(("body", "fragment"), [case[1:] for case in MALFORMED_FOR_BOTH],
                         ids=[case[0] for case in MALFORMED_FOR_BOTH])
def test_a_malformed_migration_review_is_let_through_with_a_warning(client, body, fragment):
    answer = client.post(MUTATE, content=body)
    assert answer.status_code == 200, answer.text
    response = answer.json()["response"]
    assert response["uid"] == POLICY_REVIEW["request"]["uid"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"][0].startswith(
        "no migration policy applied: the review is malformed: ")
    assert fragment in response["warnings"][0]


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"123456789012345678901234567890"])
def test_a_number_no_double_holds_is_refused_by_field(client, number):
    body = orjson.dumps(POLICY_REVIEW).replace(b'"completionTimeoutPerGiB":23',
                                               b'"completionTimeoutPerGiB":' + number)
    assert number in body
    answer = client.post(VALIDATE, content=body)
    assert answer.status_code == 200, answer.text
    response = answer.json()["response"]
    assert response["uid"] == POLICY_REVIEW["request"]["uid"]
    assert response["allowed"] is False
    fields = [cause["field"] for cause in response["status"]["details"]["causes"]]
    assert fields == ["spec.completionTimeoutPerGiB"]


@pytest.mark.parametrize("content_type", ["application/yaml", "text/plain",
                                          "application/vnd.kubernetes.protobuf"])
def test_a_body_that_is_not_json_by_its_type_gets_415(client, content_type):
    answer = client.post(VALIDATE, content=orjson.dumps(POLICY_REVIEW),
                         headers={"content-type": content_type})
    assert answer.status_code == 415
    assert "application/json" in answer.json()["error"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/x-www-form-urlencoded"])
def test_json_and_curls_default_type_are_read(client, content_type):
    answer = client.post(VALIDATE, content=orjson.dumps(POLICY_REVIEW),
                         headers={"content-type": content_type})
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True


@pytest.mark.parametrize("path", PATHS)
def test_body_over_the_limit(client, path):
    body = orjson.dumps({"padding": "x" * LIMIT})
    answer = client.post(path, content=body)
    assert answer.status_code == 413
    assert str(LIMIT) in answer.json()["error"]


def test_body_at_the_limit_is_read(client):
    review = copy.deepcopy(POLICY_REVIEW)
    review["request"]["object"]["metadata"]["annotations"] = {"note": ""}
    size = len(orjson.dumps(review))
    review["request"]["object"]["metadata"]["annotations"]["note"] = "x" * (LIMIT - size)
    body = orjson.dumps(review)
    assert len(body) == LIMIT
    answer = client.post(VALIDATE, content=body)
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True


def test_chunked_body_over_the_limit(client):
    def chunks() -> Iterator[bytes]:
        yield b'{"padding": "'
        for _ in range(9):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    answer = client.post(VALIDATE, content=chunks())
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413


def test_chunked_body_under_the_limit(client):
    body = orjson.dumps(POLICY_REVIEW)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start:start + 100]

    answer = client.post(VALIDATE, content=chunks())
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True


def test_huge_but_valid_values(client):
    """Big values where the API allows anything: read, validated, answered."""
    review = copy.deepcopy(POLICY_REVIEW)
    metadata = review["request"]["object"]["metadata"]
    metadata["annotations"] = {f"note-{i}": "x" * 1000 for i in range(3000)}
    metadata["labels"] = {f"label-{i}": str(i) for i in range(10000)}
    nested: Any = "leaf"
    for _ in range(900):
        nested = [nested]
    metadata["managedFields"] = nested
    answer = client.post(VALIDATE, json=review)
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True


def test_huge_values_in_checked_fields(client):
    review = copy.deepcopy(POLICY_REVIEW)
    spec = review["request"]["object"]["spec"]
    spec["bandwidthPerMigration"] = "9" * 1_000_000 + "Ei"
    spec["selectors"]["namespaceSelector"] = {f"k{i}": "v" * 64 for i in range(2000)}
    spec["unknown" * 10000] = [[[[{}]]]]
    answer = client.post(VALIDATE, json=review)
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["allowed"] is False
    causes = response["status"]["details"]["causes"]
    assert len(causes) == 101
    assert causes[-1]["message"].startswith("1901 more problems not listed")
    assert all(len(cause["message"]) < 1000 for cause in causes)
    assert len(answer.content) <= 256 * 1024


def test_quantity_with_a_huge_exponent(client):
    review = copy.deepcopy(POLICY_REVIEW)
    review["request"]["object"]["spec"]["bandwidthPerMigration"] = "1e" + "9" * 100000
    answer = client.post(VALIDATE, json=review)
    assert answer.status_code == 200
    assert answer.json()["response"]["allowed"] is True


JSON_VALUES = [None, True, False, 0, -1, 2**64 - 1, -(2**63), 1.5, -0.0, 1e308, "", "x",
               "ü\u0000", [], [None], {}, {"a": {"b": []}}]
SPEC_FIELDS = ["selectors", "allowAutoConverge", "bandwidthPerMigration",
               "completionTimeoutPerGiB", "maxDowntimeMs", "allowPostCopy",
               "allowWorkloadDisruption", "experimental", "selectors.namespaceSelector",
               "selectors.virtualMachineInstanceSelector", "experimental.compression",
               "experimental.stallDetector", "experimental.downtimeTuning"]


# What the service answers for each (field, JSON value) above, written from the contract (§2)
# and KubeVirt's API types, not from the code: a denial's causes as (type, field, message),
# an admission's warnings but the impact. The service runs with no feature gate. A value
# is quoted as JSON (a string in double quotes, `\u0000` escaped, non-ASCII kept); a list
# or an object is not quoted but named.
Cause = tuple[str, str, str]
Expected = tuple[bool, list[str] | list[Cause]]

BELOW_ONE_MEBI = ('spec.bandwidthPerMigration "217Ki" is below 1Mi per second: '
                  "KubeVirt raises it to 1Mi")
EMPTY_SELECTORS = ("spec.selectors is empty, so this policy applies to every VMI in every "
                   "namespace")
ADMITTED: Expected = (True, [BELOW_ONE_MEBI])  # the example's own warning
BOOLEANS = {"allowAutoConverge", "allowPostCopy", "allowWorkloadDisruption"}
# field: (lowest, highest, what is accepted, whether a feature gate guards it)
INTEGERS = {
    "completionTimeoutPerGiB": (0, 2**63 - 1, "a whole number of seconds per GiB, 0 or more, "
                                "such as 150", False),
    "maxDowntimeMs": (1, 2_000_000, "a whole number of milliseconds from 1 to 2000000, "
                      "such as 900", True),
}
LABEL_MAPS = {"selectors.namespaceSelector", "selectors.virtualMachineInstanceSelector"}
# field: (its fields, as KubeVirt's types have them, the gate it needs)
OBJECTS = {
    "selectors": (["namespaceSelector", "virtualMachineInstanceSelector"], None),
    "experimental": (["compression", "downtimeTuning", "stallDetector"], None),
    "experimental.stallDetector": (
        ["completionTimeoutFactor", "ewmaAlpha", "patienceWindowDecayFactor",
         "precopyPossibleFactor", "searchLocalMinima", "stallMargin", "stallProgressTimeout",
         "switchoverTimeout"], "MigrationStallDetection"),
    "experimental.downtimeTuning": (
        ["cooldownSeconds", "initialMs", "startAfterIteration", "steps"],
        "MigrationDowntimeTuning"),
}
NOT_A_QUANTITY = ("is not a Kubernetes quantity: write a number with an optional suffix "
                  '(Ki Mi Gi Ti Pi Ei, n u m k M G T P E) or exponent (e3), e.g. "64Mi"')


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def shown(value: Any) -> str:
    """A value as a message quotes it."""
    if isinstance(value, list):
        return "a list [...]"
    if isinstance(value, dict):
        return "an object {...}"
    return as_json(value)


def described(value: Any) -> str:
    """A value with its JSON type, as a message says what it got."""
    if isinstance(value, bool):
        return f"the boolean {as_json(value)}"
    if isinstance(value, int | float):
        return f"the number {as_json(value)}"
    if isinstance(value, str):
        return f"the string {as_json(value)}"
    return shown(value)


def gate_refused(path: str, gate: str) -> Cause:
    return ("FieldValueForbidden", path, f"setting or changing it needs the {gate} feature "
            f"gate: enable it (--feature-gates {gate}) or remove the field")


def expected_answer(field: str, value: Any) -> Expected:
    """The answer for `spec.<field>` set to `value` in the reference text's example."""
    path = f"spec.{field}"

    def refused(cause_type: str, message: str) -> Expected:
        return False, [(cause_type, path, message)]

    if field in BOOLEANS:
        if value is None or isinstance(value, bool):
            return ADMITTED
        quotes = " (without quotes)" if isinstance(value, str) else ""
        return refused("FieldValueTypeInvalid",
                       f"must be true or false{quotes}, got {described(value)}")
    if field in INTEGERS:
        lowest, highest, accepted, gated = INTEGERS[field]
        if value is None:
            return ADMITTED
        # A JSON integer; or a number past int64 whatever its notation: out of range.
        whole = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and abs(value) >= 2**63)
        if not whole:
            return refused("FieldValueTypeInvalid", f"must be {accepted}, got {described(value)}")
        if lowest <= value <= highest:
            assert not gated, f"{value}: the gates of {field} are tested elsewhere"
            return ADMITTED
        problem = "is negative" if value < 0 else "is out of range"
        return refused("FieldValueInvalid", f"{as_json(value)} {problem}: use {accepted}")
    if field == "bandwidthPerMigration":
        if value is None or (type(value) is int and value == 0):
            return True, []  # no bandwidth, or 0 (unlimited): nothing below 1Mi
        if type(value) is int:
            if value < 0:
                return refused("FieldValueInvalid", f"{value} is negative: use 0 (unlimited) "
                               "or a larger quantity, such as 64Mi")
            return True, [] if value >= 2**20 else [BELOW_ONE_MEBI]
        if isinstance(value, str):
            return refused("FieldValueInvalid", f"{as_json(value)} {NOT_A_QUANTITY}")
        if isinstance(value, float) and abs(value) >= 2**63:
            return refused("FieldValueInvalid", f"{as_json(value)} is too large for a number "
                           "here (at most 9223372036854775807): write it as a string (in "
                           "quotes), as you wrote it")
        hint = f' (write it as a string: "{as_json(value)}")' if isinstance(value, float) else ""
        return refused("FieldValueTypeInvalid", 'must be a quantity string such as "64Mi" or '
                       f"a whole number, got {described(value)}{hint}")
    if field == "experimental.compression":
        if value is None or value in ("none", "zstd"):
            return ADMITTED
        return refused("FieldValueNotSupported",
                       f'{shown(value)} is not supported: use "none" or "zstd"')
    if field in LABEL_MAPS:
        if value is None:
            return ADMITTED  # the other selector still selects
        if not isinstance(value, dict):
            return refused("FieldValueTypeInvalid", "must be a map of label keys to string "
                           f"values, got {described(value)}")
        causes: list[Cause] = [
            ("FieldValueTypeInvalid", f"{path}[{key}]", "label values must be strings, got "
             + (f"{described(label)}: give one string" if isinstance(label, dict | list) else
                f'{described(label)}: quote it in YAML ({key}: "{described(label)}")'))
            for key, label in value.items() if not isinstance(label, str)]
        return (False, causes) if causes else ADMITTED
    fields, gate = OBJECTS[field]
    if value is None:
        if field == "selectors":
            return refused("FieldValueRequired", "required field is missing: add selectors "
                           "with namespaceSelector and/or virtualMachineInstanceSelector "
                           "({} matches every VMI)")
        return ADMITTED
    if not isinstance(value, dict):
        return refused("FieldValueTypeInvalid",
                       f"must be an object of fields, got {described(value)}")
    causes = [gate_refused(path, gate)] if gate else []
    causes += [("FieldValueNotSupported", f"{path}.{key}",
                f"unknown field {as_json(key)}: the fields of {path} are {', '.join(fields)}")
               for key in sorted(value) if key not in fields]
    if causes:
        return False, causes
    if field == "selectors":
        return True, [EMPTY_SELECTORS, BELOW_ONE_MEBI]  # {}: both selectors gone
    return ADMITTED


def test_the_table_covers_every_kind_of_answer():
    """The table is not all denials (nor all admissions): 221 cases, of each outcome."""
    answers = [expected_answer(field, value) for field in SPEC_FIELDS for value in JSON_VALUES]
    assert len(answers) == 221
    admitted = [answer for answer in answers if answer[0]]
    assert len(admitted) == 25
    assert {len(causes) for allowed, causes in answers if not allowed} == {1, 2}


@pytest.mark.parametrize("field", SPEC_FIELDS)
def test_spec_values_of_every_json_type(client, field):
    """Each JSON type in each field gets the answer the table gives: admitted with exactly
    the expected warnings, or denied with exactly the expected causes, and the status
    message naming each. Catches, among others: `0`/`1` or "true" taken for a boolean;
    an integral float (-0.0) or an int64-overflowing number taken for an integer; a float
    or a boolean taken for a quantity; null selectors let through; a gated object let
    through without its gate, or refused for its gate alone with its unknown fields
    unreported; a list or an object quoted whole in a message."""
    wrong = []
    for value in JSON_VALUES:
        review = copy.deepcopy(POLICY_REVIEW)
        node = review["request"]["object"]["spec"]
        *parents, last = field.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
        answer = client.post(VALIDATE, json=review)
        assert answer.status_code == 200, (value, answer.text)
        response = answer.json()["response"]
        allowed, expected = expected_answer(field, value)
        if allowed:
            warnings = response.get("warnings", [])
            got: Any = (response["allowed"],
                        [warning for warning in warnings if not warning.startswith("impact: ")],
                        sum(warning.startswith("impact: ") for warning in warnings))
            want: Any = (True, expected, 1)
        else:
            status = response.get("status", {})
            causes = [(cause["type"], cause["field"], cause["message"])
                      for cause in status.get("details", {}).get("causes", [])]
            got = (response["allowed"], status.get("code"), status.get("reason"), causes,
                   status.get("message"))
            want = (False, 422, "Invalid", expected,
                    "; ".join(f"{path}: {message}" for _, path, message in expected))
        if got != want:
            wrong.append((value, got, want))
    assert wrong == []


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", PATHS)
def test_other_methods(client, method, path):
    answer = client.request(method, path)
    assert answer.status_code == 405


def weird_objects() -> list[Any]:
    return [None, {}, "x", 1, [], {"metadata": "x"}, {"metadata": {"name": []}},
            {"metadata": {"name": "a", "namespace": 5, "annotations": "x"}},
            {"metadata": {"annotations": ["a"]}},
            {"metadata": {"annotations": {"migrations.kubevirt.io/policy": 5, "": None}}},
            {"spec": "x"}, {"spec": {"vmiName": 5}}, {"spec": {"vmiName": ""}},
            {"spec": {"vmiName": "db-vmi"}, "metadata": {"namespace": ["hpc"]}},
            {"spec": {"vmiName": "db-vmi"}, "metadata": None},
            {"kind": {}, "apiVersion": [], "spec": {"selectors": {"namespaceSelector": {"": ""}}}},
            {"metadata": {"name": "ü" * 300, "generateName": []}, "spec": {"selectors": {}}},
            *({"spec": {"vmiName": "db-vmi"}, "metadata": {"annotations": annotations}}
              for annotations in (None, "x", ["a"], {"migrations.kubevirt.io/policy": 5},
                                  {"migrations.kubevirt.io/x": None, "a/b~c": {}}, {}))]


def weird_bodies() -> list[tuple[str, bytes]]:
    bodies: list[tuple[str, bytes]] = [(case[0], case[1]) for case in BAD_REQUESTS]
    for base_name, base in (("policy", POLICY_REVIEW), ("migration", MIGRATION_REVIEW)):
        for number, obj in enumerate(weird_objects()):
            for operation in ("CREATE", "UPDATE", "DELETE", "CONNECT", "", "create"):
                bodies.append((f"{base_name}-object{number}-{operation or 'none'}",
                               review_with(base, object=obj, oldObject=obj,
                                           operation=operation)))
        for key in ("kind", "userInfo", "dryRun", "options", "requestKind", "subResource"):
            for value in (None, "x", 1, [], {}):
                bodies.append((f"{base_name}-{key}-{type(value).__name__}",
                               review_with(base, **{key: value})))
        for resource in ({}, {"group": "x"}, {"resource": None}, {"version": []},
                         {"group": "kubevirt.io", "version": "v1",
                          "resource": "virtualmachineinstancemigrations"},
                         {"group": "migrations.kubevirt.io", "version": "v1alpha1",
                          "resource": "migrationpolicies"}):
            bodies.append((f"{base_name}-resource-{len(bodies)}",
                           review_with(base, resource=resource)))
    bodies += [
        ("bom", b"\xef\xbb\xbf" + orjson.dumps(POLICY_REVIEW)),
        ("nul", b"\x00"),
        ("big-int", b'{"a": ' + b"9" * 5000 + b"}"),
        ("big-float", b'{"a": 1e400}'),
        ("lone-surrogate", b'{"a": "\\ud800"}'),
        ("utf16", orjson.dumps(POLICY_REVIEW).decode().encode("utf-16")),
        ("many-keys", orjson.dumps({str(i): i for i in range(200000)})),
        ("duplicate-keys", b'{"kind": "AdmissionReview", "kind": "Pod"}'),
    ]
    return bodies


WEIRD = weird_bodies()


@pytest.mark.parametrize("path", PATHS)
def test_never_a_500(client, path):
    failures = []
    for name, body in WEIRD:
        answer = client.post(path, content=body)
        if answer.status_code >= 500 or answer.status_code not in (200, 400, 413, 415):
            failures.append((name, answer.status_code, answer.text[:200]))
        elif answer.status_code == 200:
            response = answer.json()["response"]
            assert isinstance(response["allowed"], bool)
        else:
            assert "error" in answer.json()
    assert failures == []
    assert client.get("/healthz").status_code == 200


def test_the_battery_is_large():
    assert len(WEIRD) > 200
