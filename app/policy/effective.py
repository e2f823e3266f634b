"""What a migration will use for each parameter: its policy's value, else the cluster's
(`spec.configuration.migrations` of the KubeVirt CR), else KubeVirt's default.

Values are written as the KubeVirt API writes them: booleans, integers, the bandwidth as a
quantity string.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.policy.model import Policy

POLICY, CLUSTER, DEFAULT = "policy", "cluster", "default"

DEFAULTS: Mapping[str, Any] = {
    "bandwidthPerMigration": "0",
    "completionTimeoutPerGiB": 150,
    "progressTimeout": 150,
    "allowAutoConverge": False,
    "allowPostCopy": False,
}
"""KubeVirt's defaults when neither the policy nor the cluster sets a parameter (bandwidth 0
is unlimited). allowWorkloadDisruption follows allowPostCopy."""
FOLLOWS_POST_COPY = "allowWorkloadDisruption"
SHOWN_WHEN_SET = "maxDowntimeMs"
"""Has no KubeVirt default: shown only where the policy or the cluster sets it."""
PARAMETERS = (*DEFAULTS, FOLLOWS_POST_COPY, SHOWN_WHEN_SET)
_BOOLEANS = frozenset({"allowAutoConverge", "allowPostCopy", FOLLOWS_POST_COPY})
_INTEGERS = frozenset({"completionTimeoutPerGiB", "progressTimeout", SHOWN_WHEN_SET})


@dataclass(frozen=True)
class Effective:
    """One parameter: its value, where it comes from, and the policy's name if from one."""

    value: Any
    source: str
    policy: str | None = None

    def as_dict(self) -> dict[str, Any]:
        shown = {"value": self.value, "source": self.source}
        if self.policy is not None:
            shown["policy"] = self.policy
        return shown


def effective_configuration(policy: Policy | None,
                            cluster: Mapping[str, Any] | None) -> dict[str, Effective]:
    """Every parameter a migration governed by `policy` (None: no policy applies) uses, in a
    cluster whose KubeVirt CR sets `cluster` (None: no CR, or no migrations section)."""
    cluster = cluster or {}
    from_policy = policy.settings if policy is not None else {}
    found: dict[str, Effective] = {}
    name_of_policy = policy.name if policy is not None else None
    for name in PARAMETERS:
        if name in from_policy:
            found[name] = Effective(_api_value(name, from_policy[name]), POLICY, name_of_policy)
        elif cluster.get(name) is not None:
            found[name] = Effective(cluster[name], CLUSTER)
        elif name == FOLLOWS_POST_COPY:
            found[name] = Effective(found["allowPostCopy"].value, DEFAULT)
        elif name in DEFAULTS:
            found[name] = Effective(DEFAULTS[name], DEFAULT)
    return found


def _api_value(name: str, annotation: str) -> Any:
    """A policy setting, kept as its annotation string, as the KubeVirt API writes it."""
    if name in _BOOLEANS:
        return annotation == "true"
    if name in _INTEGERS:
        return int(annotation)
    return annotation
