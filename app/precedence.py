"""Which policy applies to a VMI: matching, precedence, and the index that makes it cheap.

Policies are indexed by a selector pair each, so finding the winner for a VMI costs in
proportion to the policies filed under the VMI's and its namespace's labels, not to how
many policies exist.
"""

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any

from app.policy import Policy

_NS, _VMI = "namespace", "vmi"

Pair = tuple[str, str, str]
"""(source, key, value): a label pair of a VMI selector or a namespace selector."""


class Precedence(StrEnum):
    """How ties between applicable policies are decided (`--precedence`)."""

    DOCUMENTED = "documented"
    """Score, then the sorted list of selector keys, then the name (the reference text)."""
    KUBEVIRT = "kubevirt"
    """Score, then the number of VMI labels matched, then the name (virt-controller)."""


def precedence_key(policy: Policy, mode: Precedence) -> tuple[Any, ...]:
    """Sorts the policy that takes precedence first."""
    if mode is Precedence.KUBEVIRT:
        return (-policy.score, -len(policy.vmi_selector), policy.name)
    return (-policy.score, policy.sorted_keys, policy.name)


def winner_by_scan(
    policies: Iterable[Policy], vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str],
    mode: Precedence,
) -> Policy | None:
    """The plain definition: check every policy. The index must agree with it."""
    applicable = [policy for policy in policies if policy.applies_to(vmi_labels, ns_labels)]
    return min(applicable, key=lambda policy: precedence_key(policy, mode), default=None)


class PolicyIndex:
    """The current policies, indexed for matching. Safe to share between threads.

    Each policy is filed under one of its selector pairs, its anchor: the pair that the
    fewest policies share. A VMI can only match a policy whose anchor is among its own and
    its namespace's labels, so a lookup checks just the policies anchored there, however
    many policies share the VMI's commoner labels. Anchors are chosen when a policy is put,
    from the counts of that moment; building the index from a whole list counts first.
    """

    def __init__(self, mode: Precedence, policies: Iterable[Policy] = ()) -> None:
        self.mode = mode
        self._lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        self._keys: dict[str, tuple[Any, ...]] = {}
        self._pair_counts: Counter[Pair] = Counter()
        self._anchor: dict[str, Pair] = {}
        self._anchored: defaultdict[Pair, set[str]] = defaultdict(set)
        self._match_all: set[str] = set()
        self._by_selectors: defaultdict[tuple[Any, ...], set[str]] = defaultdict(set)
        policies = {policy.name: policy for policy in policies}
        for policy in policies.values():
            if policy.has_selectors:
                self._pair_counts.update(_pairs(policy))
        for policy in policies.values():
            self._insert(policy, counted=True)

    def __len__(self) -> int:
        return len(self._policies)

    def __iter__(self) -> Iterator[Policy]:
        with self._lock:
            return iter(sorted(self._policies.values(), key=lambda policy: policy.name))

    def get(self, name: str) -> Policy | None:
        return self._policies.get(name)

    def put(self, policy: Policy) -> None:
        """Add the policy, or replace the one of the same name."""
        with self._lock:
            self._remove(policy.name)
            self._insert(policy, counted=False)

    def remove(self, name: str) -> None:
        with self._lock:
            self._remove(name)

    def _insert(self, policy: Policy, *, counted: bool) -> None:
        self._policies[policy.name] = policy
        if not policy.has_selectors:
            return
        self._keys[policy.name] = precedence_key(policy, self.mode)
        self._by_selectors[policy.selectors_key()].add(policy.name)
        pairs = list(_pairs(policy))
        if not pairs:
            self._match_all.add(policy.name)
            return
        if not counted:
            self._pair_counts.update(pairs)
        anchor = min(pairs, key=lambda pair: (self._pair_counts[pair], pair))
        self._anchor[policy.name] = anchor
        self._anchored[anchor].add(policy.name)

    def _remove(self, name: str) -> None:
        policy = self._policies.pop(name, None)
        if policy is None or not policy.has_selectors:
            return
        del self._keys[name]
        _discard(self._by_selectors, policy.selectors_key(), name)
        self._match_all.discard(name)
        anchor = self._anchor.pop(name, None)
        if anchor is not None:
            _discard(self._anchored, anchor, name)
            for pair in _pairs(policy):
                self._pair_counts[pair] -= 1
                if self._pair_counts[pair] <= 0:
                    del self._pair_counts[pair]

    def applicable(
        self, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]
    ) -> list[Policy]:
        """Every policy that applies, the one that takes precedence first."""
        with self._lock:
            names = self._applicable_names(vmi_labels, ns_labels)
            names.sort(key=self._keys.__getitem__)
            return [self._policies[name] for name in names]

    def winner(self, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]) -> Policy | None:
        """The policy that takes precedence for a VMI with these labels, if any applies."""
        with self._lock:
            names = self._applicable_names(vmi_labels, ns_labels)
            if not names:
                return None
            return self._policies[min(names, key=self._keys.__getitem__)]

    def _applicable_names(
        self, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]
    ) -> list[str]:
        names = list(self._match_all)
        policies = self._policies
        for source, labels in ((_VMI, vmi_labels), (_NS, ns_labels)):
            for key, value in labels.items():
                anchored = self._anchored.get((source, key, value))
                if anchored:
                    names.extend(name for name in anchored
                                 if policies[name].applies_to(vmi_labels, ns_labels))
        return names

    def with_same_selectors(self, policy: Policy) -> list[str]:
        """Names of the other policies whose selectors equal `policy`'s."""
        with self._lock:
            names = self._by_selectors.get(policy.selectors_key(), set())
            return sorted(name for name in names if name != policy.name)


def _pairs(policy: Policy) -> Iterator[Pair]:
    for key, value in policy.vmi_selector.items():
        yield _VMI, key, value
    for key, value in policy.namespace_selector.items():
        yield _NS, key, value


def _discard(index: defaultdict[Any, set[str]], key: Any, name: str) -> None:
    names = index.get(key)
    if names is not None:
        names.discard(name)
        if not names:
            del index[key]
