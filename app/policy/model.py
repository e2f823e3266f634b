"""A MigrationPolicy as matching and stamping need it: name, selectors, settings."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from app.k8s.labels import interned

# The settings a policy may set, in the order annotations are written.
SETTINGS = (
    "allowAutoConverge",
    "bandwidthPerMigration",
    "completionTimeoutPerGiB",
    "maxDowntimeMs",
    "allowPostCopy",
    "allowWorkloadDisruption",
)
EXPERIMENTAL = "experimental"


NOTHING: Mapping[str, str] = MappingProxyType({})
"""An empty selector or settings, shared (read-only)."""


class Policy(NamedTuple):
    """One policy. `has_selectors` false: it has no spec.selectors and applies to nothing.

    A tuple, like AdmissionRequest: every validate review makes one (its name and
    selectors), and a tuple is made in a third of a frozen dataclass's time."""

    name: str
    namespace_selector: Mapping[str, str] = NOTHING
    vmi_selector: Mapping[str, str] = NOTHING
    has_selectors: bool = True
    settings: Mapping[str, str] = NOTHING
    """What the policy sets, as annotation values (`settings_of(spec)`), made once."""

    @property
    def score(self) -> int:
        """The number of label pairs in both selectors."""
        return len(self.namespace_selector) + len(self.vmi_selector)

    @property
    def sorted_keys(self) -> tuple[str, ...]:
        """The selector keys of both selectors together, sorted (documented tie-break)."""
        return tuple(sorted([*self.namespace_selector, *self.vmi_selector]))

    def selectors_key(self) -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]:
        """A hashable form of both selectors, to find policies with equal selectors."""
        return frozenset(self.namespace_selector.items()), frozenset(self.vmi_selector.items())

    def applies_to(self, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]) -> bool:
        """Whether every pair of both selectors is among the labels (a plain check)."""
        return self.has_selectors and all(
            key in ns_labels and ns_labels[key] == value
            for key, value in self.namespace_selector.items()
        ) and all(
            key in vmi_labels and vmi_labels[key] == value
            for key, value in self.vmi_selector.items()
        )


def settings_of(spec: Mapping[str, Any]) -> dict[str, str]:
    """The settings a policy spec sets, as annotation values.

    A policy that sets allowPostCopy but not allowWorkloadDisruption yields
    allowWorkloadDisruption equal to allowPostCopy, as KubeVirt applies it.
    """
    values = {name: spec[name] for name in SETTINGS if spec.get(name) is not None}
    if "allowPostCopy" in values and "allowWorkloadDisruption" not in values:
        values["allowWorkloadDisruption"] = values["allowPostCopy"]
    shown = {name: _annotation_value(values[name]) for name in SETTINGS if name in values}
    experimental = spec.get(EXPERIMENTAL)
    if experimental is not None:
        shown[EXPERIMENTAL] = orjson.dumps(experimental, option=orjson.OPT_SORT_KEYS).decode()
    return shown


def _annotation_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def selectors_of(obj: Any) -> Policy | None:
    """A policy's name and selectors alone, or None when they are not maps of strings (an
    invalid policy may be admitted by `--enforcement warn`): enough to match it."""
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    spec = obj.get("spec") if isinstance(obj, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    selectors = spec.get("selectors") if isinstance(spec, dict) else None
    if not isinstance(selectors, dict):
        return Policy(name=name if isinstance(name, str) else "", has_selectors=False)
    ns_selector = selectors.get("namespaceSelector") or {}
    vmi_selector = selectors.get("virtualMachineInstanceSelector") or {}
    if not (_string_map(ns_selector) and _string_map(vmi_selector)):
        return None
    return Policy(name=name if isinstance(name, str) else "",
                  namespace_selector=ns_selector, vmi_selector=vmi_selector)


def selectors_from_object(obj: Mapping[str, Any]) -> Policy:
    """The name and selectors of a MigrationPolicy object that has passed validation,
    without its settings: what matching needs."""
    name = (obj.get("metadata") or {}).get("name", "")
    selectors = (obj.get("spec") or {}).get("selectors")
    if not isinstance(selectors, dict):
        return Policy(name=name, has_selectors=False)
    return Policy(name, selectors.get("namespaceSelector") or NOTHING,
                  selectors.get("virtualMachineInstanceSelector") or NOTHING)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items())


def policy_from_object(obj: Mapping[str, Any]) -> Policy:
    """Build a Policy from a MigrationPolicy object that has passed validation."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    selectors = spec.get("selectors")
    if not isinstance(selectors, dict):
        return Policy(name=metadata.get("name", ""), has_selectors=False,
                      settings=settings_of(spec))
    return Policy(
        name=metadata.get("name", ""),
        namespace_selector=interned(selectors.get("namespaceSelector") or {}),
        vmi_selector=interned(selectors.get("virtualMachineInstanceSelector") or {}),
        settings=settings_of(spec),
    )
