"""Every rule of contract §2, through validate_policy: causes, field paths, messages, warnings."""

import copy
from typing import Any

import orjson
import pytest

from app.policy.findings import CauseType
from app.policy.validation import validate_policy

STALL = "MigrationStallDetection"
TUNING = "MigrationDowntimeTuning"
BOTH = frozenset({STALL, TUNING})
NONE: frozenset[str] = frozenset()

INVALID = CauseType.INVALID.value
REQUIRED = CauseType.REQUIRED.value
NOT_SUPPORTED = CauseType.NOT_SUPPORTED.value
TYPE_INVALID = CauseType.TYPE_INVALID.value
FORBIDDEN = CauseType.FORBIDDEN.value

BASE = {
    "apiVersion": "migrations.kubevirt.io/v1alpha1",
    "kind": "MigrationPolicy",
    "metadata": {"name": "my-policy"},
    "spec": {"selectors": {"namespaceSelector": {"hpc-workloads": "True"}}},
}


def with_value(path: str, value: Any, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """A deep copy of `base` with `value` at the dotted `path` (objects made on the way)."""
    policy = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = policy
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return policy


def causes(policy: dict[str, Any], **kwargs: Any) -> list[tuple[str, str, str]]:
    findings = validate_policy(policy, **kwargs)
    return [(cause.type.value, cause.field, cause.message) for cause in findings.causes]


def shown(value: Any) -> str:
    """How a message quotes the value: JSON for scalars, a placeholder for containers."""
    if isinstance(value, dict):
        return "an object {...}"
    if isinstance(value, list):
        return "a list [...]"
    return orjson.dumps(value).decode()


def test_the_base_policy_is_valid():
    findings = validate_policy(BASE)
    assert findings.causes == []
    assert findings.warnings == []


# (id, field path, value, enabled gates, cause type, fragments of the message besides the value)
DENIED = [
    # spec.bandwidthPerMigration: a quantity string or a JSON integer, not negative
    ("bandwidth-negative-string", "spec.bandwidthPerMigration", "-1Gi", NONE, INVALID,
     ["is negative", "0 (unlimited)", "64Mi"]),
    ("bandwidth-negative-int", "spec.bandwidthPerMigration", -1, NONE, INVALID,
     ["is negative", "0 (unlimited)"]),
    ("bandwidth-tiny-negative", "spec.bandwidthPerMigration", "-1n", NONE, INVALID,
     ["is negative"]),
    ("bandwidth-spaces", "spec.bandwidthPerMigration", "1 GB", NONE, INVALID,
     ["not a Kubernetes quantity", "remove the spaces"]),
    ("bandwidth-bytes", "spec.bandwidthPerMigration", "1GB", NONE, INVALID,
     ["quantities have no B", "Gi"]),
    ("bandwidth-lowercase-ki", "spec.bandwidthPerMigration", "1ki", NONE, INVALID,
     ["case-sensitive", '"1Ki"']),
    ("bandwidth-uppercase-mi", "spec.bandwidthPerMigration", "64MI", NONE, INVALID,
     ["case-sensitive", '"64Mi"']),
    ("bandwidth-capital-k", "spec.bandwidthPerMigration", "1K", NONE, INVALID,
     ["write k (1000) or Ki (1024)"]),
    ("bandwidth-empty", "spec.bandwidthPerMigration", "", NONE, INVALID,
     ["not a Kubernetes quantity", "Ki Mi Gi"]),
    ("bandwidth-nan", "spec.bandwidthPerMigration", "NaN", NONE, INVALID,
     ["not a Kubernetes quantity"]),
    ("bandwidth-float", "spec.bandwidthPerMigration", 1.5, NONE, TYPE_INVALID,
     ["quantity string", 'write it as a string: "1.5"']),
    ("bandwidth-bool", "spec.bandwidthPerMigration", True, NONE, TYPE_INVALID,
     ["quantity string", "the boolean"]),
    ("bandwidth-list", "spec.bandwidthPerMigration", ["1Gi"], NONE, TYPE_INVALID,
     ["quantity string"]),
    ("bandwidth-object", "spec.bandwidthPerMigration", {"value": "1Gi"}, NONE, TYPE_INVALID,
     ["quantity string"]),
    # spec.completionTimeoutPerGiB: a JSON integer (int64), not negative
    ("timeout-negative", "spec.completionTimeoutPerGiB", -23, NONE, INVALID,
     ["is negative", "0 or more"]),
    ("timeout-int64-overflow", "spec.completionTimeoutPerGiB", 2**63, NONE, INVALID,
     ["out of range"]),
    ("timeout-string", "spec.completionTimeoutPerGiB", "23", NONE, TYPE_INVALID,
     ["the string", "without quotes", "whole number"]),
    ("timeout-float", "spec.completionTimeoutPerGiB", 1.5, NONE, TYPE_INVALID,
     ["whole number"]),
    ("timeout-bool", "spec.completionTimeoutPerGiB", True, NONE, TYPE_INVALID,
     ["the boolean"]),
    ("timeout-list", "spec.completionTimeoutPerGiB", [23], NONE, TYPE_INVALID,
     ["whole number"]),
    ("timeout-object", "spec.completionTimeoutPerGiB", {}, NONE, TYPE_INVALID,
     ["whole number"]),
    # spec.maxDowntimeMs: 1 to 2000000, behind a gate
    ("maxdowntime-0", "spec.maxDowntimeMs", 0, BOTH, INVALID,
     ["out of range", "from 1 to 2000000"]),
    ("maxdowntime-2000001", "spec.maxDowntimeMs", 2000001, BOTH, INVALID,
     ["out of range", "from 1 to 2000000"]),
    ("maxdowntime-negative", "spec.maxDowntimeMs", -5, BOTH, INVALID, ["from 1 to 2000000"]),
    ("maxdowntime-bool", "spec.maxDowntimeMs", False, BOTH, TYPE_INVALID, ["the boolean"]),
    ("maxdowntime-string", "spec.maxDowntimeMs", "300", BOTH, TYPE_INVALID, ["without quotes"]),
    ("maxdowntime-float", "spec.maxDowntimeMs", 300.0, BOTH, TYPE_INVALID, ["whole number"]),
    ("maxdowntime-no-gate", "spec.maxDowntimeMs", 300, NONE, FORBIDDEN,
     [STALL, TUNING, "--feature-gates"]),
    # booleans
    ("autoconverge-string", "spec.allowAutoConverge", "true", NONE, TYPE_INVALID,
     ["true or false", "without quotes"]),
    ("autoconverge-int", "spec.allowAutoConverge", 1, NONE, TYPE_INVALID, ["true or false"]),
    ("postcopy-string", "spec.allowPostCopy", "yes", NONE, TYPE_INVALID, ["true or false"]),
    ("postcopy-list", "spec.allowPostCopy", [True], NONE, TYPE_INVALID, ["true or false"]),
    ("disruption-object", "spec.allowWorkloadDisruption", {}, NONE, TYPE_INVALID,
     ["true or false"]),
    ("disruption-float", "spec.allowWorkloadDisruption", 0.0, NONE, TYPE_INVALID,
     ["true or false"]),
    # experimental.compression
    ("compression-gzip", "spec.experimental.compression", "gzip", NONE, NOT_SUPPORTED,
     ['"none" or "zstd"']),
    ("compression-case", "spec.experimental.compression", "ZSTD", NONE, NOT_SUPPORTED,
     ['"none" or "zstd"']),
    ("compression-empty", "spec.experimental.compression", "", NONE, NOT_SUPPORTED,
     ['"none" or "zstd"']),
    ("compression-bool", "spec.experimental.compression", False, NONE, NOT_SUPPORTED,
     ['"none" or "zstd"']),
    ("compression-list", "spec.experimental.compression", ["zstd"], NONE, NOT_SUPPORTED,
     ['"none" or "zstd"']),
    # experimental.stallDetector: ranges
    ("stallmargin-negative", "spec.experimental.stallDetector.stallMargin", -1, BOTH, INVALID,
     ["from 0 to 100"]),
    ("stallmargin-101", "spec.experimental.stallDetector.stallMargin", 101, BOTH, INVALID,
     ["from 0 to 100"]),
    ("stallmargin-string", "spec.experimental.stallDetector.stallMargin", "4", BOTH,
     TYPE_INVALID, ["without quotes"]),
    ("ewma-zero", "spec.experimental.stallDetector.ewmaAlpha", "0", BOTH, INVALID,
     ["out of range", "above 0 and at most 1"]),
    ("ewma-zero-int", "spec.experimental.stallDetector.ewmaAlpha", 0, BOTH, INVALID,
     ["above 0 and at most 1"]),
    ("ewma-above-one", "spec.experimental.stallDetector.ewmaAlpha", "1.001", BOTH, INVALID,
     ["above 0 and at most 1"]),
    ("ewma-negative", "spec.experimental.stallDetector.ewmaAlpha", "-0.5", BOTH, INVALID,
     ["is negative"]),
    ("ewma-precision", "spec.experimental.stallDetector.ewmaAlpha", "0.1234", BOTH, INVALID,
     ["more than 3 decimal places", "0.123"]),
    ("ewma-precision-exponent", "spec.experimental.stallDetector.ewmaAlpha", "1e-4", BOTH,
     INVALID, ["more than 3 decimal places"]),
    ("ewma-precision-long", "spec.experimental.stallDetector.ewmaAlpha",
     "0.4" + "0" * 70 + "1", BOTH, INVALID, ["more than 3 decimal places"]),
    ("ewma-above-one-long", "spec.experimental.stallDetector.ewmaAlpha",
     "1." + "0" * 70 + "1", BOTH, INVALID, ["out of range"]),
    ("ewma-float", "spec.experimental.stallDetector.ewmaAlpha", 0.5, BOTH, TYPE_INVALID,
     ['write it as a string: "0.5"']),
    ("ewma-not-quantity", "spec.experimental.stallDetector.ewmaAlpha", "half", BOTH, INVALID,
     ["not a Kubernetes quantity"]),
    ("progress-timeout-negative", "spec.experimental.stallDetector.stallProgressTimeout", -1,
     BOTH, INVALID, ["is negative"]),
    ("switchover-int64-overflow", "spec.experimental.stallDetector.switchoverTimeout", 2**63,
     BOTH, INVALID, ["out of range"]),
    ("precopy-below-one", "spec.experimental.stallDetector.precopyPossibleFactor", "0.9", BOTH,
     INVALID, ["1 or more"]),
    ("precopy-precision", "spec.experimental.stallDetector.precopyPossibleFactor", "1.5005",
     BOTH, INVALID, ["more than 3 decimal places"]),
    ("decay-above-one", "spec.experimental.stallDetector.patienceWindowDecayFactor", "1.5",
     BOTH, INVALID, ["at most 1"]),
    ("local-minima-string", "spec.experimental.stallDetector.searchLocalMinima", "yes", BOTH,
     TYPE_INVALID, ["true or false"]),
    ("completion-factor-below-one", "spec.experimental.stallDetector.completionTimeoutFactor",
     "0.5", BOTH, INVALID, ["1 or more"]),
    ("stalldetector-list", "spec.experimental.stallDetector", [], BOTH, TYPE_INVALID,
     ["object of fields"]),
    # experimental.downtimeTuning: minimums and int32
    ("initial-ms-zero", "spec.experimental.downtimeTuning.initialMs", 0, BOTH, INVALID,
     ["1 or more"]),
    ("steps-zero", "spec.experimental.downtimeTuning.steps", 0, BOTH, INVALID,
     ["from 1 to 2147483647"]),
    ("steps-int32-overflow", "spec.experimental.downtimeTuning.steps", 2**31, BOTH, INVALID,
     ["from 1 to 2147483647"]),
    ("start-after-zero", "spec.experimental.downtimeTuning.startAfterIteration", 0, BOTH,
     INVALID, ["1 or more"]),
    ("cooldown-int32-overflow", "spec.experimental.downtimeTuning.cooldownSeconds", 2**31,
     BOTH, INVALID, ["from 1 to 2147483647"]),
    ("cooldown-zero", "spec.experimental.downtimeTuning.cooldownSeconds", 0, BOTH, INVALID,
     ["from 1 to 2147483647"]),
    ("experimental-string", "spec.experimental", "zstd", NONE, TYPE_INVALID,
     ["object of fields"]),
    # selectors
    ("selectors-list", "spec.selectors", [], NONE, TYPE_INVALID, ["object of fields"]),
    ("selectors-string", "spec.selectors", "app=web", NONE, TYPE_INVALID,
     ["object of fields"]),
    ("ns-selector-list", "spec.selectors.namespaceSelector", ["a"], NONE, TYPE_INVALID,
     ["map of label keys to string values"]),
    ("vmi-selector-string", "spec.selectors.virtualMachineInstanceSelector", "app=web", NONE,
     TYPE_INVALID, ["map of label keys to string values"]),
]


@pytest.mark.parametrize(("path", "value", "gates", "cause_type", "fragments"),
                         [case[1:] for case in DENIED], ids=[case[0] for case in DENIED])
def test_denied(path, value, gates, cause_type, fragments):
    found = causes(with_value(path, value), feature_gates=gates)
    assert [(kind, field) for kind, field, _ in found] == [(cause_type, path)]
    message = found[0][2]
    assert shown(value)[:70] in message
    for fragment in fragments:
        assert fragment in message
    if value != "":
        assert '""' not in message  # no doubled quotes around an example


# (id, field path, value, enabled gates)
ALLOWED = [
    ("bandwidth-zero-string", "spec.bandwidthPerMigration", "0", NONE),
    ("bandwidth-zero-int", "spec.bandwidthPerMigration", 0, NONE),
    ("bandwidth-minus-zero", "spec.bandwidthPerMigration", "-0", NONE),
    ("bandwidth-example", "spec.bandwidthPerMigration", "217Ki", NONE),
    ("bandwidth-int", "spec.bandwidthPerMigration", 1048576, NONE),
    ("bandwidth-uint64", "spec.bandwidthPerMigration", 2**64 - 1, NONE),
    ("bandwidth-exponent", "spec.bandwidthPerMigration", "1e9", NONE),
    ("bandwidth-plus", "spec.bandwidthPerMigration", "+1Gi", NONE),
    ("bandwidth-huge", "spec.bandwidthPerMigration", "1e400", NONE),
    ("bandwidth-null", "spec.bandwidthPerMigration", None, NONE),
    ("timeout-zero", "spec.completionTimeoutPerGiB", 0, NONE),
    ("timeout-int64-max", "spec.completionTimeoutPerGiB", 2**63 - 1, NONE),
    ("maxdowntime-1-stall", "spec.maxDowntimeMs", 1, frozenset({STALL})),
    ("maxdowntime-2000000-tuning", "spec.maxDowntimeMs", 2000000, frozenset({TUNING})),
    ("autoconverge-false", "spec.allowAutoConverge", False, NONE),
    ("postcopy-true", "spec.allowPostCopy", True, NONE),
    ("disruption-true", "spec.allowWorkloadDisruption", True, NONE),
    ("compression-none", "spec.experimental.compression", "none", NONE),
    ("compression-zstd", "spec.experimental.compression", "zstd", NONE),
    ("stallmargin-0", "spec.experimental.stallDetector.stallMargin", 0, frozenset({STALL})),
    ("stallmargin-100", "spec.experimental.stallDetector.stallMargin", 100, frozenset({STALL})),
    ("ewma-one", "spec.experimental.stallDetector.ewmaAlpha", "1", frozenset({STALL})),
    ("ewma-one-int", "spec.experimental.stallDetector.ewmaAlpha", 1, frozenset({STALL})),
    ("ewma-3-places", "spec.experimental.stallDetector.ewmaAlpha", "0.001", frozenset({STALL})),
    ("ewma-milli", "spec.experimental.stallDetector.ewmaAlpha", "400m", frozenset({STALL})),
    ("ewma-trailing-zeros", "spec.experimental.stallDetector.ewmaAlpha", "0.40000",
     frozenset({STALL})),
    ("ewma-exponent", "spec.experimental.stallDetector.ewmaAlpha", "1e-3", frozenset({STALL})),
    ("precopy-one", "spec.experimental.stallDetector.precopyPossibleFactor", "1",
     frozenset({STALL})),
    ("decay-zero", "spec.experimental.stallDetector.patienceWindowDecayFactor", "0",
     frozenset({STALL})),
    ("local-minima", "spec.experimental.stallDetector.searchLocalMinima", True,
     frozenset({STALL})),
    ("empty-stalldetector", "spec.experimental.stallDetector", {}, frozenset({STALL})),
    ("steps-int32-max", "spec.experimental.downtimeTuning.steps", 2**31 - 1,
     frozenset({TUNING})),
    ("cooldown-one", "spec.experimental.downtimeTuning.cooldownSeconds", 1,
     frozenset({TUNING})),
    ("initial-ms-int64", "spec.experimental.downtimeTuning.initialMs", 2**63 - 1,
     frozenset({TUNING})),
    ("empty-label-value", "spec.selectors.namespaceSelector.xyz-workloads-type", "", NONE),
    ("prefixed-label-key", "spec.selectors.virtualMachineInstanceSelector.kubevirt.io/size",
     "large", NONE),
    ("name-253", "metadata.name", "a" * 253, NONE),
    ("generate-name", "metadata", {"generateName": "policy-"}, NONE),
]


@pytest.mark.parametrize(("path", "value", "gates"), [case[1:] for case in ALLOWED],
                         ids=[case[0] for case in ALLOWED])
def test_allowed(path, value, gates):
    if path.startswith("spec.selectors.") and path.count(".") > 2:
        # a label key may hold dots: set it by hand, not through the dotted path
        selector, key = path.split(".")[2], path.split(".", 3)[3]
        policy = copy.deepcopy(BASE)
        policy["spec"]["selectors"].setdefault(selector, {})[key] = value
    else:
        policy = with_value(path, value)
    assert causes(policy, feature_gates=gates) == []


LABELS = [
    # (id, selector, key, value, cause type, field, fragments)
    ("unquoted-bool", "namespaceSelector", "hpc-workloads", True, TYPE_INVALID,
     "spec.selectors.namespaceSelector[hpc-workloads]", ["must be strings", "true",
                                                         'quote it', '"true"']),
    ("unquoted-number", "virtualMachineInstanceSelector", "tier", 1, TYPE_INVALID,
     "spec.selectors.virtualMachineInstanceSelector[tier]", ["must be strings", '"1"']),
    ("null-value", "namespaceSelector", "a", None, TYPE_INVALID,
     "spec.selectors.namespaceSelector[a]", ["must be strings", "null"]),
    ("list-value", "namespaceSelector", "a", ["b"], TYPE_INVALID,
     "spec.selectors.namespaceSelector[a]", ["must be strings"]),
    ("value-leading-dash", "namespaceSelector", "a", "-b", INVALID,
     "spec.selectors.namespaceSelector[a]", ['"-b"', "beginning and ending"]),
    ("value-64", "virtualMachineInstanceSelector", "a", "b" * 64, INVALID,
     "spec.selectors.virtualMachineInstanceSelector[a]", ["63 characters or fewer"]),
    ("key-space", "namespaceSelector", "hpc workloads", "x", INVALID,
     "spec.selectors.namespaceSelector", ['"hpc workloads"', "label key"]),
    ("key-leading-dash", "virtualMachineInstanceSelector", "-workload-type", "db", INVALID,
     "spec.selectors.virtualMachineInstanceSelector", ['"-workload-type"']),
    ("key-empty-prefix", "namespaceSelector", "/a", "x", INVALID,
     "spec.selectors.namespaceSelector", ['"/a"', "prefix"]),
    ("key-two-slashes", "namespaceSelector", "a/b/c", "x", INVALID,
     "spec.selectors.namespaceSelector", ['"a/b/c"', "at most one '/'"]),
    ("key-uppercase-prefix", "namespaceSelector", "Example.com/a", "x", INVALID,
     "spec.selectors.namespaceSelector", ['"Example.com/a"', "lowercase"]),
    ("key-64", "namespaceSelector", "k" * 64, "x", INVALID,
     "spec.selectors.namespaceSelector", ["63 characters or fewer"]),
]


@pytest.mark.parametrize(("selector", "key", "value", "cause_type", "field", "fragments"),
                         [case[1:] for case in LABELS], ids=[case[0] for case in LABELS])
def test_selector_labels(selector, key, value, cause_type, field, fragments):
    policy = with_value(f"spec.selectors.{selector}", {key: value})
    found = causes(policy)
    assert [(kind, where) for kind, where, _ in found] == [(cause_type, field)]
    for fragment in fragments:
        assert fragment in found[0][2]


UNKNOWN_FIELDS = [
    ("spec.bandwithPerMigration", '"bandwithPerMigration"', 'did you mean "bandwidthPerMigration"'),
    ("spec.AllowPostCopy", '"AllowPostCopy"', 'did you mean "allowPostCopy"'),
    ("spec.maxDowntime", '"maxDowntime"', 'did you mean "maxDowntimeMs"'),
    ("spec.selectors.namespaceSelectors", '"namespaceSelectors"',
     'did you mean "namespaceSelector"'),
    ("spec.experimental.stalDetector", '"stalDetector"', 'did you mean "stallDetector"'),
    ("spec.priority", '"priority"', "the fields of spec are allowAutoConverge, allowPostCopy"),
    ("spec.selectors.podSelector", '"podSelector"',
     "namespaceSelector, virtualMachineInstanceSelector"),
    ("specs", '"specs"', "apiVersion, kind, metadata and spec"),
]


@pytest.mark.parametrize(("path", "quoted", "fragment"), UNKNOWN_FIELDS,
                         ids=[case[0] for case in UNKNOWN_FIELDS])
def test_unknown_field(path, quoted, fragment):
    found = causes(with_value(path, "1Gi"))
    assert [(kind, field) for kind, field, _ in found] == [(NOT_SUPPORTED, path)]
    assert "unknown field" in found[0][2]
    assert quoted in found[0][2]
    assert fragment in found[0][2]


def test_missing_spec():
    policy = copy.deepcopy(BASE)
    del policy["spec"]
    found = causes(policy)
    assert [(kind, field) for kind, field, _ in found] == [(REQUIRED, "spec")]
    assert "selectors" in found[0][2]


@pytest.mark.parametrize("spec", [[], "x", 5, True], ids=["list", "string", "int", "bool"])
def test_spec_not_an_object(spec):
    found = causes(with_value("spec", spec))
    assert [(kind, field) for kind, field, _ in found] == [(TYPE_INVALID, "spec")]
    assert shown(spec) in found[0][2]


@pytest.mark.parametrize("spec", [{}, {"selectors": None}, {"allowPostCopy": True}],
                         ids=["empty", "null", "other-fields"])
def test_missing_selectors(spec):
    found = causes(with_value("spec", spec))
    assert [(kind, field) for kind, field, _ in found] == [(REQUIRED, "spec.selectors")]
    assert "{}" in found[0][2]


@pytest.mark.parametrize(
    "selectors",
    [{}, {"namespaceSelector": {}},
     {"namespaceSelector": {}, "virtualMachineInstanceSelector": {}}],
    ids=["empty", "empty-namespace-selector", "both-empty"],
)
def test_empty_selectors_allowed_with_warning(selectors):
    findings = validate_policy(with_value("spec.selectors", selectors))
    assert findings.valid
    assert len(findings.warnings) == 1
    assert "every VMI" in findings.warnings[0]


def test_no_match_everything_warning_when_selectors_are_broken():
    findings = validate_policy(with_value("spec.selectors", {"namespaceSelector": []}))
    assert not findings.valid
    assert not any("every VMI" in warning for warning in findings.warnings)


BANDWIDTH_WARNINGS = [
    ("512Ki", ["below 1Mi"]),
    ("1", ["below 1Mi"]),
    (1048575, ["below 1Mi"]),
    ("1048575999m", ["below 1Mi"]),
    ("1Mi", []),
    (1048576, []),
    ("0", []),
    ("1e1.5", ["below 1Mi", "fractional exponent"]),
    ("1e7.0", ["fractional exponent"]),
]


@pytest.mark.parametrize(("bandwidth", "fragments"), BANDWIDTH_WARNINGS,
                         ids=[repr(b) for b, _ in BANDWIDTH_WARNINGS])
def test_bandwidth_warnings(bandwidth, fragments):
    findings = validate_policy(with_value("spec.bandwidthPerMigration", bandwidth))
    assert findings.valid
    assert len(findings.warnings) == len(fragments)
    for warning, fragment in zip(findings.warnings, fragments, strict=True):
        assert fragment in warning
        assert shown(bandwidth) in warning


WARNING_CASES = [
    with_value("spec.selectors", {}),
    with_value("spec.bandwidthPerMigration", "0." + "0" * 200 + "1"),
    with_value("spec.bandwidthPerMigration", "1." + "0" * 200 + "1e1.5"),
    with_value("metadata.name", "n" * 253),
]


@pytest.mark.parametrize("policy", WARNING_CASES, ids=["all", "long-small", "long-frac", "name"])
def test_warnings_under_120_characters(policy):
    def same(policy):
        return ["z" * 253]

    findings = validate_policy(policy, same_selectors=same)
    assert findings.warnings
    for warning in findings.warnings:
        assert len(warning) < 120


NAMES = [
    ("My-Policy", INVALID, '"My-Policy"'),
    ("a" * 254, INVALID, "254 characters"),
    ("-policy", INVALID, '"-policy"'),
    ("my_policy", INVALID, '"my_policy"'),
    ("my policy", INVALID, '"my policy"'),
    ("", INVALID, "must not be empty"),
    (5, TYPE_INVALID, "5"),
]


@pytest.mark.parametrize(("name", "cause_type", "fragment"), NAMES,
                         ids=[repr(n)[:20] for n, *_ in NAMES])
def test_metadata_name(name, cause_type, fragment):
    found = causes(with_value("metadata.name", name))
    assert [(kind, field) for kind, field, _ in found] == [(cause_type, "metadata.name")]
    assert fragment in found[0][2]


@pytest.mark.parametrize("metadata", [None, {}, {"namespace": "x"}],
                         ids=["none", "empty", "no-name"])
def test_metadata_name_required(metadata):
    policy = copy.deepcopy(BASE)
    if metadata is None:
        del policy["metadata"]
    else:
        policy["metadata"] = metadata
    found = causes(policy)
    assert [(kind, field) for kind, field, _ in found] == [(REQUIRED, "metadata.name")]


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("kind", "Policy", "MigrationPolicy"),
    ("apiVersion", "migrations.kubevirt.io/v1", "migrations.kubevirt.io/v1alpha1"),
], ids=["kind", "apiVersion"])
def test_type_meta(field, value, fragment):
    found = causes(with_value(field, value))
    assert [where for _, where, _ in found] == [field]
    assert f'"{value}"' in found[0][2]
    assert fragment in found[0][2]


GATED = [
    # (id, field path, value, gates that allow it, gates that do not)
    ("maxdowntime", "spec.maxDowntimeMs", 300, [{STALL}, {TUNING}, BOTH], [set()]),
    ("stalldetector", "spec.experimental.stallDetector", {"stallMargin": 4},
     [{STALL}, BOTH], [set(), {TUNING}]),
    ("downtimetuning", "spec.experimental.downtimeTuning", {"steps": 7},
     [{TUNING}, BOTH], [set(), {STALL}]),
]


@pytest.mark.parametrize(("path", "value", "allowing", "refusing"),
                         [case[1:] for case in GATED], ids=[case[0] for case in GATED])
def test_feature_gates(path, value, allowing, refusing):
    policy = with_value(path, value)
    for gates in allowing:
        assert causes(policy, feature_gates=frozenset(gates)) == []
    for gates in refusing:
        found = causes(policy, feature_gates=frozenset(gates))
        assert [(kind, field) for kind, field, _ in found] == [(FORBIDDEN, path)]
        assert "feature gate" in found[0][2]
        assert "--feature-gates" in found[0][2]


UPDATES = [
    # (id, field path, old value, new value, allowed without any gate)
    ("maxdowntime-unchanged", "spec.maxDowntimeMs", 300, 300, True),
    ("maxdowntime-changed", "spec.maxDowntimeMs", 300, 400, False),
    ("maxdowntime-added", "spec.maxDowntimeMs", None, 300, False),
    ("stalldetector-unchanged", "spec.experimental.stallDetector", {"stallMargin": 4},
     {"stallMargin": 4}, True),
    ("stalldetector-changed", "spec.experimental.stallDetector", {"stallMargin": 4},
     {"stallMargin": 5}, False),
    ("downtimetuning-unchanged", "spec.experimental.downtimeTuning", {"steps": 7},
     {"steps": 7}, True),
    ("downtimetuning-changed", "spec.experimental.downtimeTuning", {"steps": 7},
     {"steps": 8}, False),
]


@pytest.mark.parametrize(("path", "old_value", "new_value", "allowed"),
                         [case[1:] for case in UPDATES], ids=[case[0] for case in UPDATES])
def test_update_keeps_a_gated_value(path, old_value, new_value, allowed):
    old = with_value(path, old_value) if old_value is not None else copy.deepcopy(BASE)
    found = causes(with_value(path, new_value), old=old)
    if allowed:
        assert found == []
    else:
        assert [(kind, field) for kind, field, _ in found] == [(FORBIDDEN, path)]


def test_stall_detector_and_downtime_tuning_are_exclusive():
    policy = with_value("spec.experimental", {"stallDetector": {"stallMargin": 4},
                                              "downtimeTuning": {"steps": 7}})
    found = causes(policy, feature_gates=BOTH)
    assert [(kind, field) for kind, field, _ in found] == [(INVALID, "spec.experimental")]
    assert "stallDetector" in found[0][2]
    assert "downtimeTuning" in found[0][2]


def test_all_problems_at_once():
    policy = {
        "apiVersion": "migrations.kubevirt.io/v1alpha1",
        "kind": "MigrationPolicy",
        "metadata": {"name": "Five_Mistakes"},
        "spec": {
            "bandwidthPerMigration": "-1Gi",
            "completionTimeoutPerGiB": "23",
            "bandwithPerMigration": "1Gi",
            "selectors": {"namespaceSelector": {"hpc-workloads": True}},
        },
    }
    findings = validate_policy(policy)
    fields = [cause.field for cause in findings.causes]
    assert sorted(fields) == sorted([
        "metadata.name",
        "spec.bandwidthPerMigration",
        "spec.completionTimeoutPerGiB",
        "spec.bandwithPerMigration",
        "spec.selectors.namespaceSelector[hpc-workloads]",
    ])
    summary = findings.summary()
    for cause in findings.causes:
        assert f"{cause.field}: {cause.message}" in summary
    for quoted in ['"Five_Mistakes"', '"-1Gi"', '"23"', '"bandwithPerMigration"', "true"]:
        assert quoted in summary


def test_duplicate_selectors_warn_or_deny():
    def same(policy):
        selectors = BASE["spec"]["selectors"]
        assert policy.namespace_selector == selectors.get("namespaceSelector", {})
        assert policy.vmi_selector == selectors.get("virtualMachineInstanceSelector", {})
        return ["another-policy", policy.name]

    warned = validate_policy(BASE, same_selectors=same)
    assert warned.valid
    assert len(warned.warnings) == 1
    assert '"another-policy"' in warned.warnings[0]
    assert '"another-policy" takes precedence' in warned.warnings[0]

    denied = validate_policy(BASE, same_selectors=same, deny_duplicate_selectors=True)
    assert [(c.type.value, c.field) for c in denied.causes] == [(INVALID, "spec.selectors")]
    assert '"another-policy"' in denied.causes[0].message


def test_same_selectors_as_itself_is_not_a_duplicate():
    findings = validate_policy(BASE, same_selectors=lambda policy: [policy.name],
                               deny_duplicate_selectors=True)
    assert findings.valid
    assert findings.warnings == []


DUPLICATE_NAMES = [
    # (this policy's name, the other's name)
    ("aaa-copy", "my-awesome-policy"),
    ("zzz-copy", "my-awesome-policy"),
    ("my-policy", "another-policy-with-a-long-name-0123456789"),
    ("migration-policy-for-team-b-0123456789", "migration-policy-for-team-a-0123456789"),
    ("m" * 63, "a" * 63),
    ("my-policy", "z" * 253),
]


@pytest.mark.parametrize(("name", "other"), DUPLICATE_NAMES,
                         ids=[f"{len(n)}-{len(o)}" for n, o in DUPLICATE_NAMES])
def test_duplicate_warning_stays_whole_with_long_names(name, other):
    findings = validate_policy(with_value("metadata.name", name),
                               same_selectors=lambda _: [other])
    [warning] = findings.warnings
    assert len(warning) < 120
    assert warning.endswith(("takes precedence", "takes precedence (its name sorts first)"))
    winner = min(name, other)
    if len(name) + len(other) <= 40:
        assert f'"{winner}" takes precedence' in warning
    else:  # shortened in the middle: the ends that tell similar names apart stay
        assert f'{winner[-10:]}" takes precedence' in warning


# Every scalar field, with the gates that let it be set: a list or an object is a type error.
SCALAR_FIELDS = [
    ("spec.allowAutoConverge", NONE, TYPE_INVALID),
    ("spec.bandwidthPerMigration", NONE, TYPE_INVALID),
    ("spec.completionTimeoutPerGiB", NONE, TYPE_INVALID),
    ("spec.maxDowntimeMs", BOTH, TYPE_INVALID),
    ("spec.allowPostCopy", NONE, TYPE_INVALID),
    ("spec.allowWorkloadDisruption", NONE, TYPE_INVALID),
    ("spec.experimental.compression", NONE, NOT_SUPPORTED),
    ("spec.experimental.stallDetector.stallMargin", BOTH, TYPE_INVALID),
    ("spec.experimental.stallDetector.ewmaAlpha", BOTH, TYPE_INVALID),
    ("spec.experimental.stallDetector.stallProgressTimeout", BOTH, TYPE_INVALID),
    ("spec.experimental.stallDetector.switchoverTimeout", BOTH, TYPE_INVALID),
    ("spec.experimental.stallDetector.precopyPossibleFactor", BOTH, TYPE_INVALID),
    ("spec.experimental.stallDetector.patienceWindowDecayFactor", BOTH, TYPE_INVALID),
    ("spec.experimental.stallDetector.searchLocalMinima", BOTH, TYPE_INVALID),
    ("spec.experimental.stallDetector.completionTimeoutFactor", BOTH, TYPE_INVALID),
    ("spec.experimental.downtimeTuning.initialMs", BOTH, TYPE_INVALID),
    ("spec.experimental.downtimeTuning.steps", BOTH, TYPE_INVALID),
    ("spec.experimental.downtimeTuning.startAfterIteration", BOTH, TYPE_INVALID),
    ("spec.experimental.downtimeTuning.cooldownSeconds", BOTH, TYPE_INVALID),
]


@pytest.mark.parametrize("value", [[], [1], {}, {"a": 1}], ids=["[]", "[1]", "{}", "{a}"])
@pytest.mark.parametrize(("path", "gates", "cause_type"), SCALAR_FIELDS,
                         ids=[case[0].removeprefix("spec.") for case in SCALAR_FIELDS])
def test_container_where_a_scalar_is(path, gates, cause_type, value):
    found = causes(with_value(path, value), feature_gates=gates)
    assert [(kind, field) for kind, field, _ in found] == [(cause_type, path)]
    assert shown(value) in found[0][2]
