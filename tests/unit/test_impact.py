"""The impact of a policy under review (issue 20): `measure_impact` against a plain scan,
each form of the `impact:` warning, `at least` when the CPU budget runs out (a fake clock),
and the API server's length limit."""

import gc
import itertools
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.admission.handlers import IMPACT_BUDGET_SECONDS
from app.policy import impact as impact_module
from app.policy.impact import ClusterView, Impact, impact_warning, measure_impact
from app.policy.model import Policy
from app.policy.precedence import PolicyIndex, Precedence
from tests.support.coverage_oracle import NO_POLICY, Labels, ScanImpact, VmiKey, impact_by_scan

BUDGET = 0.05


def constant_clock() -> Callable[[], float]:
    """A clock that never moves: the budget never runs out."""
    return lambda: 0.0


def clock_past_deadline_after(reads: int) -> Callable[[], float]:
    """0.0 for the first `reads` reads (the first fixes the deadline), then far past it."""
    counter = itertools.count()
    return lambda: 0.0 if next(counter) < reads else 1000.0


def measure(candidate: Policy, policies: list[Policy], vmis: dict[VmiKey, Labels],
            namespaces: dict[str, Labels], mode: Precedence = Precedence.DOCUMENTED,
            clock: Callable[[], float] | None = None) -> Impact:
    return measure_impact(candidate, PolicyIndex(mode, policies),
                          ClusterView.build(vmis.items(), namespaces), budget_seconds=BUDGET,
                          clock=clock or constant_clock())


def as_scan(impact: Impact) -> ScanImpact:
    return ScanImpact(impact.matches, impact.governs, Counter(impact.taken_from),
                      Counter(impact.kept_by), impact.governs_now)


# --- against the plain scan ------------------------------------------------------------------

KEYS = ("app", "tier", "env", "team")
VALUES = ("a", "b", "")
labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4)
selectors = st.tuples(labels, labels)
NAMESPACES = ("ns1", "ns2", "ns3")


@settings(max_examples=400, deadline=None)
@given(policies=st.lists(selectors, max_size=10),
       candidate=selectors,
       same_name_as=st.one_of(st.none(), st.integers(min_value=0, max_value=9)),
       vmis=st.lists(st.tuples(st.sampled_from((*NAMESPACES, "gone")), labels), max_size=40),
       namespaces=st.fixed_dictionaries({name: labels for name in NAMESPACES}),
       mode=st.sampled_from(list(Precedence)))
def test_the_impact_is_what_a_plain_scan_says(
        policies: list[tuple[dict[str, str], dict[str, str]]],
        candidate: tuple[dict[str, str], dict[str, str]], same_name_as: int | None,
        vmis: list[tuple[str, dict[str, str]]], namespaces: dict[str, dict[str, str]],
        mode: Precedence) -> None:
    """matches: the VMIs it applies to; governs: those where it beats every other current
    policy (its own stored version, of the same name, left out); taken_from: who governs
    them now; kept_by: who keeps the others; governs_now: what its stored version
    governs now, wherever that is (an UPDATE may move the policy to other VMIs)."""
    made = [Policy(name=f"p{i}", namespace_selector=ns, vmi_selector=vmi)
            for i, (ns, vmi) in enumerate(policies)]
    name = (f"p{same_name_as}" if same_name_as is not None and same_name_as < len(made)
            else "candidate")
    proposed = Policy(name=name, namespace_selector=candidate[0], vmi_selector=candidate[1])
    state = {(namespace, f"vmi-{i}"): vmi_labels
             for i, (namespace, vmi_labels) in enumerate(vmis)}
    impact = measure(proposed, made, state, namespaces, mode)
    assert impact.complete
    assert as_scan(impact) == impact_by_scan(proposed, made, state, namespaces, mode)
    assert impact.governs == sum(impact.taken_from.values())
    assert impact.matches == impact.governs + sum(impact.kept_by.values())


def test_no_policy_is_the_same_key_for_the_oracle_and_the_webhook() -> None:
    assert NO_POLICY == impact_module.NO_POLICY


@settings(max_examples=200, deadline=None)
@given(selector=labels,
       namespaces=st.dictionaries(st.sampled_from(("n1", "n2", "n3", "n4")), labels))
def test_the_view_finds_the_namespaces_a_plain_scan_finds(
        selector: dict[str, str], namespaces: dict[str, dict[str, str]]) -> None:
    view = ClusterView.build((), namespaces)
    assert sorted(view.namespaces_matching(selector)) == sorted(
        name for name, found in namespaces.items() if selector.items() <= found.items())


def test_an_update_that_moves_the_policy_still_says_what_it_governs_now() -> None:
    """The stored version governs the 5 web VMIs; the new one would match none of them:
    `governs 5 now`, not 0 (the VMIs it governs are not those the new version matches)."""
    stored = Policy("web", vmi_selector={"app": "web"})
    moved = Policy("web", vmi_selector={"app": "webx"})
    vmis = {("prod", f"web-{i}"): {"app": "web"} for i in range(5)}
    vmis[("prod", "webx-0")] = {"app": "webx"}
    impact = measure(moved, [stored], vmis, {"prod": {}})
    assert (impact.matches, impact.governs, impact.governs_now) == (1, 1, 5)
    assert impact_warning(impact, name="web", update=True) == \
        "impact: would govern 1 VMI (1 by no policy); matches 1; governs 5 now"


def test_an_update_to_no_selectors_says_what_the_stored_version_governs() -> None:
    """An invalid policy without selectors admitted by `--enforcement warn` matches no VMI,
    while its stored version governs 2."""
    stored = Policy("web", vmi_selector={"app": "web"})
    vmis = {("prod", "web-1"): {"app": "web"}, ("prod", "web-2"): {"app": "web"}}
    impact = measure(Policy("web", has_selectors=False), [stored], vmis, {"prod": {}})
    assert impact_warning(impact, name="web", update=True) == \
        "impact: matches no VMI now; governs 2 now"


# --- each form of the message ----------------------------------------------------------------

PROD = {"prod": {"env": "prod"}}


def web_state() -> tuple[list[Policy], dict[VmiKey, Labels]]:
    """150 VMIs labelled app=web in prod: 80 also team=web (team-web-policy's now), 40 with
    no other label (nobody's), 30 also tier=gold (gold-web-policy's, score 3)."""
    policies = [Policy("team-web-policy", {"env": "prod"}, {"team": "web"}),
                Policy("gold-web-policy", {"env": "prod"}, {"app": "web", "tier": "gold"})]
    vmis: dict[VmiKey, Labels] = {}
    vmis.update({("prod", f"team-{i}"): {"app": "web", "team": "web"} for i in range(80)})
    vmis.update({("prod", f"plain-{i}"): {"app": "web"} for i in range(40)})
    vmis.update({("prod", f"gold-{i}"): {"app": "web", "tier": "gold"} for i in range(30)})
    return policies, vmis


def test_a_policy_that_takes_vmis_says_from_whom_and_what_it_matches() -> None:
    """The README's first example, exactly: web-app-policy ([app, env]) wins the ties of
    score 2 against team-web-policy ([env, team]) and loses the gold VMIs (score 3)."""
    policies, vmis = web_state()
    impact = measure(Policy("web-app-policy", {"env": "prod"}, {"app": "web"}), policies,
                     vmis, PROD)
    assert impact_warning(impact, name="web-app-policy", update=False) == (
        "impact: would govern 120 VMIs (80 now governed by team-web-policy, 40 by no policy); "
        "matches 150")


def test_the_same_policy_under_kubevirt_precedence_loses_the_ties() -> None:
    """With `--precedence kubevirt` a tie goes to the name first: team-web-policy keeps its
    80 VMIs."""
    policies, vmis = web_state()
    impact = measure(Policy("web-app-policy", {"env": "prod"}, {"app": "web"}), policies,
                     vmis, PROD, Precedence.KUBEVIRT)
    assert impact_warning(impact, name="web-app-policy", update=False) == (
        "impact: would govern 40 VMIs (40 by no policy); matches 150")
    assert impact.kept_by == Counter({"team-web-policy": 80, "gold-web-policy": 30})


def test_a_policy_beaten_everywhere_names_who_wins_all() -> None:
    policies = [Policy("gold-tier-db-policy", {}, {"workload-type": "db", "tier": "gold"})]
    vmis = {("hpc", f"db-{i}"): {"workload-type": "db", "tier": "gold"} for i in range(12)}
    impact = measure(Policy("db-policy", {}, {"workload-type": "db"}), policies, vmis,
                     {"hpc": {}})
    assert impact_warning(impact, name="db-policy", update=False) == \
        "impact: matches 12 VMIs but governs none: gold-tier-db-policy wins all 12"


def test_one_vmi_beaten_is_not_all() -> None:
    policies = [Policy("gold", {}, {"app": "db", "tier": "gold"})]
    impact = measure(Policy("db", {}, {"app": "db"}), policies,
                     {("hpc", "db-1"): {"app": "db", "tier": "gold"}}, {"hpc": {}})
    assert impact_warning(impact, name="db", update=False) == \
        "impact: matches 1 VMI but governs none: gold wins 1"


def test_many_keepers_are_named_two_at_most_and_the_rest_counted() -> None:
    policies = [Policy(f"keeper-{i}", {}, {"app": "db", "tier": str(i)}) for i in range(4)]
    vmis = {("hpc", f"db-{i}-{n}"): {"app": "db", "tier": str(i)}
            for i in range(4) for n in range(4 - i)}  # 4, 3, 2 and 1 VMIs
    impact = measure(Policy("db", {}, {"app": "db"}), policies, vmis, {"hpc": {}})
    assert impact_warning(impact, name="db", update=False) == (
        "impact: matches 10 VMIs but governs none: keeper-0 wins 4, keeper-1 wins 3, "
        "3 by 2 other policies")


def test_keepers_of_as_many_vmis_are_named_in_name_order() -> None:
    """As the sources are: the message does not depend on the order the VMIs are read in
    (in a live cluster, the order their events came)."""
    policies = [Policy("zeta", {}, {"app": "db", "tier": "z"}),
                Policy("alpha", {}, {"app": "db", "tier": "a"})]
    for order in (["z", "a"], ["a", "z"]):
        vmis = {("hpc", f"db-{tier}"): {"app": "db", "tier": tier} for tier in order}
        impact = measure(Policy("db", {}, {"app": "db"}), policies, vmis, {"hpc": {}})
        assert impact_warning(impact, name="db", update=False) == \
            "impact: matches 2 VMIs but governs none: alpha wins 1, zeta wins 1"


def test_many_sources_are_named_two_at_most_and_the_rest_counted() -> None:
    policies = [Policy(f"weak-{i}", {}, {"tier": str(i)}) for i in range(4)]
    vmis = {("hpc", f"db-{i}-{n}"): {"app": "db", "tier": str(i)}
            for i in range(4) for n in range(4 - i)}
    vmis[("hpc", "alone")] = {"app": "db", "tier": "none"}
    impact = measure(Policy("db", {"x": "y"}, {"app": "db"}), policies, vmis,
                     {"hpc": {"x": "y"}})
    # two named would take the message past 119 characters: one is, the rest are counted,
    # and the VMIs no policy governs are always said apart
    assert impact_warning(impact, name="db", update=False) == (
        "impact: would govern 11 VMIs (4 now governed by weak-0, 6 by 3 other policies, "
        "1 by no policy); matches 11")


def test_a_policy_that_matches_nothing() -> None:
    policies, vmis = web_state()
    impact = measure(Policy("nothing", {"env": "staging"}, {}), policies, vmis, PROD)
    assert impact_warning(impact, name="nothing", update=False) == "impact: matches no VMI now"
    assert impact == Impact()


def test_an_update_that_changes_nothing_governs_what_it_governs_already() -> None:
    policies, vmis = web_state()
    stored = Policy("web-app-policy", {"env": "prod"}, {"app": "web"})
    impact = measure(stored, [*policies, stored], vmis, PROD)
    assert impact_warning(impact, name="web-app-policy", update=True) == (
        "impact: would govern 120 VMIs (120 it governs already); matches 150; governs 120 now")
    assert impact_warning(impact, name="web-app-policy", update=False) == (
        "impact: would govern 120 VMIs (120 it governs already); matches 150")


def test_an_update_that_loses_ground_says_both() -> None:
    """The stored version (score 2) governs the 80 team VMIs; made broader (score 1) it
    loses them to team-web-policy and takes the 40 plain ones only."""
    policies, vmis = web_state()
    stored = Policy("a-web", {"env": "prod"}, {"team": "web"})
    broader = Policy("a-web", {}, {"app": "web"})
    impact = measure(broader, [*policies, stored], vmis, PROD)
    assert impact_warning(impact, name="a-web", update=True) == (
        "impact: would govern 40 VMIs (40 by no policy); matches 150; governs 80 now")


def test_a_vmi_whose_namespace_is_unknown_is_not_counted() -> None:
    impact = measure(Policy("all", {}, {}), [], {("gone", "vmi"): {}, ("ns", "vmi"): {}},
                     {"ns": {}})
    assert (impact.matches, impact.governs) == (1, 1)


# --- the CPU budget: `at least` --------------------------------------------------------------

MANY = 500


def many_vmis() -> dict[VmiKey, Labels]:
    return {("prod", f"web-{i}"): {"app": "web"} for i in range(MANY)}


def test_the_handler_s_budget_is_50_ms_of_cpu() -> None:
    assert IMPACT_BUDGET_SECONDS == 0.050


def test_a_budget_never_spent_counts_everything() -> None:
    impact = measure(Policy("web", {}, {"app": "web"}), [], many_vmis(), {"prod": {}})
    assert impact.complete
    assert impact_warning(impact, name="web", update=False) == \
        f"impact: would govern {MANY} VMIs ({MANY} by no policy); matches {MANY}"


def test_a_spent_budget_stops_and_says_at_least() -> None:
    impact = measure(Policy("web", {}, {"app": "web"}), [], many_vmis(), {"prod": {}},
                     clock=clock_past_deadline_after(1))
    counted = impact.matches
    assert not impact.complete
    assert 0 < counted < MANY
    assert impact_warning(impact, name="web", update=False) == \
        f"impact: would govern at least {counted} VMIs ({counted} by no policy); " \
        f"matches at least {counted}"


def test_a_budget_spent_later_counts_more_and_still_says_at_least() -> None:
    early = measure(Policy("web", {}, {"app": "web"}), [], many_vmis(), {"prod": {}},
                    clock=clock_past_deadline_after(1))
    later = measure(Policy("web", {}, {"app": "web"}), [], many_vmis(), {"prod": {}},
                    clock=clock_past_deadline_after(4))
    assert early.matches < later.matches < MANY
    assert not later.complete
    assert "at least" in impact_warning(later, name="web", update=False)


def test_a_spent_budget_on_update_says_at_least_what_it_governs_now() -> None:
    stored = Policy("web", {}, {"app": "web"})
    impact = measure(stored, [stored], many_vmis(), {"prod": {}},
                     clock=clock_past_deadline_after(1))
    counted = impact.matches
    assert not impact.complete
    assert impact_warning(impact, name="web", update=True) == (
        f"impact: would govern at least {counted} VMIs ({counted} it governs already); "
        f"matches at least {counted}; governs at least {counted} now")


def test_a_spent_budget_while_beaten_says_at_least() -> None:
    policies = [Policy("gold", {}, {"app": "web", "tier": "gold"})]
    vmis = {("prod", f"web-{i}"): {"app": "web", "tier": "gold"} for i in range(MANY)}
    impact = measure(Policy("web", {}, {"app": "web"}), policies, vmis, {"prod": {}},
                     clock=clock_past_deadline_after(1))
    assert not impact.complete
    assert impact_warning(impact, name="web", update=False) == (
        f"impact: matches at least {impact.matches} VMIs; of those read, gold wins "
        f"{impact.matches}")


@settings(max_examples=100, deadline=None)
@given(policies=st.lists(selectors, max_size=6),
       candidate=selectors,
       vmis=st.lists(st.tuples(st.sampled_from(NAMESPACES), labels), min_size=64,
                     max_size=200),
       namespaces=st.fixed_dictionaries({name: labels for name in NAMESPACES}),
       reads=st.integers(min_value=1, max_value=6))
def test_when_the_budget_runs_out_every_count_is_a_lower_bound(
        policies: list[tuple[dict[str, str], dict[str, str]]],
        candidate: tuple[dict[str, str], dict[str, str]],
        vmis: list[tuple[str, dict[str, str]]], namespaces: dict[str, dict[str, str]],
        reads: int) -> None:
    made = [Policy(name=f"p{i}", namespace_selector=ns, vmi_selector=vmi)
            for i, (ns, vmi) in enumerate(policies)]
    proposed = Policy("candidate", candidate[0], candidate[1])
    state = {(namespace, f"vmi-{i}"): vmi_labels
             for i, (namespace, vmi_labels) in enumerate(vmis)}
    impact = measure(proposed, made, state, namespaces, clock=clock_past_deadline_after(reads))
    whole = impact_by_scan(proposed, made, state, namespaces, Precedence.DOCUMENTED)
    assert impact.matches <= whole.matches
    assert impact.governs <= whole.governs
    assert not (Counter(impact.taken_from) - whole.taken_from)
    assert not (Counter(impact.kept_by) - whole.kept_by)
    if impact.complete:
        assert as_scan(impact) == whole
    else:
        assert impact.matches < whole.matches
        assert "at least" in impact_warning(impact, name="candidate", update=False)


# --- the length limit ------------------------------------------------------------------------

LONG = "a" * 200 + "." + "b" * 52  # 253 characters: the longest name a policy can have
names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=253)


@settings(max_examples=300, deadline=None)
@given(name=names,
       sources=st.dictionaries(st.one_of(st.just(NO_POLICY), names),
                               st.integers(min_value=1, max_value=10**6), max_size=12),
       keepers=st.dictionaries(names, st.integers(min_value=1, max_value=10**6), max_size=12),
       governs_now=st.integers(min_value=0, max_value=10**6),
       complete=st.booleans(), update=st.booleans())
def test_every_message_is_under_120_characters(
        name: str, sources: dict[str, int], keepers: dict[str, int], governs_now: int,
        complete: bool, update: bool) -> None:
    governs = sum(sources.values())
    impact = Impact(matches=governs + sum(keepers.values()), governs=governs,
                    taken_from=Counter(sources), kept_by=Counter(keepers),
                    governs_now=governs_now, complete=complete)
    message = impact_warning(impact, name=name, update=update)
    assert message.startswith("impact: ")
    assert len(message) < 120


@pytest.mark.parametrize("update", [False, True])
def test_long_names_and_many_rivals_stay_under_120_characters(update: bool) -> None:
    """Policies of 253-character names, 30 of them governing a VMI each now, and 30 that
    beat the candidate somewhere."""
    weak = [Policy(f"{LONG[:240]}-weak-{i}", {}, {"n": str(i)}) for i in range(30)]
    strong = [Policy(f"{LONG[:240]}-strong-{i}", {}, {"app": "web", "m": str(i), "s": "x"})
              for i in range(30)]
    vmis: dict[VmiKey, Labels] = {("prod", f"w{i}"): {"app": "web", "n": str(i)}
                                  for i in range(30)}
    vmis.update({("prod", f"s{i}"): {"app": "web", "m": str(i), "s": "x"} for i in range(30)})
    stored = Policy(LONG, {}, {"app": "web"})
    for candidate, rivals in ((stored, [*weak, *strong]),  # 30 sources, 30 keepers
                              (stored, [*weak, *strong, stored]),
                              (Policy(LONG, {}, {"app": "web", "s": "x"}), strong)):
        impact = measure(candidate, rivals, vmis, {"prod": {}})
        assert impact.matches
        message = impact_warning(impact, name=LONG, update=update)
        assert message.startswith("impact: ")
        assert len(message) < 120, message


# --- reported, not fixed ---------------------------------------------------------------------

def test_a_long_name_does_not_push_out_what_an_update_governs_now() -> None:
    source = "team-" + "x" * 80
    impact = Impact(matches=150, governs=120, taken_from=Counter({source: 80, NO_POLICY: 40}),
                    governs_now=95)
    message = impact_warning(impact, name="web-app-policy", update=True)
    assert len(message) < 120
    assert message.endswith("; governs 95 now")


def test_a_spent_budget_does_not_claim_it_governs_none() -> None:
    """The first VMIs read are gold ones the candidate loses; the rest it would win."""
    policies = [Policy("gold", {}, {"app": "web", "tier": "gold"})]
    vmis: dict[VmiKey, Labels] = {("prod", f"gold-{i}"): {"app": "web", "tier": "gold"}
                                  for i in range(200)}
    vmis.update({("prod", f"web-{i}"): {"app": "web"} for i in range(200)})
    candidate = Policy("web", {}, {"app": "web"})
    impact = measure(candidate, policies, vmis, {"prod": {}},
                     clock=clock_past_deadline_after(1))
    assert not impact.complete
    assert impact_by_scan(candidate, policies, vmis, {"prod": {}},
                          Precedence.DOCUMENTED).governs == 200
    assert "governs none" not in impact_warning(impact, name="web", update=False)


def test_a_view_is_made_of_what_the_garbage_collector_does_not_track() -> None:
    """A young collection after a keeper's pass scans every tracked object the pass made,
    in one step holding the GIL: the view's indexes are dicts of strings and ranges (were
    they tuples, 10,000 namespaces would make 30,000 objects to scan)."""
    namespaces = {f"ns-{i}": {"env": "prod", "team": f"t{i % 3}"} for i in range(20)}
    vmis = {(f"ns-{i % 20}", f"vm-{i}"): {"app": f"a{i % 4}"} for i in range(100)}
    view = ClusterView.build(vmis.items(), namespaces)
    assert not gc.is_tracked(view.spans) and not gc.is_tracked(view.by_pair)
    assert sum(map(view.count_in, namespaces)) == 100
    assert sorted(view.namespaces_matching({"team": "t1", "env": "prod"})) == sorted(
        name for name, labels in namespaces.items() if labels["team"] == "t1")
