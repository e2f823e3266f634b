"""The MigrationPolicy schema and `check_policy`: add a new MigrationPolicy field here.

The rules are KubeVirt's (types in kubevirt.io/api/migrations/v1alpha1 and core/v1,
admitter migrationpolicy-admitter.go) plus the API schema's; the words are ours.
"""

import heapq
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from app.k8s.labels import (
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    dns1123_subdomain_problems,
    match_dns1123_subdomain,
)
from app.k8s.quantity import MEBI, QuantityError, parse_quantity, whole_quantity
from app.k8s.resources import MIGRATION_POLICIES
from app.policy.common_shape import Shape, common_shape
from app.policy.feature_gates import MIGRATION_DOWNTIME_TUNING, MIGRATION_STALL_DETECTION
from app.policy.findings import (
    MAX_CAUSES,
    MAX_WARNING_LENGTH,
    CauseType,
    Findings,
    describe,
    field_name,
    quote,
)
from app.policy.model import Policy, policy_from_object, selectors_from_object
from app.policy.schema import (
    INT64_MAX,
    TOP_LEVEL_FIELDS,
    Boolean,
    Context,
    Enum,
    Integer,
    LabelMap,
    Object,
    Quantity,
    StringMap,
)

INT32_MAX = 2**31 - 1

SELECTORS = Object({
    "namespaceSelector": LabelMap(),
    "virtualMachineInstanceSelector": LabelMap(),
})

STALL_DETECTOR = Object(
    {
        "stallMargin": Integer(0, 100, "percent", 4),
        "ewmaAlpha": Quantity(Decimal(0), "\"0.4\"", maximum=Decimal(1),
                              exclusive_minimum=True, max_decimal_places=3),
        "stallProgressTimeout": Integer(0, INT64_MAX, "seconds", 40),
        "switchoverTimeout": Integer(0, INT64_MAX, "seconds", 60),
        "precopyPossibleFactor": Quantity(Decimal(1), "\"1.5\"", max_decimal_places=3),
        "patienceWindowDecayFactor": Quantity(Decimal(0), "\"0.5\"", maximum=Decimal(1),
                                              max_decimal_places=3),
        "searchLocalMinima": Boolean(),
        "completionTimeoutFactor": Quantity(Decimal(1), "\"2\"", max_decimal_places=3),
    },
    gates=(MIGRATION_STALL_DETECTION,),
)

DOWNTIME_TUNING = Object(
    {
        "initialMs": Integer(1, INT64_MAX, "milliseconds", 150),
        "steps": Integer(1, INT32_MAX, "steps", 7),
        "startAfterIteration": Integer(1, INT64_MAX, "iterations", 3),
        "cooldownSeconds": Integer(1, INT32_MAX, "seconds", 10),
    },
    gates=(MIGRATION_DOWNTIME_TUNING,),
)

EXPERIMENTAL = Object({
    "stallDetector": STALL_DETECTOR,
    "downtimeTuning": DOWNTIME_TUNING,
    "compression": Enum(("none", "zstd")),
})

SPEC = Object(
    {
        "selectors": SELECTORS,
        "allowAutoConverge": Boolean(),
        "bandwidthPerMigration": Quantity(Decimal(0), "64Mi", zero_means="unlimited"),
        "completionTimeoutPerGiB": Integer(0, INT64_MAX, "seconds per GiB", 150),
        "maxDowntimeMs": Integer(1, 2_000_000, "milliseconds", 900,
                                 gates=(MIGRATION_STALL_DETECTION, MIGRATION_DOWNTIME_TUNING)),
        "allowPostCopy": Boolean(),
        "allowWorkloadDisruption": Boolean(),
        "experimental": EXPERIMENTAL,
    },
    required=frozenset({"selectors"}),
)

_METADATA_MAPS = (("labels", StringMap("label")), ("annotations", StringMap("annotation")))

_EMPTY_SELECTORS = "spec.selectors is empty, so this policy applies to every VMI in every namespace"

SameSelectors = Callable[[Policy], list[str]]
"""Given a policy, the names of the other policies whose selectors equal its own."""


class CheckedPolicy(NamedTuple):
    """A MigrationPolicy object checked once: what is wrong with it, and what it defines."""

    findings: Findings
    policy: Policy | None
    """None if invalid; else the policy as stamping needs it, or with `parse=False` its
    name and selectors alone (what matching needs, made once for every check of them)."""


def check_policy(
    obj: Any,
    *,
    feature_gates: frozenset[str],
    old: Mapping[str, Any] | None = None,
    same_selectors: SameSelectors | None = None,
    deny_duplicate_selectors: bool = False,
    parse: bool = True,
) -> CheckedPolicy:
    """Every problem with `obj` at once, the warnings for what is legal but suspect, and,
    if it is valid and `parse`, its Policy.

    The one way a MigrationPolicy is checked: by the webhook, both cluster states, `lint`
    and `audit`. `obj` may be any JSON value: what is not an object is refused as a whole.
    The webhook passes `parse=False`: it needs the findings and the selectors (for the
    impact warning), and building the settings would cost every review time for nothing.
    A policy of the common valid shape (`app.policy.common_shape`) is recognised in one
    pass; any other is walked field by field (`schema_findings`). Either way, a valid
    policy is then compared with the others' selectors.
    """
    shape = common_shape(obj)
    findings = schema_findings(obj, feature_gates, old) if shape is None else _warnings(shape)
    if not findings.valid:
        return CheckedPolicy(findings, None)
    policy = policy_from_object(obj) if parse else selectors_from_object(obj)
    if same_selectors is not None:
        _check_duplicates(policy, same_selectors, deny_duplicate_selectors, findings)
    return CheckedPolicy(findings, policy if findings.valid else None)


def schema_findings(
    obj: Any, feature_gates: frozenset[str], old: Mapping[str, Any] | None = None
) -> Findings:
    """The problems and warnings of `obj` by the whole schema walk, whatever its shape, but
    for equal selectors: what `check_policy` falls back to, and what the common shape is
    tested against."""
    findings = Findings()
    if not isinstance(obj, dict):
        findings.add(CauseType.TYPE_INVALID, "",
                     f"a {MIGRATION_POLICIES.kind} must be a JSON object, got {describe(obj)}")
        return findings
    _check_type_meta(obj, findings)
    _check_metadata(obj.get("metadata"), findings)
    if not TOP_LEVEL_FIELDS.issuperset(obj):
        _unknown_top_level_fields(obj, findings)
    status = obj.get("status")
    if status is not None and not isinstance(status, dict):
        findings.add(CauseType.TYPE_INVALID, "status",
                     f"must be an object of fields, got {describe(status)}")
    spec = obj.get("spec")
    if spec is None:
        findings.add(CauseType.REQUIRED, "spec",
                     "required field is missing: add spec with selectors ({} matches every VMI)")
        return findings
    old_spec = old.get("spec") if isinstance(old, dict) else None
    SPEC.check(spec, old_spec, "spec", Context(feature_gates, findings))
    if isinstance(spec, dict):
        _check_exclusive_experimental(spec, findings)
        _warn(spec, findings)
    return findings


def _warnings(shape: Shape) -> Findings:
    """The findings of a policy of the common valid shape: its warnings, as `_warn` gives
    them."""
    findings = Findings()
    if shape.empty_selectors:
        findings.warn(_EMPTY_SELECTORS)
    if shape.low_bandwidth is not None:
        findings.warn(_below_one_mebi(shape.low_bandwidth))
    return findings


def validate_policy(
    policy: Any,
    *,
    old: Mapping[str, Any] | None = None,
    feature_gates: frozenset[str] = frozenset(),
    same_selectors: SameSelectors | None = None,
    deny_duplicate_selectors: bool = False,
) -> Findings:
    """The findings of `check_policy` alone (no Policy is built)."""
    return check_policy(policy, old=old, feature_gates=feature_gates,
                        same_selectors=same_selectors,
                        deny_duplicate_selectors=deny_duplicate_selectors, parse=False).findings


def _check_type_meta(policy: Mapping[str, Any], findings: Findings) -> None:
    kind = policy.get("kind")
    if kind is not None and kind != MIGRATION_POLICIES.kind:
        findings.add(CauseType.INVALID, "kind", f"{quote(kind)} is not {MIGRATION_POLICIES.kind}")
    api_version = policy.get("apiVersion")
    if api_version is not None and api_version not in MIGRATION_POLICIES.api_versions:
        choices = " or ".join(MIGRATION_POLICIES.api_versions)
        findings.add(CauseType.NOT_SUPPORTED, "apiVersion",
                     f"{quote(api_version)} is not supported: use {choices}")


_NAME_MISSING = "required field is missing: name the policy"


def _check_metadata(metadata: Any, findings: Findings) -> None:
    """Check metadata's name and types."""
    if metadata is None:
        findings.add(CauseType.REQUIRED, "metadata.name", _NAME_MISSING)
        return
    if not isinstance(metadata, dict):
        findings.add(CauseType.TYPE_INVALID, "metadata",
                     f"must be an object of fields, got {describe(metadata)}")
        return
    _check_name(metadata, findings)
    for key, checker in _METADATA_MAPS:
        value = metadata.get(key)
        if value is not None:
            checker.check(value, None, f"metadata.{key}", Context(frozenset(), findings))


def _check_name(metadata: Mapping[str, Any], findings: Findings) -> None:
    name = metadata.get("name")
    if name is None:
        if not metadata.get("generateName"):
            findings.add(CauseType.REQUIRED, "metadata.name", _NAME_MISSING)
        return
    if not isinstance(name, str):
        findings.add(CauseType.TYPE_INVALID, "metadata.name",
                     f"must be a string, got {quote(name)}")
        return
    if len(name) <= DNS1123_SUBDOMAIN_MAX_LENGTH and match_dns1123_subdomain(name):
        return
    for problem in dns1123_subdomain_problems(name):
        findings.add(CauseType.INVALID, "metadata.name", f"{quote(name)} {problem}")


def _unknown_top_level_fields(policy: Mapping[str, Any], findings: Findings) -> None:
    """Report fields a MigrationPolicy does not have, in sorted order, up to the cap."""
    unknown = [key for key in policy if key not in TOP_LEVEL_FIELDS]
    listed = sorted(unknown) if len(unknown) <= MAX_CAUSES else heapq.nsmallest(
        MAX_CAUSES, unknown)
    for key in listed:
        findings.add(CauseType.NOT_SUPPORTED, field_name(key),
                     f"unknown field {quote(key)}: a {MIGRATION_POLICIES.kind} has "
                     "apiVersion, kind, metadata and spec")
    findings.omit("", len(unknown) - len(listed))


def _check_exclusive_experimental(spec: Mapping[str, Any], findings: Findings) -> None:
    experimental = spec.get("experimental")
    if (
        isinstance(experimental, dict)
        and experimental.get("stallDetector") is not None
        and experimental.get("downtimeTuning") is not None
    ):
        findings.add(
            CauseType.INVALID, "spec.experimental",
            "stallDetector and downtimeTuning cannot both be set "
            "(stall detection manages its own downtime schedule): keep one of them",
        )


def _is_well_formed(value: Any, findings: Findings) -> bool:
    """Whether `value` is a selectors object on which validation found nothing."""
    return isinstance(value, dict) and (findings.valid or not any(
        cause.field.startswith("spec.selectors") for cause in findings.causes
    ))


def _warn(spec: Mapping[str, Any], findings: Findings) -> None:
    selectors = spec.get("selectors")
    if isinstance(selectors, dict) and not any(selectors.values()) and _is_well_formed(
        selectors, findings
    ):
        findings.warn(_EMPTY_SELECTORS)
    bandwidth: Any = spec.get("bandwidthPerMigration")
    amount = whole_quantity(bandwidth)
    if amount is not None:  # the common case: whole, no fractional exponent
        if 0 < amount < MEBI:
            findings.warn(_below_one_mebi(bandwidth))
        return
    if isinstance(bandwidth, int | str) and not isinstance(bandwidth, bool):
        try:
            quantity = parse_quantity(str(bandwidth))
        except QuantityError:
            return
        if 0 < quantity.value < MEBI:
            findings.warn(_below_one_mebi(bandwidth))
        if quantity.fractional_exponent:
            findings.warn(_bandwidth_warning(
                bandwidth, "has a fractional exponent, which Kubernetes' Go parser refuses"))


def _below_one_mebi(bandwidth: int | str) -> str:
    return _bandwidth_warning(bandwidth, "is below 1Mi per second: KubeVirt raises it to 1Mi")


def _bandwidth_warning(bandwidth: int | str, says: str) -> str:
    """The warning, its quote of a long value shortened so that what it says still fits."""
    warning = f"spec.bandwidthPerMigration {quote(bandwidth)} {says}"
    limit = 80
    while len(warning) > MAX_WARNING_LENGTH and limit > 8:
        limit = max(8, limit - (len(warning) - MAX_WARNING_LENGTH))
        warning = f"spec.bandwidthPerMigration {quote(bandwidth, limit)} {says}"
    return warning


def _check_duplicates(
    policy: Policy, same_selectors: SameSelectors, deny: bool, findings: Findings
) -> None:
    """Warn about, or refuse, a valid policy whose selectors equal another policy's."""
    name = policy.name
    if not name:  # a generateName: no other policy can be this one
        return
    others = [other for other in same_selectors(policy) if other != name]
    if not others:
        return
    other = min(others)
    winner = min(name, other)
    if deny:
        findings.add(
            CauseType.INVALID, "spec.selectors",
            f"equal to the selectors of policy {quote(other)}: two policies must not have "
            "the same selectors, change them or merge the policies",
        )
    else:
        findings.warn(_duplicate_warning(other, winner))


def _duplicate_warning(other: str, winner: str) -> str:
    """Names both policies; long names lose the reason, then their middles, never the end."""
    def text(first: str, second: str, reason: str = " (its name sorts first)") -> str:
        return (f"spec.selectors equal policy {quote(first)}'s: "
                f"{quote(second)} takes precedence{reason}")

    for candidate in (text(other, winner), text(other, winner, "")):
        if len(candidate) <= MAX_WARNING_LENGTH:
            return candidate
    keep = (MAX_WARNING_LENGTH - len(text("", "", ""))) // 2 - 3

    def short(name: str) -> str:
        if len(name) <= keep + 3:
            return name
        return f"{name[:keep - keep // 2]}...{name[len(name) - keep // 2:]}"

    return text(short(other), short(winner), "")
