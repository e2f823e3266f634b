"""Which policy applies to a VMI: matching, precedence, and the index that makes it cheap.

Policies are indexed by a selector pair each, so finding the winner for a VMI costs in
proportion to the policies filed under the VMI's and its namespace's labels, not to how
many policies exist.
"""

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from operator import attrgetter
from typing import Any

from app.policy.model import Policy

_NS, _VMI = "namespace", "vmi"
_TOP = attrgetter("top")

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


Items = tuple[tuple[str, str], ...]
Entry = tuple[tuple[Any, ...], str, Items, Items, Policy]
"""(precedence key, name, VMI selector pairs, namespace selector pairs, the policy): kept
sorted, the policy that takes precedence first. Names are unique, so what follows them is
never compared; the pairs are there so that a lookup matches without touching the Policy,
the policy so that the winner is had without a lookup by name."""

SelectorsKey = tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]
Anchor = tuple[Pair | None, Pair | None]
"""Where a group is filed: its two rarest pairs, None for each it lacks."""


class _Seconds:
    """The buckets of the anchors that share one first pair, by their second pair (None
    where an anchor has fewer), and the highest score among them."""

    __slots__ = ("buckets", "keys", "top")

    def __init__(self) -> None:
        self.keys: set[Pair | None] = set()
        """The second pairs again, as a set: a lookup intersects it with the labels' pairs,
        and a set keeps each element's hash, so the intersection reads the sets' tables and
        not the pairs (at 100,000 policies most of them are out of the caches)."""
        self.buckets: dict[Pair | None, list[Entry]] = {}
        self.top = 0
        """The highest score of a group filed here: a lookup that has found a better one
        skips these buckets."""

    def add(self, second: Pair | None, entry: Entry) -> None:
        bucket = self.buckets.get(second)
        if bucket is None:
            self.keys.add(second)
            bucket = self.buckets[second] = []
        bisect.insort(bucket, entry)
        self.top = max(self.top, -entry[0][0])

    def removed(self, second: Pair | None, score: int) -> None:
        """After a group of this score has left the bucket of `second`: forget the bucket if
        it is empty, and lower the highest score if it was the group's."""
        if not self.buckets[second]:
            self.keys.discard(second)
            del self.buckets[second]
        if score == self.top and self.buckets:
            # each bucket is sorted, so its first entry has its highest score
            self.top = max(-bucket[0][0][0] for bucket in self.buckets.values())


class PolicyIndex:
    """The current policies, indexed for matching. Safe to share between threads.

    Policies with equal selectors form a group: they apply to the same VMIs, and the one
    that takes precedence among them is the only one a lookup needs. Each group is filed
    under its anchor: the two of its selector pairs that the fewest groups share (or its
    one pair). A VMI can only match a group whose anchor pairs are all among its own and
    its namespace's labels, so a lookup checks just the buckets of those pairs and pairs of
    pairs: however many groups share a common label, or even two, only the few that share
    the VMI's two rarest-used labels are looked at. Each bucket is sorted by precedence; a
    lookup stops in it at its first match, or when the rest cannot beat the best so far.
    The buckets under each first pair know their highest score, and a lookup visits them
    highest first, stopping where that score is below the best match's: a VMI that matches
    a specific policy never reads the buckets of the broader ones.
    Anchors are chosen when a group is created, from the counts of that moment; building
    the index from a whole list counts first.
    """

    def __init__(self, mode: Precedence, policies: Iterable[Policy] = ()) -> None:
        self.mode = mode
        self._lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        self._entries: dict[str, Entry] = {}
        self._group_of: dict[str, SelectorsKey] = {}
        self._groups: dict[SelectorsKey, list[Entry]] = {}
        self._anchor: dict[SelectorsKey, Anchor] = {}
        self._pair_counts: Counter[Pair] = Counter()
        self._buckets: dict[Pair | None, _Seconds] = {}
        """Buckets by an anchor's first pair (None where it has none), then its second."""
        by_name = {policy.name: policy for policy in policies}
        groups = {policy.selectors_key(): policy for policy in by_name.values()
                  if policy.has_selectors}
        for policy in groups.values():
            self._pair_counts.update(_pairs(policy))
        for policy in by_name.values():
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
        entry = (precedence_key(policy, self.mode), policy.name,
                 tuple(policy.vmi_selector.items()), tuple(policy.namespace_selector.items()),
                 policy)
        group_key = policy.selectors_key()
        self._entries[policy.name] = entry
        self._group_of[policy.name] = group_key
        group = self._groups.get(group_key)
        if group is None:
            self._groups[group_key] = [entry]
            pairs = list(_pairs(policy))
            if not counted:
                self._pair_counts.update(pairs)
            pairs.sort(key=lambda pair: (self._pair_counts[pair], pair))
            first, second = (*pairs[:2], None, None)[:2]
            self._anchor[group_key] = (first, second)
            seconds = self._buckets.get(first)
            if seconds is None:
                seconds = self._buckets[first] = _Seconds()
            seconds.add(second, entry)
            return
        best = group[0]
        bisect.insort(group, entry)
        if group[0] is not best:
            bucket = self._bucket(self._anchor[group_key])
            _remove_sorted(bucket, best)
            bisect.insort(bucket, entry)

    def _bucket(self, anchor: Anchor) -> list[Entry]:
        first, second = anchor
        return self._buckets[first].buckets[second]

    def _remove(self, name: str) -> None:
        policy = self._policies.pop(name, None)
        if policy is None or not policy.has_selectors:
            return
        entry = self._entries.pop(name)
        group_key = self._group_of.pop(name)
        group = self._groups[group_key]
        was_best = group[0] == entry
        _remove_sorted(group, entry)
        if not was_best:
            return
        anchor = self._anchor[group_key]
        bucket = self._bucket(anchor)
        _remove_sorted(bucket, entry)
        if group:
            bisect.insort(bucket, group[0])
            return
        del self._groups[group_key], self._anchor[group_key]
        first, second = anchor
        seconds = self._buckets[first]
        seconds.removed(second, policy.score)
        if not seconds.buckets:
            del self._buckets[first]
        for pair in _pairs(policy):
            self._pair_counts[pair] -= 1
            if self._pair_counts[pair] <= 0:
                del self._pair_counts[pair]

    def _candidates(
        self, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]
    ) -> tuple[list[_Seconds], set[Pair | None]]:
        """The buckets under the labels' pairs, the highest scores first, and the labels'
        pairs as a set: a VMI may match the groups of those buckets whose second pair is
        among them too."""
        buckets = self._buckets
        pairs: list[Pair | None] = [(_VMI, key, value) for key, value in vmi_labels.items()]
        pairs += [(_NS, key, value) for key, value in ns_labels.items()]
        present = set(pairs)
        present.add(None)
        found = []
        for first in (None, *pairs):
            seconds = buckets.get(first)
            if seconds is not None:
                found.append(seconds)
        if len(found) > 1:
            found.sort(key=_TOP, reverse=True)
        return found, present

    def applicable(
        self, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]
    ) -> list[Policy]:
        """Every policy that applies, the one that takes precedence first."""
        with self._lock:
            found, present = self._candidates(vmi_labels, ns_labels)
            entries = sorted(
                member
                for seconds in found
                for second in present.intersection(seconds.keys)
                for entry in seconds.buckets[second]
                if _matches(entry, vmi_labels, ns_labels)
                for member in self._groups[self._group_of[entry[1]]]
            )
            return [entry[4] for entry in entries]

    def winner(self, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]) -> Policy | None:
        """The policy that takes precedence for a VMI with these labels, if any applies."""
        with self._lock:
            found, present = self._candidates(vmi_labels, ns_labels)
            best: Entry | None = None
            for seconds in found:
                if best is not None and seconds.top < -best[0][0]:
                    break  # neither these buckets nor the rest hold a higher score
                buckets = seconds.buckets
                for second in present.intersection(seconds.keys):
                    best = _best_in(buckets[second], best, vmi_labels, ns_labels)
            return None if best is None else best[4]

    def with_same_selectors(self, policy: Policy) -> list[str]:
        """Names of the other policies whose selectors equal `policy`'s."""
        key = policy.selectors_key()
        if key not in self._groups:  # the usual case, on every valid review: one dict lookup
            return []
        with self._lock:
            group = self._groups.get(key, [])
            return sorted(entry[1] for entry in group if entry[1] != policy.name)


def _pairs(policy: Policy) -> Iterator[Pair]:
    for key, value in policy.vmi_selector.items():
        yield _VMI, key, value
    for key, value in policy.namespace_selector.items():
        yield _NS, key, value


def _best_in(
    bucket: list[Entry], best: Entry | None,
    vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str],
) -> Entry | None:
    """The better of `best` and the bucket's first match: stops at that match, or where the
    rest of the sorted bucket cannot beat `best`."""
    for entry in bucket:
        if best is not None and entry >= best:
            break
        if _matches(entry, vmi_labels, ns_labels):
            return entry
    return best


def _matches(entry: Entry, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]) -> bool:
    """Whether every pair of the entry's selectors is among the labels (label values are
    strings, so a missing key, None, never equals a selector's value)."""
    for key, value in entry[2]:
        if vmi_labels.get(key) != value:
            return False
    for key, value in entry[3]:  # noqa: SIM110 - all() of a generator costs 1 µs more
        if ns_labels.get(key) != value:
            return False
    return True


def _remove_sorted(bucket: list[Entry], entry: Entry) -> None:
    del bucket[bisect.bisect_left(bucket, entry)]
