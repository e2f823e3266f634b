"""What each policy governs (contract §3, issue 20): the indexed pass against a plain scan."""

import gc
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.policy.coverage import Coverage, Status, coverage
from app.policy.model import Policy
from app.policy.precedence import PolicyIndex, Precedence
from app.serving.coverage_keeper import CoverageFigures
from tests.support.coverage_oracle import coverage_by_scan, decisions_by_scan


def as_shares(report: Coverage) -> dict[str, dict]:
    return {policy.name: {"governs": policy.governs, "matches": policy.matches,
                          "tieBreaks": policy.tie_breaks, "beatenBy": policy.beaten_by}
            for policy in report.policies}


KEYS = ("app", "tier", "env", "team")
VALUES = ("a", "b", "")
labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4)
policy_strategy = st.builds(
    lambda ns, vmi, has: (ns, vmi, has), labels, labels,
    st.sampled_from([True, True, True, True, False]))


@settings(max_examples=300, deadline=None)
@given(policies=st.lists(policy_strategy, max_size=12),
       vmis=st.lists(st.tuples(st.sampled_from(("ns1", "ns2", "gone")), labels), max_size=30),
       namespaces=st.fixed_dictionaries({"ns1": labels, "ns2": labels}),
       mode=st.sampled_from(list(Precedence)))
def test_the_indexed_pass_counts_what_a_plain_scan_counts(
        policies: list[tuple[dict[str, str], dict[str, str], bool]],
        vmis: list[tuple[str, dict[str, str]]], namespaces: dict[str, dict[str, str]],
        mode: Precedence) -> None:
    made = [Policy(name=f"p{i}", namespace_selector=ns, vmi_selector=vmi, has_selectors=has)
            for i, (ns, vmi, has) in enumerate(policies)]
    state = {(namespace, f"vmi-{i}"): vmi_labels for i, (namespace, vmi_labels)
             in enumerate(vmis)}
    report = coverage(PolicyIndex(mode, made), state.items(), namespaces, per_vmi=True)
    expected = coverage_by_scan(made, state, namespaces, mode)
    assert as_shares(report) == expected
    assert report.vmi_count == len(state)
    assert report.without_namespace == sum(namespace == "gone" for namespace, _ in state)
    for share in report.policies:
        counts = expected[share.name]
        wanted = (Status.NO_SELECTORS if not next(p for p in made
                                                  if p.name == share.name).has_selectors
                  else Status.ACTIVE if counts["governs"] else
                  Status.SHADOWED if counts["matches"] else Status.UNUSED)
        assert share.status is wanted
    assert {(vmi.namespace, vmi.name): (vmi.winner, vmi.runner_up, vmi.tie_break)
            for vmi in report.vmis} == decisions_by_scan(made, state, namespaces, mode)
    decided = [vmi for vmi in report.vmis if vmi.winner is not None]
    assert len(decided) == sum(counts["governs"] for counts in expected.values())
    assert sum(vmi.tie_break for vmi in report.vmis) == report.tie_broken


def policy(name: str, ns: dict[str, str], vmi: dict[str, str]) -> Policy:
    return Policy(name=name, namespace_selector=ns, vmi_selector=vmi)


@pytest.mark.parametrize("mode", list(Precedence))
def test_each_status_and_the_runner_up(mode: Precedence) -> None:
    namespaces = {"prod": {"env": "prod"}}
    vmis = {("prod", "web-1"): {"app": "web", "team": "web"},
            ("prod", "web-2"): {"app": "web"},
            ("prod", "db-1"): {"app": "db", "tier": "gold"}}
    policies = [policy("web-app", {"env": "prod"}, {"app": "web"}),
                policy("web-team", {"env": "prod"}, {"team": "web"}),
                policy("db-gold", {"env": "prod"}, {"app": "db", "tier": "gold"}),
                policy("staging", {"env": "staging"}, {}),
                Policy(name="no-selectors", has_selectors=False)]
    report = coverage(PolicyIndex(mode, policies), vmis.items(), namespaces, per_vmi=True)
    shares = {share.name: share for share in report.policies}
    assert [share.name for share in report.policies] == sorted(shares)
    assert shares["web-app"].status is Status.ACTIVE
    assert (shares["web-app"].governs, shares["web-app"].matches) == (2, 2)
    assert shares["web-app"].tie_breaks == 1  # web-1: web-team has the same score 2
    assert shares["web-team"].status is Status.SHADOWED
    assert shares["web-team"].beaten_by == Counter({"web-app": 1})
    assert shares["db-gold"].tie_breaks == 0
    assert shares["staging"].status is Status.UNUSED
    assert shares["no-selectors"].status is Status.NO_SELECTORS
    decisions = {(vmi.namespace, vmi.name): vmi for vmi in report.vmis}
    assert list(decisions) == sorted(vmis)
    web_1 = decisions[("prod", "web-1")]
    assert (web_1.winner, web_1.runner_up, web_1.tie_break) == ("web-app", "web-team", True)
    assert decisions[("prod", "web-2")].runner_up is None
    assert report.tie_broken == 1


def test_the_keepers_figures_are_made_of_what_the_garbage_collector_does_not_track() -> None:
    """What the keeper keeps of a pass: dicts of strings and integers (were they tuples, a
    young collection would scan 10,000 of them in one step holding the GIL)."""
    policies = PolicyIndex(Precedence.DOCUMENTED, [
        Policy(name=f"p{i}", vmi_selector={"app": f"a{i}"}) for i in range(5)])
    report = coverage(policies, [(("ns", f"vm-{i}"), {"app": f"a{i % 3}"}) for i in range(9)],
                      {"ns": {}})
    figures = CoverageFigures.of(report)
    assert figures.governed == {"p0": 3, "p1": 3, "p2": 3, "p3": 0, "p4": 0}
    assert figures.matched == figures.governed
    assert figures.statuses["unused"] == 2
    assert not any(map(gc.is_tracked, (figures.statuses, figures.governed, figures.matched)))
