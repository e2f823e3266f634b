"""The common valid MigrationPolicy, recognised in one pass.

Nearly every policy a webhook sees is well-formed and uses the documented fields only. The
full schema walk (`app.policy.validation`) judges one through some thirty functions and
checker objects; between two TLS records their code and data are out of the caches, so it
cost a review about 21 µs over TLS against 9 in a warm loop. Here the same rules, for the
shape that is valid, are one function: either it says that the policy is valid and which
warnings the full check would give, or it says nothing and the full check runs. It never
judges a policy invalid, so every message still comes from one place.

What it leaves to the full check: anything it would have to refuse or cannot decide in
one test (wrong types, unknown fields, quantities that are not whole, values out of range,
a generateName without a name), and the fields behind feature gates (maxDowntimeMs,
experimental), whose checks compare with the old object.
`tests/unit/test_common_shape.py` checks that it agrees with the full check.
"""

from collections.abc import Mapping
from typing import Any

from app.k8s.labels import (
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    LABEL_VALUE_MAX_LENGTH,
    match_dns1123_subdomain,
    match_label_value,
    match_plain_label_key,
)
from app.k8s.quantity import MEBI, whole_quantity
from app.k8s.resources import MIGRATION_POLICIES
from app.policy.schema import INT64_MAX, TOP_LEVEL_FIELDS

_BOOLEANS = frozenset({"allowAutoConverge", "allowPostCopy", "allowWorkloadDisruption"})
_SELECTORS = frozenset({"namespaceSelector", "virtualMachineInstanceSelector"})


class Shape:
    """What the one pass found in a valid policy: the facts its warnings depend on."""

    __slots__ = ("empty_selectors", "low_bandwidth")

    def __init__(self, empty_selectors: bool, low_bandwidth: int | str | None) -> None:
        self.empty_selectors = empty_selectors
        """spec.selectors matches every VMI."""
        self.low_bandwidth = low_bandwidth
        """spec.bandwidthPerMigration as written, when it is above 0 and below 1Mi."""


def common_shape(obj: Any) -> Shape | None:
    """The facts of a valid policy of the common shape, or None: then the full check
    must judge it (it may be valid all the same)."""
    if type(obj) is not dict or not TOP_LEVEL_FIELDS.issuperset(obj):
        return None
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if (kind is not None and kind != MIGRATION_POLICIES.kind) or (
            api_version is not None and api_version not in MIGRATION_POLICIES.api_versions):
        return None
    status = obj.get("status")
    if status is not None and type(status) is not dict:
        return None
    spec = obj.get("spec")
    if not _has_valid_metadata(obj.get("metadata")) or type(spec) is not dict:
        return None
    selectors = spec.get("selectors")
    if type(selectors) is not dict:
        return None
    low_bandwidth = None
    for field, value in spec.items():  # a null is as good as absent, but for an unknown field
        if field in _BOOLEANS:
            if value is not None and value is not True and value is not False:
                return None
        elif field == "bandwidthPerMigration":
            if value is None:
                continue
            amount = whole_quantity(value)
            if amount is None or amount < 0:
                return None
            if 0 < amount < MEBI:
                low_bandwidth = value
        elif field == "completionTimeoutPerGiB":
            if value is not None and (type(value) is not int or not 0 <= value <= INT64_MAX):
                return None
        elif field != "selectors":  # gated, or unknown: the full check's
            return None
    empty = True
    for field, selector in selectors.items():
        if field not in _SELECTORS:
            return None
        if selector is None:
            continue
        if type(selector) is not dict or not _labels(selector):
            return None
        empty = empty and not selector
    return Shape(empty, low_bandwidth)


def _has_valid_metadata(metadata: Any) -> bool:
    """Whether metadata is an object with a valid name and maps of strings."""
    if type(metadata) is not dict:
        return False
    name = metadata.get("name")
    if type(name) is not str or len(name) > DNS1123_SUBDOMAIN_MAX_LENGTH or (
            not match_dns1123_subdomain(name)):
        return False
    for strings in (metadata.get("labels"), metadata.get("annotations")):
        if strings is None:
            continue
        if type(strings) is not dict:
            return False
        for value in strings.values():
            if type(value) is not str:
                return False
    return True


def _labels(selector: Mapping[Any, Any]) -> bool:
    """Whether every entry is a label key without a prefix and a valid label value."""
    for key, value in selector.items():
        if not (type(key) is str and type(value) is str and match_plain_label_key(key) and (
                not value or (value.isalnum() and value.isascii()
                              and len(value) <= LABEL_VALUE_MAX_LENGTH)
                or match_label_value(value))):
            return False
    return True
