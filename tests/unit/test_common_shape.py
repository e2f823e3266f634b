"""The one-pass recognition of a common valid policy agrees with the full schema walk.

`check_policy` answers a policy of the common shape without the schema walk; these tests
hold it to `schema_findings` on policies drawn near that shape, valid and not: when the one
pass recognises a policy, the full walk finds it valid with the same warnings, and
`check_policy` gives the same parsed Policy and looks for equal selectors either way.
"""

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.policy.common_shape import common_shape
from app.policy.model import policy_from_object
from app.policy.validation import check_policy, schema_findings
from tests.support.reviews import sample_review

REFERENCE = sample_review("policy-valid-example.json")["request"]["object"]

NAMES = st.sampled_from(["db-policy", "a", "my.policy-1", "Upper", "-dash", "x" * 253,
                         "x" * 254, "", "has space", "a..b"]) | st.text(max_size=12)
LABEL_KEYS = st.sampled_from(["app", "workload-type", "hpc-workloads", "x.y_z",
                              "example.com/app", "-bad", "bad-", "a" * 63, "a" * 64, "",
                              "has space", "kubernetes.io/metadata.name"])
LABEL_VALUES = st.sampled_from(["", "db", "True", "v1.2_3-x", "a" * 63, "a" * 64, "-x",
                                "x-", "has space", "ünï"])
ODD_VALUES = st.text(max_size=8) | st.sampled_from([True, False, 0, 2, None, {}, []])
SELECTOR = st.dictionaries(LABEL_KEYS | LABEL_KEYS | st.text(max_size=8),
                           LABEL_VALUES | LABEL_VALUES | ODD_VALUES, max_size=4)
BANDWIDTHS = st.sampled_from(["217Ki", "1Mi", "0", "1048575", "64Mi", "1Gi", "-1Gi",
                              "1.5Gi", "1e3", "1 GB", "1mi", "", "0.5Mi", "999999999999Ei"]) \
    | st.integers(-(2**64), 2**64) | st.booleans() | st.none() | st.floats(allow_nan=False)
TIMEOUTS = st.integers(-5, 2**64) | st.sampled_from(["23", 1.5, True, None, 2**63 - 1, 2**63])
BOOLEANS = st.sampled_from([True, False, None, "true", 0, 1])
ANY_JSON = st.sampled_from([None, True, 1, "x", {}, [], {"a": 1}])


@st.composite
def near_common_policies(draw: st.DrawFn) -> dict[str, Any]:
    """The reference policy with some of its parts drawn anew, right or wrong."""
    obj = copy.deepcopy(REFERENCE)
    metadata, spec = obj["metadata"], obj["spec"]
    if draw(st.integers(0, 4)) == 0:
        metadata["name"] = draw(NAMES | ANY_JSON)
    if draw(st.integers(0, 3)) == 0:
        metadata["labels"] = draw(st.dictionaries(st.text(max_size=6),
                                                  LABEL_VALUES | ODD_VALUES, max_size=3)
                                  | ANY_JSON)
    if draw(st.integers(0, 3)) == 0:
        metadata["annotations"] = draw(st.dictionaries(st.text(max_size=6),
                                                       LABEL_VALUES | ODD_VALUES, max_size=3)
                                       | ANY_JSON)
    if draw(st.integers(0, 5)) == 0:
        obj["metadata"] = draw(ANY_JSON)
    for field, values in (("kind", st.sampled_from(["MigrationPolicy", "Policy", None, 1])),
                          ("apiVersion", st.sampled_from(
                              ["migrations.kubevirt.io/v1alpha1", "migrations.kubevirt.io/v1",
                               None, "v1"])),
                          ("status", ANY_JSON)):
        if draw(st.integers(0, 5)) == 0:
            obj[field] = draw(values)
    if draw(st.integers(0, 6)) == 0:
        obj[draw(st.sampled_from(["extra", "Spec"]))] = 1
    for field, values in (("bandwidthPerMigration", BANDWIDTHS),
                          ("completionTimeoutPerGiB", TIMEOUTS),
                          ("allowAutoConverge", BOOLEANS), ("allowPostCopy", BOOLEANS),
                          ("allowWorkloadDisruption", BOOLEANS)):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            spec.pop(field, None)
        elif choice == 1:
            spec[field] = draw(values)
    if draw(st.integers(0, 5)) == 0:
        spec[draw(st.sampled_from(["maxDowntimeMs", "experimental", "bandwithPerMigration"]))] \
            = draw(st.sampled_from([300, {}, {"compression": "zstd"}, None]))
    choice = draw(st.integers(0, 6))
    if choice == 0:
        spec["selectors"] = draw(ANY_JSON)
    elif choice in (1, 2):
        spec["selectors"] = {
            key: draw(SELECTOR | st.none() | st.just({}))
            for key in draw(st.lists(st.sampled_from(
                ["namespaceSelector", "virtualMachineInstanceSelector", "vmiSelector"]),
                unique=True, max_size=3))}
    if draw(st.integers(0, 12)) == 0:
        obj["spec"] = draw(ANY_JSON)
    return obj


def duplicates(policy: Any) -> list[str]:
    """Another policy with equal selectors exists when the name has a digit."""
    return ["other-policy"] if any(char.isdigit() for char in policy.name) else []


@settings(max_examples=1500, deadline=None)
@given(obj=near_common_policies(), deny=st.booleans())
def test_a_recognised_policy_is_valid_with_the_same_warnings(obj: Any, deny: bool) -> None:
    full = schema_findings(obj, frozenset())
    checked = check_policy(obj, feature_gates=frozenset())
    if common_shape(obj) is not None:
        assert full.causes == []
    assert checked.findings.causes == full.causes
    assert checked.findings.warnings == full.warnings
    assert checked.findings.valid == full.valid
    assert checked.policy == (policy_from_object(obj) if full.valid else None)
    # equal selectors are looked for after either path, and only for a valid policy
    with_others = check_policy(obj, feature_gates=frozenset(), same_selectors=duplicates,
                               deny_duplicate_selectors=deny).findings
    named = full.valid and duplicates(policy_from_object(obj)) != []
    extra = with_others.causes[len(full.causes):] if deny else \
        with_others.warnings[len(full.warnings):]
    assert len(extra) == (1 if named else 0)
    assert all("other-policy" in (item if isinstance(item, str) else item.message)
               for item in extra)


def test_the_reference_policy_takes_the_one_pass() -> None:
    """Else the one pass would never be used and the tests above would pass for nothing."""
    assert common_shape(REFERENCE) is not None
    bare = copy.deepcopy(REFERENCE)
    bare["spec"] = {"selectors": {}}
    shape = common_shape(bare)
    assert shape is not None and shape.empty_selectors and shape.low_bandwidth is None
    low = common_shape(REFERENCE)
    assert low is not None and low.low_bandwidth == "217Ki" and not low.empty_selectors


def test_what_the_one_pass_leaves_to_the_full_check() -> None:
    for change in ({"maxDowntimeMs": 300}, {"experimental": {}},
                   {"bandwidthPerMigration": "1.5Gi"}, {"bandwidthPerMigration": "-1Gi"},
                   {"completionTimeoutPerGiB": "23"}):
        obj = copy.deepcopy(REFERENCE)
        obj["spec"].update(change)
        assert common_shape(obj) is None, change
    prefixed = copy.deepcopy(REFERENCE)
    prefixed["spec"]["selectors"]["namespaceSelector"] = {"example.com/tier": "gold"}
    assert common_shape(prefixed) is None
    assert check_policy(prefixed, feature_gates=frozenset()).findings.valid
