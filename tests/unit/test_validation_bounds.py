"""Validation stays bounded whatever comes in (contract §1, issue 10): capped causes, short
quotes, answers of at most 256 KiB, any depth; and wrong types and numbers out of range are
denials naming the field. The answer is built by the real protocol code (app.admission.review)."""

import copy
import json
from typing import Any

import orjson
import pytest

from app.admission.review import encode_review, invalid
from app.k8s.json_values import OutOfRangeNumber
from app.policy.findings import (
    CAUSES_BUDGET,
    MAX_CAUSES,
    MAX_WARNING_LENGTH,
    MAX_WARNINGS,
    SUMMARY_BUDGET,
    CauseType,
    Findings,
    describe,
    quote,
)
from app.policy.schema import json_equal
from app.policy.validation import validate_policy

MAX_ANSWER = 256 * 1024
STALL = frozenset({"MigrationStallDetection"})

BASE = {
    "apiVersion": "migrations.kubevirt.io/v1alpha1",
    "kind": "MigrationPolicy",
    "metadata": {"name": "my-policy"},
    "spec": {"selectors": {"namespaceSelector": {"hpc-workloads": "True"}}},
}


def policy_with(**spec: Any) -> dict[str, Any]:
    policy = copy.deepcopy(BASE)
    policy["spec"].update(spec)
    return policy


def answer(findings: Findings) -> bytes:
    """The AdmissionReview the webhook sends for these findings."""
    decision = invalid(findings=findings, group="migrations.kubevirt.io",
                       kind="MigrationPolicy", name="my-policy")
    return encode_review("admission.k8s.io/v1", "00000000-0000-4000-8000-000000000009", decision)


def deep(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """`{"x": {"x": ... leaf}}`, `depth` objects deep, built without recursion."""
    node: Any = leaf
    for _ in range(depth):
        node = {"x": node}
    return node


def assert_bounded(findings: Findings) -> dict[str, Any]:
    assert not findings.valid
    assert len(findings.causes) <= MAX_CAUSES + 1
    body = answer(findings)
    assert len(body) <= MAX_ANSWER
    status = orjson.loads(body)["response"]["status"]
    assert len(orjson.dumps(status["message"])) <= SUMMARY_BUDGET
    return status


# Caps on the number of causes: the last one says how many more there are.

def test_many_invalid_selector_keys_are_capped_and_counted():
    keys = {f"bad key {index}": "x" for index in range(30_000)}
    findings = validate_policy(policy_with(selectors={"namespaceSelector": keys}))
    causes = findings.causes
    assert len(causes) == MAX_CAUSES + 1
    assert all(cause.field == "spec.selectors.namespaceSelector" for cause in causes)
    assert '"bad key 0"' in causes[0].message
    last = causes[-1]
    assert last.type is CauseType.INVALID
    assert last.message.startswith(f"{30_000 - MAX_CAUSES} more problems not listed")
    assert "apply again" in last.message
    status = assert_bounded(findings)
    assert status["details"]["causes"][-1]["message"] == last.message


def test_the_count_includes_key_and_value_problems_of_every_entry():
    # each entry has two problems: a bad key, and a value that is not a string
    entries = {f"-bad-{index}": index for index in range(500)}
    findings = validate_policy(policy_with(selectors={"namespaceSelector": entries}))
    assert findings.causes[-1].message.startswith(f"{2 * 500 - MAX_CAUSES} more problems")
    assert findings.causes[-1].field == "spec.selectors.namespaceSelector"


def test_problems_left_out_in_two_places_are_reported_on_their_common_parent():
    bad = {f"bad key {index}": "x" for index in range(MAX_CAUSES + 1)}
    policy = policy_with(selectors={"namespaceSelector": bad})
    findings = validate_policy(policy)
    assert findings.causes[-1].field == "spec.selectors.namespaceSelector"
    assert findings.causes[-1].message.startswith("1 more problem not listed")
    policy["spec"]["selectors"]["virtualMachineInstanceSelector"] = {"a b": "x", "c d": "y"}
    findings = validate_policy(policy)
    assert findings.causes[-1].field == "spec.selectors"
    assert findings.causes[-1].message.startswith("3 more problems")


def test_many_unknown_fields_in_spec():
    fields = {f"unknown{index}": 1 for index in range(50_000)}
    findings = validate_policy(policy_with(**fields))
    assert [cause.field for cause in findings.causes[:2]] == ["spec.unknown0", "spec.unknown1"]
    assert findings.causes[-1].field == "spec"
    assert findings.causes[-1].message.startswith(f"{50_000 - MAX_CAUSES} more problems")
    assert_bounded(findings)


def test_many_unknown_top_level_fields_list_the_first_in_sorted_order():
    policy = copy.deepcopy(BASE)
    names = [f"field{index:06d}" for index in range(20_000)]
    policy.update({name: 1 for name in reversed(names)})
    findings = validate_policy(policy)
    assert [cause.field for cause in findings.causes[:-1]] == names[:MAX_CAUSES]
    last = findings.causes[-1]
    assert last.field == ""
    assert last.line() == last.message  # no empty "<field>: " in status.message
    assert last.message.startswith(f"{20_000 - MAX_CAUSES} more problems")
    assert_bounded(findings)


def test_one_problem_is_not_capped():
    findings = validate_policy(policy_with(bandwidthPerMigration="-1Gi"))
    assert len(findings.causes) == 1
    assert "more problems" not in findings.summary()


# Size: long values are quoted by a prefix and their length, the answer stays small.

def test_a_4m_character_unknown_field():
    name = "x" * 4_000_000
    findings = validate_policy(policy_with(**{name: 1}))
    [cause] = findings.causes
    assert cause.type is CauseType.NOT_SUPPORTED
    assert cause.field.startswith("spec.xxxx")
    assert cause.field.endswith("... (4000000 characters)")
    assert "(4000000 characters)" in cause.message
    assert "did you mean" not in cause.message
    assert "the fields of spec are" in cause.message
    assert len(answer(findings)) < 4096


def test_a_long_name_close_to_a_field_gets_no_suggestion_past_the_limit():
    findings = validate_policy(policy_with(**{"bandwidthPerMigration" * 4: "1Gi"}))
    assert "did you mean" not in findings.causes[0].message
    findings = validate_policy(policy_with(bandwithPerMigration="1Gi"))
    assert 'did you mean "bandwidthPerMigration"' in findings.causes[0].message


@pytest.mark.parametrize("value", ["a" * 4_000_000, "1" * 4_000_000 + "ki", " " * 100_000 + "1"],
                         ids=["letters", "digits-and-suffix", "spaces"])
def test_a_long_value_is_quoted_by_its_start_and_length(value):
    findings = validate_policy(policy_with(bandwidthPerMigration=value))
    [cause] = findings.causes
    assert f'..." ({len(value)} characters)' in cause.message
    assert len(cause.message) < 400


def test_long_label_values_keys_and_names():
    policy = policy_with(selectors={"namespaceSelector": {"k" * 100_000: "v" * 100_000}})
    policy["metadata"]["name"] = "N" * 100_000
    findings = validate_policy(policy)
    assert [cause.field for cause in findings.causes] == [
        "metadata.name",
        "spec.selectors.namespaceSelector",
        f"spec.selectors.namespaceSelector[{'k' * 76}... (100000 characters)]",
    ]
    for cause in findings.causes:
        assert "(100000 characters)" in cause.message
        assert len(cause.message) < 600


@pytest.mark.parametrize("char", ["\u0001", "\U0001f600", '"', "\\", "\u00e9"],
                         ids=["control", "emoji", "quote", "backslash", "accent"])
def test_the_answer_stays_under_256_kib_whatever_the_characters(char):
    # the largest causes there are: long keys of characters that JSON escapes or UTF-8
    # spreads over several bytes, in the field path, the message and the summary at once
    entries = {char * 300 + str(index): char * 300 for index in range(5_000)}
    findings = validate_policy(policy_with(selectors={"namespaceSelector": entries}))
    status = assert_bounded(findings)
    sizes = sum(len(orjson.dumps(cause.field)) + len(orjson.dumps(cause.message))
                for cause in findings.causes[:-1])
    assert sizes <= CAUSES_BUDGET
    assert status["details"]["causes"][-1]["message"].split()[1:3] == ["more", "problems"]


def test_the_summary_is_cut_at_its_budget_and_says_how_many_are_left():
    findings = Findings()
    for index in range(MAX_CAUSES):
        findings.add(CauseType.INVALID, f"spec.field{index}", "\U0001f600" * 1900)
    summary = findings.summary()
    assert len(orjson.dumps(summary)) <= SUMMARY_BUDGET
    assert summary.endswith("more problems")
    assert len(findings.causes) < MAX_CAUSES  # the byte budget left some out
    assert findings.causes[-1].message.endswith("apply again to see the rest")


def test_a_lone_surrogate_does_not_break_the_answer():
    # json (the fallback parser for numbers orjson refuses) lets "\ud800" through
    policy = json.loads('{"metadata": {"name": "a\\ud800"}, "spec": {"selectors": '
                        '{"namespaceSelector": {"k\\ud800": "v\\udfff"}}, "x\\ud800": 1}}')
    findings = validate_policy(policy)
    assert len(findings.causes) == 4
    assert_bounded(findings)


def test_warnings_are_capped():
    findings = Findings()
    for index in range(MAX_WARNINGS + 5):
        findings.warn(f"warning {index} " + "w" * 500)
    assert len(findings.warnings) == MAX_WARNINGS + 1
    assert findings.warnings[-1] == "5 more warnings not shown"
    assert all(len(warning) <= MAX_WARNING_LENGTH for warning in findings.warnings)


@pytest.mark.parametrize("bandwidth", ["0." + "0" * 300 + "1", "1." + "0" * 300 + "1e1.5"],
                         ids=["below-1Mi", "fractional-exponent"])
def test_warnings_about_a_long_bandwidth_still_say_what_is_wrong(bandwidth):
    findings = validate_policy(policy_with(bandwidthPerMigration=bandwidth))
    assert findings.valid
    for warning in findings.warnings:
        assert len(warning) <= MAX_WARNING_LENGTH
        assert f"({len(bandwidth)} characters)" in warning
        assert warning.endswith(("raises it to 1Mi", "Go parser refuses"))


# Depth: nesting is never a RecursionError.

@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize(("where", "field", "fragment"), [
    ("stallDetector", "spec.experimental.stallDetector.x", "unknown field"),
    ("stallMargin", "spec.experimental.stallDetector.stallMargin", "got an object"),
    ("experimental", "spec.experimental.x", "unknown field"),
])
def test_deep_nesting_on_update_is_a_denial_naming_the_field(depth, where, field, fragment):
    def policy() -> dict[str, Any]:
        nested = deep(depth)
        experimental = {
            "stallDetector": {"stallDetector": nested},
            "stallMargin": {"stallDetector": {"stallMargin": nested}},
            "experimental": nested,
        }[where]
        return policy_with(experimental=experimental)

    findings = validate_policy(policy(), old=policy())
    assert [cause.field for cause in findings.causes] == [field]
    assert fragment in findings.causes[0].message
    assert_bounded(findings)


def test_a_deep_gated_value_changed_on_update_is_refused():
    def policy(leaf: int) -> dict[str, Any]:
        return policy_with(experimental={"stallDetector": {"stallMargin": 4,
                                                           "x": deep(5000, leaf)}})

    changed = [(cause.type, cause.field)
               for cause in validate_policy(policy(1), old=policy(2)).causes]
    assert (CauseType.FORBIDDEN, "spec.experimental.stallDetector") in changed
    unchanged = [(cause.type, cause.field)
                 for cause in validate_policy(policy(1), old=policy(1)).causes]
    assert (CauseType.FORBIDDEN, "spec.experimental.stallDetector") not in unchanged


@pytest.mark.parametrize(("first", "second", "equal"), [
    (deep(50_000, [1, {"a": None}]), deep(50_000, [1, {"a": None}]), True),
    (deep(50_000, [1, {"a": None}]), deep(50_000, [1, {"a": 0}]), False),
    ({"a": [1, 2]}, {"a": [1, 2, 3]}, False),
    ({"a": 1}, {"b": 1}, False),
    ([{}], [[]], False),
    (1, 1.0, True),
    ("1", 1, False),
])
def test_json_equal_agrees_with_python_at_any_depth(first, second, equal):
    assert json_equal(first, second) is equal
    assert json_equal(second, first) is equal


# Wrong types anywhere in metadata and status: denials naming the field.

TYPE_CASES = [
    # (id, where, value, field, fragment)
    ("metadata-list", "metadata", [], "metadata", "got a list [...]"),
    ("metadata-string", "metadata", "my-policy", "metadata", 'got the string "my-policy"'),
    ("metadata-number", "metadata", 5, "metadata", "got the number 5"),
    ("labels-true", "metadata.labels", True, "metadata.labels",
     "must be a map of label keys to string values, got the boolean true"),
    ("labels-list", "metadata.labels", ["a"], "metadata.labels", "got a list [...]"),
    ("label-value-bool", "metadata.labels", {"team": True}, "metadata.labels[team]",
     'label values must be strings, got the boolean true: quote it in YAML (team: "true")'),
    ("label-value-number", "metadata.labels", {"tier": 1}, "metadata.labels[tier]",
     "got the number 1"),
    ("label-value-object", "metadata.labels", {"tier": {}}, "metadata.labels[tier]",
     "got an object {...}"),
    ("annotations-string", "metadata.annotations", "x", "metadata.annotations",
     "must be a map of annotation keys to string values"),
    ("annotation-value-number", "metadata.annotations", {"note": 3},
     "metadata.annotations[note]", "annotation values must be strings, got the number 3"),
    ("name-number", "metadata.name", 5, "metadata.name", "must be a string, got 5"),
    ("name-list", "metadata.name", ["a"], "metadata.name", "must be a string, got a list"),
    ("name-object", "metadata.name", {}, "metadata.name", "must be a string, got an object"),
    ("status-string", "status", "x", "status", 'must be an object of fields, got the string "x"'),
    ("status-list", "status", [], "status", "got a list [...]"),
    ("status-number", "status", 1, "status", "got the number 1"),
]


def set_at(policy: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    *parents, last = where.split(".")
    node = policy
    for name in parents:
        node = node[name]
    node[last] = value
    return policy


@pytest.mark.parametrize(("where", "value", "field", "fragment"),
                         [case[1:] for case in TYPE_CASES], ids=[case[0] for case in TYPE_CASES])
def test_wrong_types_in_metadata_and_status(where, value, field, fragment):
    findings = validate_policy(set_at(copy.deepcopy(BASE), where, value))
    assert [(cause.type, cause.field) for cause in findings.causes] == [
        (CauseType.TYPE_INVALID, field)]
    assert fragment in findings.causes[0].message


def test_well_formed_metadata_and_status_are_allowed():
    policy = copy.deepcopy(BASE)
    policy["metadata"].update(labels={"team": "a"}, annotations={"note": "anything at all"})
    policy["status"] = {}
    assert validate_policy(policy).valid


@pytest.mark.parametrize("value", [[], "policy", 5, None, True],
                         ids=["list", "string", "number", "null", "bool"])
def test_a_policy_that_is_not_an_object(value):
    findings = validate_policy(value)
    [cause] = findings.causes
    assert (cause.type, cause.field) == (CauseType.TYPE_INVALID, "")
    assert findings.summary() == cause.message
    assert cause.message.startswith("a MigrationPolicy must be a JSON object, got ")


# Numbers out of range: a denial by field, quoting the number as written.

HUGE = 1.2345678901234568e29  # what orjson makes of 123456789012345678901234567890

RANGE_CASES = [
    # (id, field, value, gates, cause type, fragments)
    ("timeout-1e400", "completionTimeoutPerGiB", OutOfRangeNumber("1e400"), frozenset(),
     CauseType.INVALID, ["1e400 is out of range: use a whole number of seconds per GiB"]),
    ("timeout-minus-1e400", "completionTimeoutPerGiB", OutOfRangeNumber("-1e400"), frozenset(),
     CauseType.INVALID, ["-1e400 is negative"]),
    ("timeout-huge-integer", "completionTimeoutPerGiB", HUGE, frozenset(), CauseType.INVALID,
     ["is out of range: use a whole number"]),
    ("timeout-minus-huge-integer", "completionTimeoutPerGiB", -HUGE, frozenset(),
     CauseType.INVALID, ["is negative"]),
    ("maxdowntime-1e400", "maxDowntimeMs", OutOfRangeNumber("1E+999"), STALL,
     CauseType.INVALID, ["1E+999 is out of range: use a whole number of milliseconds"]),
    ("bandwidth-1e400", "bandwidthPerMigration", OutOfRangeNumber("1e400"), frozenset(),
     CauseType.INVALID, ['1e400 is too large for a number here (at most '
                         '9223372036854775807): write it as a string ("1e400")']),
    ("bandwidth-huge-integer", "bandwidthPerMigration", HUGE, frozenset(), CauseType.INVALID,
     ["is too large for a number here (at most 9223372036854775807): write it as a "
      "string"]),
    ("autoconverge-1e400", "allowAutoConverge", OutOfRangeNumber("1e400"), frozenset(),
     CauseType.TYPE_INVALID, ["must be true or false, got the number 1e400"]),
    ("long-literal", "completionTimeoutPerGiB", OutOfRangeNumber("9" * 5000 + "e9"),
     frozenset(), CauseType.INVALID, ["(5002 characters) is out of range"]),
]


@pytest.mark.parametrize(("field", "value", "gates", "cause_type", "fragments"),
                         [case[1:] for case in RANGE_CASES], ids=[case[0] for case in RANGE_CASES])
def test_numbers_out_of_range(field, value, gates, cause_type, fragments):
    findings = validate_policy(policy_with(**{field: value}), feature_gates=gates)
    assert [(cause.type, cause.field) for cause in findings.causes] == [
        (cause_type, f"spec.{field}")]
    for fragment in fragments:
        assert fragment in findings.causes[0].message
    assert "null" not in findings.causes[0].message
    assert_bounded(findings)


def test_out_of_range_number_as_a_label_value_is_quoted_as_written():
    policy = policy_with(selectors={"namespaceSelector": {"tier": OutOfRangeNumber("1e400")}})
    [cause] = validate_policy(policy).causes
    assert cause.message == ('label values must be strings, got the number 1e400: '
                             'quote it in YAML (tier: "1e400")')


@pytest.mark.parametrize(("value", "shown"), [
    (float("inf"), ".inf"), (float("-inf"), "-.inf"), (float("nan"), ".nan"),
    (OutOfRangeNumber("1e400"), "1e400"), (OutOfRangeNumber("-1e400"), "-1e400"),
    (2**64, str(2**64)), (10**100, "1" + "0" * 75 + "... (101 characters)"),
    ("a" * 100, '"' + "a" * 75 + '..." (100 characters)'), ("abc", '"abc"'),
    (None, "null"), (True, "true"), ({}, "an object {...}"), ([], "a list [...]"),
])
def test_quote_never_prints_null_for_a_number(value, shown):
    assert quote(value) == shown


def test_describe_an_out_of_range_number():
    assert describe(OutOfRangeNumber("1e400")) == "the number 1e400"
    assert describe(float("nan")) == "the number .nan"
