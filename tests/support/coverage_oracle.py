"""The plain definitions that coverage and impact are checked against (issue 20), and
directory states to check them on.

Every function here looks at every policy for every VMI: no index, no view, no budget.
`coverage_by_scan` is what `coverage` must count, `decisions_by_scan` what `--vmis` must
print, `impact_by_scan` what an `impact:` warning must say. `write_state` writes a state
directory (`--state DIR`) and `random_state` makes one from a seed.
"""

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.policy.model import Policy
from app.policy.precedence import Precedence, precedence_key

Labels = Mapping[str, str]
VmiKey = tuple[str, str]
"""(namespace, name)."""
NO_POLICY = ""
"""`impact_by_scan`'s key, in `taken_from`, of the VMIs no policy governs now."""


def applicable_by_scan(policies: Iterable[Policy], vmi_labels: Labels, ns_labels: Labels,
                       mode: Precedence) -> list[Policy]:
    """Every policy whose selectors hold among the labels, the one that takes precedence
    first."""
    return sorted((policy for policy in policies if policy.applies_to(vmi_labels, ns_labels)),
                  key=lambda policy: precedence_key(policy, mode))


def coverage_by_scan(policies: Sequence[Policy], vmis: Mapping[VmiKey, Labels],
                     namespaces: Mapping[str, Labels], mode: Precedence) -> dict[str, dict]:
    """Per policy: `governs`, `matches`, `tieBreaks` and `beatenBy` (a Counter by winner).
    A VMI whose namespace is not in `namespaces` is nobody's."""
    shares: dict[str, dict] = {policy.name: {"governs": 0, "matches": 0, "tieBreaks": 0,
                                             "beatenBy": Counter()} for policy in policies}
    for (namespace, _), labels in vmis.items():
        if namespace not in namespaces:
            continue
        applicable = applicable_by_scan(policies, labels, namespaces[namespace], mode)
        if not applicable:
            continue
        winner = applicable[0]
        shares[winner.name]["governs"] += 1
        if len(applicable) > 1 and applicable[1].score == winner.score:
            shares[winner.name]["tieBreaks"] += 1
        for policy in applicable:
            shares[policy.name]["matches"] += 1
            if policy is not winner:
                shares[policy.name]["beatenBy"][winner.name] += 1
    return shares


def status_by_scan(policy: Policy, share: Mapping[str, Any]) -> str:
    if not policy.has_selectors:
        return "no-selectors"
    if share["governs"]:
        return "active"
    return "shadowed" if share["matches"] else "unused"


def decisions_by_scan(policies: Sequence[Policy], vmis: Mapping[VmiKey, Labels],
                      namespaces: Mapping[str, Labels],
                      mode: Precedence) -> dict[VmiKey, tuple[str | None, str | None, bool]]:
    """Per VMI whose namespace is known: (winner, runner-up, decided by the tie-break)."""
    decided = {}
    for key, labels in vmis.items():
        if key[0] not in namespaces:
            continue
        applicable = applicable_by_scan(policies, labels, namespaces[key[0]], mode)
        winner = applicable[0] if applicable else None
        runner_up = applicable[1] if len(applicable) > 1 else None
        decided[key] = (winner.name if winner else None,
                        runner_up.name if runner_up else None,
                        winner is not None and runner_up is not None
                        and runner_up.score == winner.score)
    return decided


@dataclass
class ScanImpact:
    matches: int = 0
    governs: int = 0
    taken_from: Counter[str] = field(default_factory=Counter)
    """The VMIs it would govern, by who governs them now (NO_POLICY: none)."""
    kept_by: Counter[str] = field(default_factory=Counter)
    """The VMIs it applies to and would not govern, by who would keep them."""
    governs_now: int = 0
    """The VMIs the stored policy of its name governs now (0 if there is none)."""


def impact_by_scan(candidate: Policy, policies: Sequence[Policy],
                   vmis: Mapping[VmiKey, Labels], namespaces: Mapping[str, Labels],
                   mode: Precedence) -> ScanImpact:
    """What storing `candidate` would do now: it replaces the policy of its name, if any.
    It governs a VMI it applies to when it would beat every other current policy there."""
    others = [policy for policy in policies if policy.name != candidate.name]
    impact = ScanImpact()
    for (namespace, _), labels in vmis.items():
        if namespace not in namespaces:
            continue
        ns_labels = namespaces[namespace]
        now = applicable_by_scan(policies, labels, ns_labels, mode)
        current = now[0].name if now else NO_POLICY
        if current == candidate.name:
            impact.governs_now += 1
        if not candidate.applies_to(labels, ns_labels):
            continue
        impact.matches += 1
        after = applicable_by_scan([*others, candidate], labels, ns_labels, mode)
        if after[0] is candidate:
            impact.governs += 1
            impact.taken_from[current] += 1
        else:
            impact.kept_by[after[0].name] += 1
    return impact


# --- directory states --------------------------------------------------------------------


def namespace_manifest(name: str, labels: Labels) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels)}}


def vmi_manifest(key: VmiKey, labels: Labels) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": key[1], "namespace": key[0], "labels": dict(labels)}}


def policy_manifest(policy: Policy) -> dict[str, Any]:
    selectors: dict[str, Any] = {}
    if policy.namespace_selector:
        selectors["namespaceSelector"] = dict(policy.namespace_selector)
    if policy.vmi_selector:
        selectors["virtualMachineInstanceSelector"] = dict(policy.vmi_selector)
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": policy.name},
            "spec": {"bandwidthPerMigration": "64Mi", "selectors": selectors}}


@dataclass
class State:
    """A cluster state as the oracle reads it, and as `write_state` writes it."""

    namespaces: dict[str, Labels]
    vmis: dict[VmiKey, Labels]
    policies: list[Policy]


def write_state(directory: Path, state: State) -> Path:
    """namespaces.yaml, vmis.yaml (a List) and policies.yaml under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "namespaces.yaml").write_text(yaml.safe_dump_all(
        [namespace_manifest(name, labels) for name, labels in state.namespaces.items()]))
    (directory / "vmis.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List",
         "items": [vmi_manifest(key, labels) for key, labels in state.vmis.items()]}))
    (directory / "policies.yaml").write_text(yaml.safe_dump_all(
        [policy_manifest(policy) for policy in state.policies]))
    return directory


KEYS = ("app", "tier", "env", "team")
VALUES = ("a", "b", "")


def random_state(seed: int, *, policies: int = 8, vmis: int = 40) -> State:
    """Namespaces ns0..ns3 and VMIs with labels drawn from few keys and values (so that
    policies overlap and tie), some VMIs in a namespace the state does not hold."""
    draw = random.Random(seed)

    def labels(most: int) -> dict[str, str]:
        return {key: draw.choice(VALUES) for key in draw.sample(KEYS, draw.randint(0, most))}

    namespaces = {f"ns{i}": labels(2) for i in range(4)}
    made = {}
    for i in range(vmis):
        namespace = draw.choice([*namespaces, "gone"])
        made[(namespace, f"vmi-{i}")] = labels(4)
    chosen = []
    for i in range(policies):
        namespace_selector, vmi_selector = labels(2), labels(3)
        if not namespace_selector and not vmi_selector and draw.random() < 0.7:
            vmi_selector = {"app": "a"}  # few policies that match every VMI
        chosen.append(Policy(name=f"policy-{i}", namespace_selector=namespace_selector,
                             vmi_selector=vmi_selector))
    return State(namespaces, made, chosen)
