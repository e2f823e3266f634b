"""What a policy under review would do now: the VMIs it would govern, and whose they are.

The answer is read from a `ClusterView`, the VMIs grouped by namespace and the namespaces
indexed by label pair, so a policy whose namespace selector matches few namespaces looks at
their VMIs only. Each VMI it applies to is decided against the current policies, the
policy's own old version left out (an UPDATE replaces it). The pass stops when its CPU
budget is spent, and then says `at least`.
"""

import functools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from app.policy.findings import MAX_WARNING_LENGTH
from app.policy.model import Policy
from app.policy.precedence import PolicyIndex, precedence_key

Labels = Mapping[str, str]
NO_POLICY = ""
"""The key, in `Impact.taken_from`, of the VMIs no policy governs now."""
CHECK_EVERY = 16
"""VMIs decided between two reads of the clock."""


NOWHERE = range(0)
EVERYWHERE = range(sys.maxsize)
"""Longer than any span of `ClusterView`."""


@dataclass(frozen=True)
class ClusterView:
    """The VMIs and namespaces of one moment, arranged for `measure_impact`.

    Built of objects the cyclic garbage collector does not track (strings, ranges, dicts
    of them) but for two tuples: a young collection after a pass would otherwise scan tens
    of thousands of new tuples in one step, holding the GIL for milliseconds."""

    vmis: tuple[Labels, ...]
    """The labels of every VMI, those of a namespace side by side (names are not needed)."""
    spans: Mapping[str, range]
    """Where each namespace's VMIs are in `vmis`."""
    namespaces: Mapping[str, Labels]
    indexed: tuple[str, ...]
    """The namespaces of each label pair, side by side."""
    by_pair: Mapping[str, range]
    """Where the namespaces of a label pair (`pair_key`) are in `indexed`."""

    @classmethod
    def build(cls, vmis: Iterable[tuple[tuple[str, str], Labels]],
              namespaces: Mapping[str, Labels]) -> "ClusterView":
        """From the VMIs' ((namespace, name), labels) entries, read once."""
        by_namespace: dict[str, list[Labels]] = {}
        for (namespace, _), labels in vmis:
            by_namespace.setdefault(namespace, []).append(labels)
        by_pair: dict[str, list[str]] = {}
        for namespace, labels in namespaces.items():
            for key, value in labels.items():
                by_pair.setdefault(pair_key(key, value), []).append(namespace)
        flat_vmis, spans = _side_by_side(by_namespace)
        indexed, pair_spans = _side_by_side(by_pair)
        return cls(flat_vmis, spans, namespaces, indexed, pair_spans)

    def vmis_in(self, namespace: str) -> tuple[Labels, ...]:
        span = self.spans.get(namespace, NOWHERE)
        return self.vmis[span.start:span.stop]

    def count_in(self, namespace: str) -> int:
        return len(self.spans.get(namespace, NOWHERE))

    def namespaces_matching(self, selector: Labels) -> Iterator[str]:
        """The namespaces whose labels hold every pair of `selector`."""
        if not selector:
            yield from self.namespaces
            return
        # the pair fewest namespaces have (a loop: `min(..., key=len)` cost 4,700
        # instructions more, and every validate review looks twice)
        by_pair = self.by_pair
        pairs = selector.items()
        rarest = EVERYWHERE  # the first pair's span is shorter
        for key, value in pairs:
            span = by_pair.get(pair_key(key, value), NOWHERE)
            if len(span) < len(rarest):
                rarest = span
        namespaces = self.namespaces
        for namespace in self.indexed[rarest.start:rarest.stop]:
            if pairs <= namespaces[namespace].items():
                yield namespace


def pair_key(key: str, value: str) -> str:
    """A label pair as one string: a key has no "=" (and were one to, a namespace found
    by it is still checked against the selector)."""
    return f"{key}={value}"


T = TypeVar("T")


def _side_by_side(groups: dict[str, list[T]]) -> tuple[tuple[T, ...], dict[str, range]]:
    """The groups' items in one tuple, and where each group's are; `groups` is emptied as
    it goes (10,000 lists dropped at once would be one step of milliseconds)."""
    flat: list[T] = []
    spans = {}
    while groups:
        name, items = groups.popitem()
        spans[name] = range(len(flat), len(flat) + len(items))
        flat += items
    return tuple(flat), spans


@dataclass
class Impact:
    matches: int = 0
    governs: int = 0
    taken_from: dict[str, int] = field(default_factory=dict)
    """VMIs it would govern, by the policy that governs them now (NO_POLICY for none)."""
    kept_by: dict[str, int] = field(default_factory=dict)
    """VMIs it applies to but would not govern, by the policy that keeps them."""
    governs_now: int = 0
    """On UPDATE: the VMIs its stored version (the policy of its name) governs now,
    wherever they are: a change of selectors may move it to other VMIs."""
    complete: bool = True
    """False when the budget ran out: every count is then a lower bound."""


def measure_impact(candidate: Policy, policies: PolicyIndex, view: ClusterView, *,
                   budget_seconds: float,
                   clock: Callable[[], float] = time.thread_time) -> Impact:
    """Decide every VMI the candidate applies to, with and without it; then count the
    VMIs its stored version governs among those it no longer applies to."""
    impact = Impact()
    name = candidate.name
    stored = policies.get(name)
    deadline = clock() + budget_seconds
    if candidate.has_selectors:
        _measure_matches(impact, candidate, policies,
                         _within_budget(_applicable_vmis(candidate, view), impact, deadline,
                                        clock))
    if (impact.complete and stored is not None and stored.has_selectors
            and (not candidate.has_selectors
                 or stored.selectors_key() != candidate.selectors_key())):
        for vmi_labels, ns_labels in _within_budget(_applicable_vmis(stored, view), impact,
                                                    deadline, clock):
            if candidate.applies_to(vmi_labels, ns_labels):
                continue  # counted above
            current = policies.winner(vmi_labels, ns_labels)
            if current is not None and current.name == name:
                impact.governs_now += 1
    return impact


def _within_budget(vmis: Iterator[tuple[Labels, Labels]], impact: Impact, deadline: float,
                   clock: Callable[[], float]) -> Iterator[tuple[Labels, Labels]]:
    """`vmis` until the deadline passes (read every CHECK_EVERY VMIs); then the impact is
    marked incomplete."""
    for number, found in enumerate(vmis):
        if number % CHECK_EVERY == CHECK_EVERY - 1 and clock() > deadline:
            impact.complete = False
            return
        yield found


def _measure_matches(impact: Impact, candidate: Policy, policies: PolicyIndex,
                     vmis: Iterator[tuple[Labels, Labels]]) -> None:
    key = precedence_key(candidate, policies.mode)
    name = candidate.name
    for vmi_labels, ns_labels in vmis:
        impact.matches += 1
        current = policies.winner(vmi_labels, ns_labels)
        rival = current
        if current is not None and current.name == name:  # its old version: who else?
            impact.governs_now += 1
            rival = next((policy for policy in policies.applicable(vmi_labels, ns_labels)
                          if policy.name != name), None)
        if rival is None or key < precedence_key(rival, policies.mode):
            impact.governs += 1
            source = current.name if current is not None else NO_POLICY
            impact.taken_from[source] = impact.taken_from.get(source, 0) + 1
        else:
            impact.kept_by[rival.name] = impact.kept_by.get(rival.name, 0) + 1


def vmis_to_read(candidate: Policy, view: ClusterView, limit: int) -> int:
    """The VMIs a measure of the candidate reads first: those of the namespaces its
    namespace selector matches, counted until there are more than `limit`."""
    if not candidate.has_selectors:
        return 0
    found = 0
    for namespace in view.namespaces_matching(candidate.namespace_selector):
        found += view.count_in(namespace)
        if found > limit:
            break
    return found


def _applicable_vmis(candidate: Policy, view: ClusterView) -> Iterator[tuple[Labels, Labels]]:
    pairs = candidate.vmi_selector.items()
    for namespace in view.namespaces_matching(candidate.namespace_selector):
        ns_labels = view.namespaces[namespace]
        for vmi_labels in view.vmis_in(namespace):
            if pairs <= vmi_labels.items():
                yield vmi_labels, ns_labels


def impact_warning(impact: Impact, *, name: str, update: bool) -> str:
    """One warning under the API server's length limit, starting `impact:`. The figures
    always fit: where the names of other policies would push them out, the names are cut
    short, then fewer are named."""
    least = "" if impact.complete else "at least "
    now = f"; governs {least}{impact.governs_now} now" if update else ""
    if not impact.matches:
        return f"impact: matches no VMI now{now}"
    if not impact.governs:
        head = (f"impact: matches {_vmis(impact.matches)} but governs none: " if impact.complete
                else f"impact: matches at least {_vmis(impact.matches)}; of those read, ")
        keepers = _by_count(impact.kept_by)
        if len(keepers) == 1 and impact.complete:
            return _fitted(head, lambda cut, most: f"{cut(keepers[0][0])} wins "
                           f"{'all ' if impact.matches > 1 else ''}{keepers[0][1]}", now)
        return _fitted(head, lambda cut, most: _listed(
            keepers, lambda policy, count: f"{cut(policy)} wins {count}", most), now)
    sources = _by_count(impact.taken_from)
    head = f"impact: would govern {least}{_vmis(impact.governs)} ("
    tail = f"); matches {least}{impact.matches}{now}"
    return _fitted(head, lambda cut, most: _listed(
        sources, lambda policy, count: _taken_from(policy, count, name, cut), most), tail)


Cut = Callable[[str], str]


def _fitted(head: str, middle: Callable[[Cut, int], str], tail: str) -> str:
    """`head + middle + tail` within the limit: the middle's names cut shorter, and fewer
    of them named, until it fits (head and tail hold the figures)."""
    for most in (2, 1, 0):
        for width in (253, 40, 20):
            text = head + middle(functools.partial(_cut, width=width), most) + tail
            if len(text) <= MAX_WARNING_LENGTH:
                return text
    return (head + tail)[:MAX_WARNING_LENGTH]


def _cut(name: str, width: int) -> str:
    return name if len(name) <= width else name[:width - 3] + "..."


def _by_count(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Most VMIs first, then by name: the same words whatever order the VMIs were read in."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _vmis(count: int) -> str:
    return f"{count} VMI" if count == 1 else f"{count} VMIs"


def _taken_from(policy: str, count: int, name: str, cut: Cut) -> str:
    if policy == NO_POLICY:
        return f"{count} by no policy"
    if policy == name:
        return f"{count} it governs already"
    return f"{count} now governed by {cut(policy)}"


def _listed(items: list[tuple[str, int]], say: Callable[[str, int], str], most: int) -> str:
    """The first `most` policies said in full, "no policy" always, the rest counted."""
    named = [item for item in items if item[0] != NO_POLICY]
    shown = [say(policy, count) for policy, count in named[:most]]
    rest = named[most:]
    if rest:
        others = "other policy" if len(rest) == 1 else "other policies"
        shown.append(f"{sum(count for _, count in rest)} by {len(rest)} {others}")
    shown += [say(policy, count) for policy, count in items if policy == NO_POLICY]
    return ", ".join(shown)
