"""The mutating webhook over the real service: patches applied, annotations checked (§4)."""

import base64
import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest

from tests.support.reviews import MUTATE, post_review, sample_review
from tests.support.service import SAMPLE_CLUSTER, start_service, stop_service

PREFIX = "migrations.kubevirt.io/"




def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


def apply(review: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The migration as the API server stores it after the patch."""
    migration = review["request"]["object"]
    if "patch" not in response:
        return migration
    return jsonpatch.apply_patch(migration, decoded_patch(response))


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("annotations", {})


def with_annotations(review: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    review = copy.deepcopy(review)
    review["request"]["object"]["metadata"]["annotations"] = values
    return review


EXPECTED = {
    "migration-db-vmi.json": {
        "policy": "my-awesome-policy",
        "allowAutoConverge": "true",
        "bandwidthPerMigration": "217Ki",
        "completionTimeoutPerGiB": "23",
        "allowPostCopy": "false",
        "allowWorkloadDisruption": "false",
    },
    "migration-gold-db-vmi.json": {
        "policy": "gold-tier-db-policy",
        "bandwidthPerMigration": "1Gi",
        "completionTimeoutPerGiB": "800",
        "allowPostCopy": "true",
        "allowWorkloadDisruption": "true",
    },
    "migration-web-vmi.json": {
        "policy": "web-app-policy",
        "allowAutoConverge": "true",
        "bandwidthPerMigration": "64Mi",
    },
    "migration-plain-vmi.json": {},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_migration_is_stamped_with_its_policy(client: httpx.Client, name: str) -> None:
    review = sample_review(name)
    response = post_review(client, MUTATE, review, allowed=True)
    stamped = apply(review, response)
    expected = {PREFIX + key: value for key, value in EXPECTED[name].items()}
    assert annotations(stamped) == expected
    if expected:
        assert response["auditAnnotations"] == {"policy": EXPECTED[name]["policy"]}
    else:
        assert "patch" not in response


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_second_review_of_patched_object_yields_no_patch(client: httpx.Client, name: str) -> None:
    review = sample_review(name)
    stamped = apply(review, post_review(client, MUTATE, review, allowed=True))
    again = copy.deepcopy(review)
    again["request"]["object"] = stamped
    assert "patch" not in post_review(client, MUTATE, again, allowed=True)


def test_absent_annotations_are_added_whole(client: httpx.Client) -> None:
    review = sample_review("migration-db-vmi.json")
    assert "annotations" not in review["request"]["object"]["metadata"]
    patch = decoded_patch(post_review(client, MUTATE, review, allowed=True))
    assert [op["op"] for op in patch] == ["add"]
    assert patch[0]["path"] == "/metadata/annotations"


def test_keys_are_escaped_as_json_pointer_and_user_annotations_kept(
    client: httpx.Client,
) -> None:
    review = with_annotations(sample_review("migration-db-vmi.json"),
                              {"team.example.com/owner": "alice", "note": "keep me"})
    response = post_review(client, MUTATE, review, allowed=True)
    patch = decoded_patch(response)
    paths = {op["path"] for op in patch}
    assert "/metadata/annotations/migrations.kubevirt.io~1policy" in paths
    assert all("/" not in path.removeprefix("/metadata/annotations/") for path in paths)
    result = annotations(apply(review, response))
    assert result["team.example.com/owner"] == "alice"
    assert result["note"] == "keep me"
    assert result[PREFIX + "policy"] == "my-awesome-policy"


def test_stale_owned_annotations_are_removed(client: httpx.Client) -> None:
    stale = {
        PREFIX + "policy": "old-policy",
        PREFIX + "maxDowntimeMs": "300",
        PREFIX + "experimental": "{}",
        PREFIX + "bandwidthPerMigration": "1Ki",
        "kubevirt.io/other": "kept",
    }
    review = with_annotations(sample_review("migration-db-vmi.json"), stale)
    result = annotations(apply(review, post_review(client, MUTATE, review, allowed=True)))
    assert result == {"kubevirt.io/other": "kept",
                      **{PREFIX + k: v for k, v in EXPECTED["migration-db-vmi.json"].items()}}


def test_stale_annotations_removed_when_no_policy_applies(client: httpx.Client) -> None:
    review = with_annotations(sample_review("migration-plain-vmi.json"),
                              {PREFIX + "policy": "copied-from-elsewhere", "mine": "yes"})
    response = post_review(client, MUTATE, review, allowed=True)
    assert annotations(apply(review, response)) == {"mine": "yes"}


def test_v1beta1_review_is_answered_in_v1beta1(client: httpx.Client) -> None:
    review = sample_review("migration-db-vmi.json")
    review["apiVersion"] = "admission.k8s.io/v1beta1"
    response = post_review(client, MUTATE, review, allowed=True)
    assert annotations(apply(review, response))[PREFIX + "policy"] == "my-awesome-policy"


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE"])
def test_other_operations_pass_untouched(client: httpx.Client, operation: str) -> None:
    review = sample_review("migration-db-vmi.json")
    review["request"]["operation"] = operation
    review["request"]["oldObject"] = copy.deepcopy(review["request"]["object"])
    response = post_review(client, MUTATE, review, allowed=True)
    assert "patch" not in response
    assert "warnings" not in response


def test_missing_vmi_is_let_through_with_a_warning(client: httpx.Client) -> None:
    response = post_review(client, MUTATE, sample_review("migration-missing-vmi.json"),
                           allowed=True)
    assert "patch" not in response
    assert any("no-such-vmi" in warning and "not found" in warning
               for warning in response["warnings"])


def test_missing_vmi_name_is_let_through_with_a_warning(client: httpx.Client) -> None:
    review = sample_review("migration-db-vmi.json")
    del review["request"]["object"]["spec"]["vmiName"]
    response = post_review(client, MUTATE, review, allowed=True)
    assert "patch" not in response
    assert any("spec.vmiName" in warning for warning in response["warnings"])


def test_review_of_another_resource_is_allowed_with_a_warning(client: httpx.Client) -> None:
    review = sample_review("migration-db-vmi.json")
    review["request"]["resource"] = {"group": "", "version": "v1", "resource": "pods"}
    response = post_review(client, MUTATE, review, allowed=True)
    assert "patch" not in response
    assert any("pods" in warning for warning in response["warnings"])


# --- services of their own: another state directory, other flags -------------------------

POLICY_TEMPLATE = """
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata:
  name: {name}
spec:
  bandwidthPerMigration: {bandwidth}
  selectors:
    virtualMachineInstanceSelector:
      workload-type: db
"""


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    shutil.copytree(SAMPLE_CLUSTER, directory)
    return directory


def stamped_policy(client: httpx.Client, name: str = "migration-db-vmi.json") -> str | None:
    review = sample_review(name)
    response = post_review(client, MUTATE, review, allowed=True)
    return annotations(apply(review, response)).get(PREFIX + "policy")


def test_policies_changed_on_disk_change_the_next_decision(
    tmp_path: Path, state_dir: Path
) -> None:
    service = start_service(tmp_path, ["--state", str(state_dir)])
    try:
        with service.client() as client:
            assert stamped_policy(client) == "my-awesome-policy"
            # A broader policy, added in a file of its own, loses to the example (score 1 < 4).
            (state_dir / "extra.yaml").write_text(
                POLICY_TEMPLATE.format(name="db-everywhere", bandwidth="2Gi"))
            # Removing the example's file leaves the broader policy the winner.
            (state_dir / "policies.yaml").unlink()
            wait_for(lambda: stamped_policy(client) == "db-everywhere", "the new policy")
            # A broken file is reported and the last good state stays in force.
            (state_dir / "broken.yaml").write_text("kind: [unclosed\n")
            wait_for(lambda: "not reloaded" in service.log(), "the broken file to be reported")
            assert "broken.yaml" in service.log()
            assert stamped_policy(client) == "db-everywhere"
            (state_dir / "broken.yaml").unlink()
            (state_dir / "extra.yaml").write_text(
                POLICY_TEMPLATE.format(name="db-everywhere", bandwidth="3Gi"))

            def bandwidth() -> str | None:
                review = sample_review("migration-db-vmi.json")
                response = post_review(client, MUTATE, review, allowed=True)
                result = annotations(apply(review, response))
                return result.get(PREFIX + "bandwidthPerMigration")

            wait_for(lambda: bandwidth() == "3Gi", "the changed bandwidth")
    finally:
        stop_service(service)


def test_missing_namespace_and_experimental_and_prefix(tmp_path: Path, state_dir: Path) -> None:
    (state_dir / "orphan.yaml").write_text("""
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: orphan, namespace: ghost-town, labels: {workload-type: db}}
---
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata: {name: experimental-db}
spec:
  maxDowntimeMs: 500
  experimental:
    compression: zstd
    stallDetector: {stallMargin: 5, ewmaAlpha: "0.5"}
  selectors:
    namespaceSelector: {kubernetes.io/metadata.name: default}
    virtualMachineInstanceSelector: {app: batch}
""")
    service = start_service(tmp_path, ["--state", str(state_dir),
                                       "--annotation-prefix", "policies.example.com/"])
    try:
        with service.client() as client:
            review = sample_review("migration-missing-vmi.json")
            review["request"]["namespace"] = "ghost-town"
            review["request"]["object"]["spec"]["vmiName"] = "orphan"
            response = post_review(client, MUTATE, review, allowed=True)
            assert "patch" not in response
            assert any("ghost-town" in warning for warning in response["warnings"])

            review = sample_review("migration-plain-vmi.json")
            result = annotations(apply(review, post_review(client, MUTATE, review, allowed=True)))
            assert result == {
                "policies.example.com/policy": "experimental-db",
                "policies.example.com/maxDowntimeMs": "500",
                "policies.example.com/experimental":
                    '{"compression":"zstd","stallDetector":{"ewmaAlpha":"0.5","stallMargin":5}}',
            }
    finally:
        stop_service(service)


def test_kubevirt_precedence_flag(tmp_path: Path) -> None:
    service = start_service(tmp_path, ["--precedence", "kubevirt"])
    try:
        with service.client() as client:
            assert stamped_policy(client, "migration-web-vmi.json") == "team-web-policy"
            assert stamped_policy(client, "migration-db-vmi.json") == "my-awesome-policy"
    finally:
        stop_service(service)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_v1beta1_review_is_answered_as_its_v1_twin(client: httpx.Client, name: str) -> None:
    """Contract §1: both review versions are accepted, and decided alike."""
    v1 = sample_review(name)
    v1beta1 = copy.deepcopy(v1)
    v1beta1["apiVersion"] = "admission.k8s.io/v1beta1"
    first = post_review(client, MUTATE, v1, allowed=True)
    second = post_review(client, MUTATE, v1beta1, allowed=True)
    assert second.get("patch") == first.get("patch")
    assert second.get("patchType") == first.get("patchType")
    assert second.get("warnings") == first.get("warnings")
    assert second.get("auditAnnotations") == first.get("auditAnnotations")


@pytest.mark.parametrize("uid", ["0", "ünïcödé-uid", "u" * 253, 'with "quotes" and \\'])
def test_any_uid_is_echoed_as_sent(client: httpx.Client, uid: str) -> None:
    review = sample_review("migration-db-vmi.json")
    review["request"]["uid"] = uid
    response = post_review(client, MUTATE, review, allowed=True)
    assert response["uid"] == uid
    assert annotations(apply(review, response))[PREFIX + "policy"] == "my-awesome-policy"
