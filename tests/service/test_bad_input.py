"""What a client sends that is not a proper review: 400 or 413 with a JSON error, never a 500."""

import copy
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


@pytest.mark.parametrize("field", SPEC_FIELDS)
def test_spec_values_of_every_json_type(client, field):
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
        assert isinstance(response["allowed"], bool)
        if not response["allowed"]:
            assert response["status"]["code"] == 422
            assert response["status"]["details"]["causes"]


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
