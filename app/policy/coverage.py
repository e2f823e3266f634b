"""What each policy governs: every VMI's winner, and each policy's share of the VMIs.

`coverage` is one pass over the VMIs, each decided by the same index that decides a
migration, so the report says exactly what the webhook would stamp now. A win is decided
by the tie-break when the runner-up has the same score: the score alone did not choose.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from app.policy.precedence import PolicyIndex

VmiKey = tuple[str, str]
"""(namespace, name)."""
PAUSE_EVERY = 1024
"""VMIs decided between two calls of `coverage`'s `pause`."""


class Status(StrEnum):
    ACTIVE = "active"
    """Governs at least one VMI."""
    SHADOWED = "shadowed"
    """Applies to VMIs, governs none of them."""
    UNUSED = "unused"
    """Applies to no VMI."""
    NO_SELECTORS = "no-selectors"
    """Has no spec.selectors: applies to nothing, by definition."""


class PolicyCoverage(NamedTuple):
    """One policy's share: the VMIs it wins, those it applies to, who beats it where. (A
    tuple of strings, integers and a dict of them: once made, the garbage collector stops
    tracking it, so 10,000 of them cost a full collection nothing.)"""

    name: str
    has_selectors: bool
    governs: int = 0
    matches: int = 0
    tie_breaks: int = 0
    beaten_by: Mapping[str, int] = {}  # never mutated: a share counted gets a dict of its own
    """By the policy that wins them, the VMIs it applies to but does not govern."""

    @property
    def status(self) -> Status:
        if not self.has_selectors:
            return Status.NO_SELECTORS
        if self.governs:
            return Status.ACTIVE
        return Status.SHADOWED if self.matches else Status.UNUSED


@dataclass(frozen=True, slots=True)
class VmiDecision:
    """Which policy a VMI gets, the one that would take its place, and whether only the
    tie-break chose between them."""

    namespace: str
    name: str
    winner: str | None
    runner_up: str | None
    tie_break: bool


@dataclass
class Coverage:
    policies: list[PolicyCoverage]
    """Every policy, by name."""
    vmis: list[VmiDecision]
    """Every VMI, by namespace and name, when asked for (`per_vmi`); else empty."""
    vmi_count: int
    without_namespace: int
    """VMIs whose namespace the state does not hold: the webhook stamps none of them."""

    def status_counts(self) -> dict[Status, int]:
        """Policies by status, every status present (0 where none is)."""
        counts = dict.fromkeys(Status, 0)
        for policy in self.policies:
            counts[policy.status] += 1
        return counts

    @property
    def tie_broken(self) -> int:
        """VMIs whose policy was chosen by the tie-break."""
        return sum(policy.tie_breaks for policy in self.policies)


def coverage(
    policies: PolicyIndex,
    vmis: Iterable[tuple[VmiKey, Mapping[str, str]]],
    namespaces: Mapping[str, Mapping[str, str]],
    *,
    per_vmi: bool = False,
    pause: Callable[[], None] | None = None,
) -> Coverage:
    """Decide every VMI, and count each policy's wins, matches, losses and tie-breaks;
    call `pause` every PAUSE_EVERY VMIs (a worker thread lets the event loop run)."""
    names = {policy.name: policy.has_selectors for policy in policies}
    # Counted in dicts of strings and integers (untracked by the collector), made into
    # PolicyCoverage tuples at the end.
    governs: dict[str, int] = {}
    matches: dict[str, int] = {}
    ties: dict[str, int] = {}
    beaten_by: dict[str, dict[str, int]] = {}
    decisions: list[VmiDecision] = []
    count = without_namespace = 0
    for (namespace, name), labels in vmis:
        count += 1
        if pause is not None and count % PAUSE_EVERY == 0:
            pause()
        ns_labels = namespaces.get(namespace)
        if ns_labels is None:
            without_namespace += 1
            continue
        applicable = policies.applicable(labels, ns_labels)
        winner = applicable[0] if applicable else None
        runner_up = applicable[1] if len(applicable) > 1 else None
        tie_break = (winner is not None and runner_up is not None
                     and runner_up.score == winner.score)
        if winner is not None:
            won = winner.name
            governs[won] = governs.get(won, 0) + 1
            if tie_break:
                ties[won] = ties.get(won, 0) + 1
            for policy in applicable:
                matches[policy.name] = matches.get(policy.name, 0) + 1
                if policy is not winner:
                    losses = beaten_by.setdefault(policy.name, {})
                    losses[won] = losses.get(won, 0) + 1
        if per_vmi:
            decisions.append(VmiDecision(
                namespace, name, winner.name if winner else None,
                runner_up.name if runner_up else None, tie_break))
    decisions.sort(key=lambda decision: (decision.namespace, decision.name))
    shares = [PolicyCoverage(name, has_selectors, governs.get(name, 0), matches.get(name, 0),
                             ties.get(name, 0), beaten_by.get(name, {}))
              for name, has_selectors in sorted(names.items())]
    return Coverage(shares, decisions, count, without_namespace)
