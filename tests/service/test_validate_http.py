"""POST /validate-migrationpolicy over the real service: the sample reviews and the protocol."""

import copy
from typing import Any

import httpx
import pytest

from tests.support.reviews import VALIDATE, post_review, sample_review
from tests.support.service import SAMPLE_REVIEWS

# sample file -> expected causes (field, type, a fragment quoting the value), None if allowed
SAMPLES: dict[str, list[tuple[str, str, str]] | None] = {
    "policy-valid-example.json": None,
    "policy-bandwidth-not-quantity.json": [
        ("spec.bandwidthPerMigration", "FieldValueInvalid", '"1 GB"'),
    ],
    "policy-invalid-label-key.json": [
        ("spec.selectors.namespaceSelector", "FieldValueInvalid", '"hpc workloads"'),
        ("spec.selectors.virtualMachineInstanceSelector", "FieldValueInvalid",
         '"-workload-type"'),
    ],
    "policy-maxdowntime-without-gate.json": [
        ("spec.maxDowntimeMs", "FieldValueForbidden", "setting it to 300"),
    ],
    "policy-missing-selectors.json": [
        ("spec.selectors", "FieldValueRequired", "{}"),
    ],
    "policy-misspelled-field.json": [
        ("spec.bandwithPerMigration", "FieldValueNotSupported", '"bandwithPerMigration"'),
    ],
    "policy-negative-bandwidth.json": [
        ("spec.bandwidthPerMigration", "FieldValueInvalid", '"-1Gi" is negative'),
    ],
    "policy-negative-timeout.json": [
        ("spec.completionTimeoutPerGiB", "FieldValueInvalid", "-23 is negative"),
    ],
    "policy-timeout-as-string.json": [
        ("spec.completionTimeoutPerGiB", "FieldValueTypeInvalid", 'the string "23"'),
    ],
    "policy-unquoted-boolean-label.json": [
        ("spec.selectors.namespaceSelector[hpc-workloads]", "FieldValueTypeInvalid",
         "the boolean true"),
    ],
}

REVIEW_VERSIONS = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]




def test_the_table_covers_every_policy_sample():
    assert set(SAMPLES) == {path.name for path in SAMPLE_REVIEWS.glob("policy-*.json")}


def test_one_sample_is_a_v1beta1_migration_policy():
    versions = {sample_review(name)["request"]["resource"]["version"] for name in SAMPLES}
    assert versions == {"v1alpha1", "v1beta1"}


@pytest.mark.parametrize("review_version", REVIEW_VERSIONS, ids=["v1", "v1beta1"])
@pytest.mark.parametrize("name", sorted(SAMPLES), ids=lambda n: n.removesuffix(".json"))
def test_sample_review(client, name, review_version):
    review = sample_review(name)
    review["apiVersion"] = review_version
    response = post_review(client, VALIDATE, review)
    expected = SAMPLES[name]
    if expected is None:
        assert response["allowed"] is True
        assert "status" not in response
        return
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 422
    assert status["reason"] == "Invalid"
    details = status["details"]
    assert details["group"] == "migrations.kubevirt.io"
    assert details["kind"] == "MigrationPolicy"
    assert details["name"] == review["request"]["object"]["metadata"]["name"]
    assert [(c["field"], c["type"]) for c in details["causes"]] == [
        (field, kind) for field, kind, _ in expected
    ]
    for cause, (field, _, fragment) in zip(details["causes"], expected, strict=True):
        assert fragment in cause["message"]
        assert f"{field}: {cause['message']}" in status["message"]
        assert f"{field}: " in status["message"]
        assert fragment in status["message"]


def test_sample_file_bytes_as_sent(client):
    """The file exactly as on disk, as `curl --data-binary @file` sends it."""
    raw = (SAMPLE_REVIEWS / "policy-negative-bandwidth.json").read_bytes()
    answer = client.post(VALIDATE, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 200
    assert answer.json()["response"]["status"]["code"] == 422


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_is_always_allowed(client, operation):
    review = sample_review("policy-negative-bandwidth.json")
    request = review["request"]
    request["operation"] = operation
    request["oldObject"] = request.pop("object")
    response = post_review(client, VALIDATE, review)
    assert response["allowed"] is True
    assert "status" not in response


@pytest.mark.parametrize(("group", "resource", "shown"), [
    ("apps", "deployments", "apps/deployments"),
    ("", "pods", "pods"),
    ("kubevirt.io", "virtualmachineinstancemigrations",
     "kubevirt.io/virtualmachineinstancemigrations"),
    ("migrations.kubevirt.io", "migrationpolicy", "migrations.kubevirt.io/migrationpolicy"),
], ids=["deployments", "pods", "migrations", "singular"])
def test_another_resource_is_refused(client, group, resource, shown):
    review = sample_review("policy-valid-example.json")
    review["request"]["resource"] = {"group": group, "version": "v1", "resource": resource}
    response = post_review(client, VALIDATE, review)
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    message = response["status"]["message"]
    assert "migrations.kubevirt.io/migrationpolicies" in message
    assert f"got {shown}" in message


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_known_policy_versions(client, version):
    review = sample_review("policy-valid-example.json")
    review["request"]["resource"]["version"] = version
    review["request"]["object"]["apiVersion"] = f"migrations.kubevirt.io/{version}"
    assert post_review(client, VALIDATE, review)["allowed"] is True


@pytest.mark.parametrize("version", ["v1", "v2", "v1alpha2", ""])
def test_unknown_policy_version_is_refused(client, version):
    review = sample_review("policy-valid-example.json")
    review["request"]["resource"]["version"] = version
    response = post_review(client, VALIDATE, review)
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert f"migrations.kubevirt.io/{version} is not" in response["status"]["message"]
    assert "v1alpha1, v1beta1" in response["status"]["message"]


def update_review(old_downtime: int, new_downtime: int) -> dict[str, Any]:
    review = sample_review("policy-maxdowntime-without-gate.json")
    request = review["request"]
    request["operation"] = "UPDATE"
    request["oldObject"] = copy.deepcopy(request["object"])
    request["oldObject"]["spec"]["maxDowntimeMs"] = old_downtime
    request["object"]["spec"]["maxDowntimeMs"] = new_downtime
    return review


def test_update_keeping_a_gated_value_is_allowed(client):
    assert post_review(client, VALIDATE, update_review(300, 300))["allowed"] is True


def test_update_changing_a_gated_value_is_refused(client):
    response = post_review(client, VALIDATE, update_review(300, 400))
    assert response["allowed"] is False
    assert [(c["field"], c["type"]) for c in response["status"]["details"]["causes"]] == [
        ("spec.maxDowntimeMs", "FieldValueForbidden")]
    assert "400" in response["status"]["message"]


def test_warnings_reach_the_client(client):
    review = sample_review("policy-valid-example.json")
    review["request"]["object"]["metadata"]["name"] = "catch-all"
    review["request"]["object"]["spec"]["selectors"] = {}
    review["request"]["object"]["spec"]["bandwidthPerMigration"] = "512Ki"
    response = post_review(client, VALIDATE, review)
    assert response["allowed"] is True
    warnings = response["warnings"]
    assert len(warnings) == 3
    assert any("every VMI" in warning for warning in warnings)
    assert any('"512Ki" is below 1Mi' in warning for warning in warnings)
    # it applies to the 4 sample VMIs, and wins plain-vmi, which no other policy governs
    assert warnings[-1] == "impact: would govern 1 VMI (1 by no policy); matches 4"
    assert all(len(warning) < 120 for warning in warnings)


def test_denial_keeps_warnings(client):
    review = sample_review("policy-negative-timeout.json")
    review["request"]["object"]["spec"]["selectors"] = {}
    response = post_review(client, VALIDATE, review)
    assert response["allowed"] is False
    assert any("every VMI" in warning for warning in response["warnings"])


@pytest.mark.parametrize("uid", ["x", "705ab4f5-6393-11e8-b7cc-42010a800002", "ü" * 300],
                         ids=["short", "uuid", "long-unicode"])
def test_uid_is_echoed(client, uid):
    review = sample_review("policy-negative-bandwidth.json")
    review["request"]["uid"] = uid
    assert post_review(client, VALIDATE, review)["uid"] == uid


def test_all_problems_in_one_answer(client):
    review = sample_review("policy-valid-example.json")
    spec = review["request"]["object"]["spec"]
    spec.update({"bandwidthPerMigration": "-1Gi", "completionTimeoutPerGiB": "23",
                 "allowPostCopy": "no", "bandwithPerMigration": "1Gi"})
    spec["selectors"]["namespaceSelector"]["hpc-workloads"] = True
    response = post_review(client, VALIDATE, review)
    fields = [cause["field"] for cause in response["status"]["details"]["causes"]]
    assert len(fields) == 5
    assert set(fields) == {
        "spec.bandwidthPerMigration", "spec.completionTimeoutPerGiB", "spec.allowPostCopy",
        "spec.bandwithPerMigration", "spec.selectors.namespaceSelector[hpc-workloads]",
    }
    for field in fields:
        assert f"{field}: " in response["status"]["message"]


@pytest.mark.parametrize("uid", ["0", "ünïcödé-uid", "u" * 253, 'with "quotes" and \\'])
def test_any_uid_is_echoed_as_sent(client: httpx.Client, uid: str) -> None:
    review = sample_review("policy-negative-bandwidth.json")
    review["request"]["uid"] = uid
    response = post_review(client, VALIDATE, review, allowed=False)
    assert response["uid"] == uid
    assert response["status"]["code"] == 422
    assert response["status"]["reason"] == "Invalid"
    assert [cause["field"] for cause in response["status"]["details"]["causes"]] == [
        "spec.bandwidthPerMigration"]
