"""manifests/crd.yaml: the MigrationPolicy CRD, and its schema agreeing with the webhook.

The OpenAPI v3 schema is checked with `jsonschema` after translating what the API server
adds to plain JSON Schema: `x-kubernetes-int-or-string` becomes anyOf integer/string, an
object with `properties` refuses other fields (as the API server does under kubectl's
default strict field validation; without it they are pruned), and the CEL rule the CRD
carries becomes its JSON Schema equivalent. Where the schema cannot express a rule (label
keys, negative quantities, feature gates, ranges of quantities) the webhook alone refuses,
and the tables below say so: if the schema learns such a rule, those rows fail and must move.
"""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from app.k8s.quantity import QUANTITY_PATTERN
from app.k8s.resources import MIGRATION_POLICIES
from app.policy.feature_gates import KNOWN_FEATURE_GATES
from app.policy.findings import Findings
from app.policy.validation import validate_policy
from tests.support.crd_schema import (
    EXCLUSIVE_RULE,
    Schema,
    crd,
    openapi_schema,
    schema_errors,
    schema_validator,
)
from tests.support.service import SAMPLE_REVIEWS, SAMPLES

POLICIES = MIGRATION_POLICIES
GROUP, KIND, RESOURCE, VERSIONS = POLICIES.group, POLICIES.kind, POLICIES.plural, POLICIES.versions


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    return schema_validator()


def assert_same_fields(schema_paths: list[str], findings: Findings) -> None:
    """Every field the schema refuses is a field (or the parent of one) the webhook names."""
    fields = [cause.field for cause in findings.causes]
    for path in schema_paths:
        assert any(field == path or field.startswith((path + ".", path + "["))
                   for field in fields), f"schema refuses {path!r}, the webhook {fields}"


# The CRD itself.


def test_crd_names_the_migration_policy_resource() -> None:
    doc = crd()
    assert doc["metadata"]["name"] == f"{RESOURCE}.{GROUP}"
    spec = doc["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["plural"] == RESOURCE
    assert spec["names"]["singular"] == "migrationpolicy"


def test_versions_v1alpha1_stored_v1beta1_served_with_the_same_schema() -> None:
    versions = {v["name"]: v for v in crd()["spec"]["versions"]}
    assert tuple(versions) == VERSIONS
    assert versions["v1alpha1"]["served"] and versions["v1alpha1"]["storage"]
    assert versions["v1beta1"]["served"] and not versions["v1beta1"]["storage"]
    assert openapi_schema("v1alpha1") == openapi_schema("v1beta1")


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}".lstrip("."))
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")


def test_schema_is_structural() -> None:
    """Every node says its type (int-or-string and preserve-unknown nodes aside); properties
    and additionalProperties never together; anyOf holds only value checks."""
    for path, node in walk(openapi_schema()):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
            continue
        assert "type" in node, f"{path or 'root'} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "anyOf" not in node, path


def test_every_quantity_uses_the_quantity_pattern() -> None:
    quantities = [path for path, node in walk(openapi_schema())
                  if node.get("x-kubernetes-int-or-string")]
    assert quantities == [
        "spec.bandwidthPerMigration",
        "spec.experimental.stallDetector.ewmaAlpha",
        "spec.experimental.stallDetector.precopyPossibleFactor",
        "spec.experimental.stallDetector.patienceWindowDecayFactor",
        "spec.experimental.stallDetector.completionTimeoutFactor",
    ]
    for path, node in walk(openapi_schema()):
        if path in quantities:
            assert node["pattern"] == QUANTITY_PATTERN, path


def test_the_field_rules_are_the_webhooks() -> None:
    nodes = dict(walk(openapi_schema()))
    assert nodes[""]["required"] == ["spec"]
    assert nodes["spec"]["required"] == ["selectors"]
    assert nodes["spec.completionTimeoutPerGiB"] == {
        **nodes["spec.completionTimeoutPerGiB"],
        "type": "integer", "format": "int64", "minimum": 0}
    assert (nodes["spec.maxDowntimeMs"]["minimum"], nodes["spec.maxDowntimeMs"]["maximum"]) == (
        1, 2_000_000)
    for name in ("allowAutoConverge", "allowPostCopy", "allowWorkloadDisruption"):
        assert nodes[f"spec.{name}"]["type"] == "boolean"
    for name in ("namespaceSelector", "virtualMachineInstanceSelector"):
        assert nodes[f"spec.selectors.{name}"]["type"] == "object"
        assert nodes[f"spec.selectors.{name}[*]"]["type"] == "string"
    assert nodes["spec.experimental.compression"]["enum"] == ["none", "zstd"]
    rules = [rule["rule"] for rule in nodes["spec.experimental"]["x-kubernetes-validations"]]
    assert rules == [EXCLUSIVE_RULE]


# The samples: the schema and validate_policy agree where the schema expresses the rule.

SCHEMA_CANNOT = {
    "policy-invalid-label-key.json": "OpenAPI cannot constrain the keys of a map",
    "policy-maxdowntime-without-gate.json": "feature gates are the webhook's",
    "policy-negative-bandwidth.json": "the quantity pattern allows a sign; only the webhook "
                                      "compares the value with 0",
}


def sample_policies() -> list[tuple[str, Any]]:
    found = []
    for path in sorted(SAMPLE_REVIEWS.glob("*.json")):
        request = json.loads(path.read_text())["request"]
        if request["resource"]["resource"] == RESOURCE:
            found.append((path.name, request["object"]))
    return found


def test_the_samples_cover_each_kind_of_mistake() -> None:
    names = {name for name, _ in sample_policies()}
    assert {"policy-valid-example.json", "policy-timeout-as-string.json",
            "policy-negative-timeout.json", "policy-unquoted-boolean-label.json",
            "policy-missing-selectors.json", "policy-bandwidth-not-quantity.json",
            *SCHEMA_CANNOT} <= names


@pytest.mark.parametrize(("name", "policy"), sample_policies(), ids=lambda v: str(v)[:40])
def test_schema_and_webhook_agree_on_the_sample_reviews(
    validator: jsonschema.Draft4Validator, name: str, policy: Any
) -> None:
    findings = validate_policy(policy)
    errors = schema_errors(validator, policy)
    if name in SCHEMA_CANNOT:
        assert not findings.valid, name
        assert errors == [], f"the schema now refuses {name}: move it out of SCHEMA_CANNOT"
        return
    assert findings.valid == (not errors), (name, errors, findings.summary())
    assert_same_fields(errors, findings)


def yaml_policies(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", [SAMPLES / "policies" / "my-awesome-policy.yaml",
                                  SAMPLES / "cluster" / "policies.yaml"],
                         ids=lambda path: path.name)
def test_the_sample_policies_are_accepted_by_both(
    validator: jsonschema.Draft4Validator, path: Path
) -> None:
    for policy in yaml_policies(path):
        assert validate_policy(policy).valid
        assert schema_errors(validator, policy) == []


def test_the_refused_example_passes_the_schema_so_the_webhook_is_what_refuses_it(
    validator: jsonschema.Draft4Validator,
) -> None:
    """So the README's and the install guide's refused example shows the webhook's words on
    a real cluster, not the schema's."""
    [policy] = yaml_policies(SAMPLES / "policies" / "two-mistakes.yaml")
    assert schema_errors(validator, policy) == []
    assert not validate_policy(policy).valid


def test_three_mistakes_are_refused_by_both_except_the_negative_bandwidth(
    validator: jsonschema.Draft4Validator,
) -> None:
    [policy] = yaml_policies(SAMPLES / "policies" / "three-mistakes.yaml")
    findings = validate_policy(policy)
    errors = schema_errors(validator, policy)
    assert sorted(errors) == ["spec.completionTimeoutPerGiB",
                              "spec.selectors.namespaceSelector[hpc-workloads]"]
    assert "spec.bandwidthPerMigration" in {cause.field for cause in findings.causes}
    assert_same_fields(errors, findings)


# More cases, with every feature gate on so that gates do not hide the field rules.

BASE = yaml_policies(SAMPLES / "policies" / "my-awesome-policy.yaml")[0]
LONG = "x" * 64
CASES: list[tuple[str, dict[str, Any], bool, bool]] = [
    # (what, spec fields to set (None removes), webhook accepts, schema accepts)
    ("bandwidth integer 0", {"bandwidthPerMigration": 0}, True, True),
    ("bandwidth string 0", {"bandwidthPerMigration": "0"}, True, True),
    ("bandwidth exponent", {"bandwidthPerMigration": "1e9"}, True, True),
    ("bandwidth float", {"bandwidthPerMigration": 1.5}, False, False),
    ("bandwidth boolean", {"bandwidthPerMigration": True}, False, False),
    ("bandwidth MiB", {"bandwidthPerMigration": "64MiB"}, False, False),
    ("bandwidth space", {"bandwidthPerMigration": " 64Mi"}, False, False),
    ("bandwidth negative", {"bandwidthPerMigration": "-64Mi"}, False, True),
    ("timeout 0", {"completionTimeoutPerGiB": 0}, True, True),
    ("timeout -1", {"completionTimeoutPerGiB": -1}, False, False),
    ("timeout float", {"completionTimeoutPerGiB": 1.5}, False, False),
    ("downtime 1", {"maxDowntimeMs": 1}, True, True),
    ("downtime 2000000", {"maxDowntimeMs": 2_000_000}, True, True),
    ("downtime 0", {"maxDowntimeMs": 0}, False, False),
    ("downtime 2000001", {"maxDowntimeMs": 2_000_001}, False, False),
    ("post-copy string", {"allowPostCopy": "true"}, False, False),
    ("disruption bool", {"allowWorkloadDisruption": False}, True, True),
    ("selectors empty", {"selectors": {}}, True, True),
    ("selectors missing", {"selectors": None}, False, False),
    ("selector not a map", {"selectors": {"namespaceSelector": "env=prod"}}, False, False),
    ("label value long", {"selectors": {"namespaceSelector": {"a": LONG}}}, False, False),
    ("label value dash", {"selectors": {"namespaceSelector": {"a": "-x"}}}, False, False),
    ("label value number", {"selectors": {"virtualMachineInstanceSelector": {"a": 1}}},
     False, False),
    ("label key space", {"selectors": {"namespaceSelector": {"a b": "x"}}}, False, True),
    ("unknown field", {"bandwith": "1Gi"}, False, False),
    ("compression zstd", {"experimental": {"compression": "zstd"}}, True, True),
    ("compression lz4", {"experimental": {"compression": "lz4"}}, False, False),
    ("stall margin 50", {"experimental": {"stallDetector": {"stallMargin": 50}}}, True, True),
    ("stall margin 101", {"experimental": {"stallDetector": {"stallMargin": 101}}},
     False, False),
    ("ewma alpha 0.4", {"experimental": {"stallDetector": {"ewmaAlpha": "0.4"}}}, True, True),
    ("ewma alpha 1.5", {"experimental": {"stallDetector": {"ewmaAlpha": "1.5"}}}, False, True),
    ("ewma alpha text", {"experimental": {"stallDetector": {"ewmaAlpha": "high"}}},
     False, False),
    ("tuning steps 0", {"experimental": {"downtimeTuning": {"steps": 0}}}, False, False),
    ("tuning cooldown int32+1",
     {"experimental": {"downtimeTuning": {"cooldownSeconds": 2**31}}}, False, False),
    ("tuning ok", {"experimental": {"downtimeTuning": {"initialMs": 150, "steps": 7}}},
     True, True),
    ("stall and tuning", {"experimental": {"stallDetector": {}, "downtimeTuning": {}}},
     False, False),
    ("experimental unknown", {"experimental": {"compresion": "zstd"}}, False, False),
]


@pytest.mark.parametrize(("what", "fields", "webhook_accepts", "schema_accepts"), CASES,
                         ids=[case[0] for case in CASES])
def test_schema_and_webhook_on_each_rule(
    validator: jsonschema.Draft4Validator, what: str, fields: dict[str, Any],
    webhook_accepts: bool, schema_accepts: bool,
) -> None:
    policy = copy.deepcopy(BASE)
    for name, value in fields.items():
        if value is None:
            del policy["spec"][name]
        else:
            policy["spec"][name] = value
    findings = validate_policy(policy, feature_gates=KNOWN_FEATURE_GATES)
    errors = schema_errors(validator, policy)
    assert findings.valid is webhook_accepts, findings.summary()
    assert (not errors) is schema_accepts, errors
    assert_same_fields(errors, findings)
