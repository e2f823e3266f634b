"""Which policy applies to a VMI, in both precedence modes (contract §3)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.policy.model import Policy
from app.policy.precedence import PolicyIndex, Precedence, precedence_key, winner_by_scan

DOCUMENTED, KUBEVIRT = Precedence.DOCUMENTED, Precedence.KUBEVIRT


def policy(name: str, ns: dict[str, str] | None = None, vmi: dict[str, str] | None = None,
           *, has_selectors: bool = True) -> Policy:
    return Policy(name=name, namespace_selector=ns or {}, vmi_selector=vmi or {},
                  has_selectors=has_selectors)


def winner(policies: list[Policy], vmi: dict[str, str], ns: dict[str, str],
           mode: Precedence = DOCUMENTED) -> str | None:
    """The index's answer, checked against the plain scan every time."""
    index = PolicyIndex(mode, policies)
    chosen = index.winner(vmi, ns)
    scanned = winner_by_scan(policies, vmi, ns, mode)
    assert chosen == scanned
    return chosen.name if chosen else None


# The reference text's example: namespace labels hpc-workloads: "True", xyz-workloads-type: "";
# VMI labels workload-type: db, operating-system: "".
EXAMPLE = policy("my-awesome-policy",
                 {"hpc-workloads": "True", "xyz-workloads-type": ""},
                 {"workload-type": "db", "operating-system": ""})
EXAMPLE_NS = {"hpc-workloads": "True", "xyz-workloads-type": ""}
EXAMPLE_VMI = {"workload-type": "db", "operating-system": ""}


@pytest.mark.parametrize("mode", list(Precedence))
class TestReferenceText:
    def test_all_labels_on_the_vmis_must_match_the_policy(self, mode: Precedence) -> None:
        """"For the policy to apply ... all labels ... must match the labels in the policy.\""""
        assert winner([EXAMPLE], EXAMPLE_VMI, EXAMPLE_NS, mode) == "my-awesome-policy"
        assert winner([EXAMPLE], {**EXAMPLE_VMI, "extra": "x"}, EXAMPLE_NS, mode) == (
            "my-awesome-policy"
        )
        for missing in EXAMPLE_VMI:
            vmi = {k: v for k, v in EXAMPLE_VMI.items() if k != missing}
            assert winner([EXAMPLE], vmi, EXAMPLE_NS, mode) is None
        for missing in EXAMPLE_NS:
            ns = {k: v for k, v in EXAMPLE_NS.items() if k != missing}
            assert winner([EXAMPLE], EXAMPLE_VMI, ns, mode) is None

    def test_label_values_must_be_equal(self, mode: Precedence) -> None:
        assert winner([EXAMPLE], {**EXAMPLE_VMI, "workload-type": "web"}, EXAMPLE_NS, mode) is None
        # "True" is not "true": values compare exactly.
        ns = {**EXAMPLE_NS, "hpc-workloads": "true"}
        assert winner([EXAMPLE], EXAMPLE_VMI, ns, mode) is None

    def test_namespace_selector_reads_namespace_labels_only(self, mode: Precedence) -> None:
        vmi_has_ns_labels = {**EXAMPLE_VMI, **EXAMPLE_NS}
        assert winner([EXAMPLE], vmi_has_ns_labels, {}, mode) is None

    def test_highest_number_of_matching_labels_takes_precedence(self, mode: Precedence) -> None:
        """"the policy with the highest number of matching labels takes precedence\""""
        broader = policy("a-broader", {"hpc-workloads": "True"}, {"workload-type": "db"})
        assert winner([broader, EXAMPLE], EXAMPLE_VMI, EXAMPLE_NS, mode) == "my-awesome-policy"

    def test_policy_without_selectors_applies_to_nothing(self, mode: Precedence) -> None:
        assert winner([policy("none", has_selectors=False)], EXAMPLE_VMI, EXAMPLE_NS,
                      mode) is None

    def test_empty_selectors_match_every_vmi_with_score_zero(self, mode: Precedence) -> None:
        everything = policy("everything")
        assert winner([everything], {}, {}, mode) == "everything"
        assert winner([everything, EXAMPLE], EXAMPLE_VMI, EXAMPLE_NS, mode) == (
            "my-awesome-policy"
        )

    def test_empty_value_matches_only_an_empty_label(self, mode: Precedence) -> None:
        empty = policy("empty", vmi={"operating-system": ""})
        assert winner([empty], {"operating-system": ""}, {}, mode) == "empty"
        assert winner([empty], {"operating-system": "fedora"}, {}, mode) is None
        assert winner([empty], {}, {}, mode) is None

    def test_same_key_in_both_selectors_counts_twice(self, mode: Precedence) -> None:
        both = policy("both", {"team": "a"}, {"team": "a"})
        single = policy("a-single", vmi={"team": "a", "app": "x"})
        assert winner([both], {"team": "a"}, {"team": "a"}, mode) == "both"
        assert winner([both], {"team": "a"}, {"team": "b"}, mode) is None
        assert PolicyIndex(mode, [both]).get("both").score == 2
        # Score 2 each: documented compares keys [team, team] vs [app, team]; kubevirt
        # prefers more VMI labels (2 vs 1).
        expected = "a-single"
        assert winner([both, single], {"team": "a", "app": "x"}, {"team": "a"}, mode) == expected


class TestDocumentedTies:
    """"sorted by lexicographic order of the matching labels keys, and the first one ... \""""

    def test_keys_decide_before_names(self) -> None:
        zz = policy("zz-keys-sort-first", {"env": "prod"}, {"app": "web"})  # [app, env]
        aa = policy("aa-keys-sort-last", {"env": "prod"}, {"team": "web"})  # [env, team]
        vmi, ns = {"app": "web", "team": "web"}, {"env": "prod"}
        assert winner([aa, zz], vmi, ns, DOCUMENTED) == "zz-keys-sort-first"
        assert winner([zz, aa], vmi, ns, DOCUMENTED) == "zz-keys-sort-first"

    def test_keys_compared_key_by_key_not_joined(self) -> None:
        # ["a", "z"] sorts before ["ab", "b"] key by key; joined strings "az" > "abb".
        first = policy("second-name", vmi={"a": "1", "z": "1"})
        second = policy("first-name", vmi={"ab": "1", "b": "1"})
        labels = {"a": "1", "z": "1", "ab": "1", "b": "1"}
        assert winner([first, second], labels, {}, DOCUMENTED) == "second-name"

    def test_keys_from_both_selectors_sort_together(self) -> None:
        ns_key = policy("z-ns", {"a": "1"}, {"m": "1"})  # [a, m]
        vmi_key = policy("a-vmi", {}, {"b": "1", "m": "1"})  # [b, m]
        assert winner([ns_key, vmi_key], {"b": "1", "m": "1"}, {"a": "1"}, DOCUMENTED) == "z-ns"

    @pytest.mark.parametrize("order", [0, 1])
    def test_equal_keys_fall_back_to_name(self, order: int) -> None:
        policies = [policy("bbb", vmi={"app": "web"}), policy("aaa", vmi={"app": "web"})]
        if order:
            policies.reverse()
        assert winner(policies, {"app": "web"}, {}, DOCUMENTED) == "aaa"


class TestKubeVirtTies:
    """KubeVirt's own cases ("matching and precedence" in migration_test.go)."""

    @pytest.mark.parametrize(
        ("expected", "infos"),
        [
            ("one", [("one", 1, 4)]),
            ("two", [("one", 1, 4), ("two", 4, 2)]),
            ("aa", [("aa", 2, 2), ("zz", 2, 2)]),
            ("aa", [("zz", 2, 2), ("aa", 2, 2)]),
        ],
        ids=["only-one", "most-detailed", "same-level-first-name-1", "same-level-first-name-2"],
    )
    def test_kubevirt_table(self, expected: str, infos: list[tuple[str, int, int]]) -> None:
        vmi: dict[str, str] = {}
        ns: dict[str, str] = {}
        policies = []
        for name, vmi_count, ns_count in infos:
            vmi_selector = {f"{name}-key-{i}": f"{name}-value-{i}" for i in range(vmi_count)}
            ns_selector = {f"{name}-ns-key-{i}": f"{name}-ns-value-{i}" for i in range(ns_count)}
            vmi.update(vmi_selector)
            ns.update(ns_selector)
            policies.append(policy(name, ns_selector, vmi_selector))
        assert winner(policies, vmi, ns, KUBEVIRT) == expected

    def test_one_non_fitting_label_does_not_match(self) -> None:
        vmi = {f"k{i}": "v" for i in range(4)}
        ns = {f"n{i}": "v" for i in range(3)}
        wrong = policy("p", ns, {**vmi, "k0": "XYZ"})
        assert winner([wrong], vmi, ns, KUBEVIRT) is None

    def test_no_policies(self) -> None:
        assert winner([], {"a": "b"}, {"c": "d"}, KUBEVIRT) is None

    @pytest.mark.parametrize("count", [1, 2, 5])
    def test_vmi_labels_take_precedence_over_namespace_labels(self, count: int) -> None:
        by_ns = policy("a-ns", {f"n{i}": "v" for i in range(count)})
        by_vmi = policy("z-vmi", {}, {f"k{i}": "v" for i in range(count)})
        vmi = {f"k{i}": "v" for i in range(count)}
        ns = {f"n{i}": "v" for i in range(count)}
        assert winner([by_ns, by_vmi], vmi, ns, KUBEVIRT) == "z-vmi"

    def test_modes_disagree_where_documented_uses_keys(self) -> None:
        web_app = policy("web-app-policy", {"env": "prod"}, {"app": "web"})
        team_web = policy("team-web-policy", {"env": "prod"}, {"team": "web"})
        vmi, ns = {"app": "web", "team": "web"}, {"env": "prod"}
        assert winner([web_app, team_web], vmi, ns, DOCUMENTED) == "web-app-policy"
        assert winner([web_app, team_web], vmi, ns, KUBEVIRT) == "team-web-policy"


class TestIndex:
    def test_put_replaces_and_remove_forgets(self) -> None:
        index = PolicyIndex(DOCUMENTED, [policy("p", vmi={"app": "web"})])
        assert index.winner({"app": "web"}, {}).name == "p"
        index.put(policy("p", vmi={"app": "db"}))
        assert index.winner({"app": "web"}, {}) is None
        assert index.winner({"app": "db"}, {}).name == "p"
        index.remove("p")
        assert index.winner({"app": "db"}, {}) is None
        assert len(index) == 0
        index.remove("never-there")

    def test_a_removal_leaves_the_remaining_scores_searched(self) -> None:
        """A lookup skips the buckets under a pair whose highest score cannot beat the best
        match so far; after the highest-scoring policy there goes, the next one's score is
        still searched, and here wins the tie on keys (app, env, tier before env, os, ...)."""
        index = PolicyIndex(DOCUMENTED, [
            policy("a", {"env": "prod"}, {"app": "x", "tier": "1", "zone": "z"}),
            policy("b", {"env": "prod"}, {"app": "x", "tier": "1"}),
            policy("c", {"env": "prod"}, {"os": "l", "release": "r"}),
            policy("d", {"env": "test"}, {"zone": "z"}),  # so that a and b share an anchor
        ])
        vmi, ns = {"app": "x", "tier": "1", "os": "l", "release": "r"}, {"env": "prod"}
        assert index.winner({**vmi, "zone": "z"}, ns).name == "a"
        index.remove("a")
        assert index.winner({**vmi, "zone": "z"}, ns).name == "b"
        assert index.winner(vmi, ns).name == "b"
        assert [p.name for p in index.applicable(vmi, ns)] == ["b", "c"]

    def test_applicable_lists_winner_first(self) -> None:
        index = PolicyIndex(DOCUMENTED, [policy("low", vmi={"a": "1"}),
                                         policy("high", vmi={"a": "1", "b": "1"}),
                                         policy("all")])
        names = [p.name for p in index.applicable({"a": "1", "b": "1"}, {})]
        assert names == ["high", "low", "all"]

    def test_same_selectors(self) -> None:
        index = PolicyIndex(DOCUMENTED, [policy("a", {"x": "1"}, {"y": "2"}),
                                         policy("b", {"x": "1"}, {"y": "2"}),
                                         policy("c", {"y": "2"}, {"x": "1"})])
        assert index.with_same_selectors(policy("new", {"x": "1"}, {"y": "2"})) == ["a", "b"]
        assert index.with_same_selectors(policy("a", {"x": "1"}, {"y": "2"})) == ["b"]
        assert index.with_same_selectors(policy("n", {"y": "2"}, {"x": "1"})) == ["c"]


# A small alphabet so that random policies and VMIs overlap often.
_keys = st.sampled_from(["a", "b", "ab", "team", "app", "x/y", "z"])
_values = st.sampled_from(["", "1", "2", "web"])
_labels = st.dictionaries(_keys, _values, max_size=5)
_policy = st.builds(
    lambda name, ns, vmi, has: policy(name, ns, vmi, has_selectors=has),
    st.text("abcdef", min_size=1, max_size=4),
    st.dictionaries(_keys, _values, max_size=3),
    st.dictionaries(_keys, _values, max_size=3),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    policies=st.lists(_policy, max_size=12, unique_by=lambda p: p.name),
    vmi=_labels,
    ns=_labels,
    mode=st.sampled_from(list(Precedence)),
)
def test_index_agrees_with_plain_scan(policies: list[Policy], vmi: dict[str, str],
                                      ns: dict[str, str], mode: Precedence) -> None:
    index = PolicyIndex(mode, policies)
    expected = winner_by_scan(policies, vmi, ns, mode)
    assert index.winner(vmi, ns) == expected
    applicable = [p for p in policies if p.applies_to(vmi, ns)]
    applicable.sort(key=lambda p: precedence_key(p, mode))
    assert index.applicable(vmi, ns) == applicable


@settings(max_examples=200, deadline=None)
@given(
    policies=st.lists(_policy, min_size=1, max_size=10, unique_by=lambda p: p.name),
    removed=st.integers(min_value=0, max_value=9),
    vmi=_labels,
    ns=_labels,
)
def test_index_after_removal_agrees_with_plain_scan(
    policies: list[Policy], removed: int, vmi: dict[str, str], ns: dict[str, str]
) -> None:
    index = PolicyIndex(DOCUMENTED, policies)
    gone = policies[removed % len(policies)]
    index.remove(gone.name)
    rest = [p for p in policies if p.name != gone.name]
    assert index.winner(vmi, ns) == winner_by_scan(rest, vmi, ns, DOCUMENTED)


@settings(max_examples=200, deadline=None)
@given(
    policies=st.lists(_policy, min_size=1, max_size=12, unique_by=lambda p: p.name),
    replacements=st.lists(_policy, max_size=4),
    vmi=_labels,
    ns=_labels,
    mode=st.sampled_from(list(Precedence)),
)
def test_index_built_one_put_at_a_time_agrees_with_plain_scan(
    policies: list[Policy], replacements: list[Policy], vmi: dict[str, str],
    ns: dict[str, str], mode: Precedence,
) -> None:
    """Anchors chosen from partial counts, and policies replaced, still find every match."""
    index = PolicyIndex(mode)
    current = {}
    for each in [*policies, *replacements]:
        index.put(each)
        current[each.name] = each
    assert index.winner(vmi, ns) == winner_by_scan(current.values(), vmi, ns, mode)
    assert {p.name for p in index.applicable(vmi, ns)} == {
        p.name for p in current.values() if p.applies_to(vmi, ns)}


_tiny = st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"]), max_size=2)
_operation = st.tuples(
    st.sampled_from(["put", "put", "remove"]),
    st.builds(lambda name, ns, vmi: policy(name, ns, vmi),
              st.sampled_from(list("abcdefgh")), _tiny, _tiny),
)


@settings(max_examples=300, deadline=None)
@given(operations=st.lists(_operation, max_size=30), vmi=_tiny, ns=_tiny,
       mode=st.sampled_from(list(Precedence)))
def test_index_with_many_equal_selectors_agrees_with_plain_scan(
    operations: list[tuple[str, Policy]], vmi: dict[str, str], ns: dict[str, str],
    mode: Precedence,
) -> None:
    """Few distinct selectors, so groups of equal selectors and ties form, change leaders
    and empty out as policies are put, replaced and removed in any order."""
    index = PolicyIndex(mode)
    current: dict[str, Policy] = {}
    for operation, each in operations:
        if operation == "put":
            index.put(each)
            current[each.name] = each
        else:
            index.remove(each.name)
            current.pop(each.name, None)
    assert index.winner(vmi, ns) == winner_by_scan(current.values(), vmi, ns, mode)
    expected = sorted((p for p in current.values() if p.applies_to(vmi, ns)),
                      key=lambda p: precedence_key(p, mode))
    assert index.applicable(vmi, ns) == expected
    for each in current.values():
        assert index.with_same_selectors(each) == sorted(
            other.name for other in current.values()
            if other.name != each.name and other.selectors_key() == each.selectors_key())


def test_a_crowded_anchor_finds_the_first_in_precedence() -> None:
    """10,000 policies whose every pair is shared by thousands: the right one still wins
    (the benchmark shows that the lookup does not grow with the crowd)."""
    crowd = [policy(f"p{i:05}", {"env": "prod"}, {"tier": str(i % 2)}) for i in range(10_000)]
    crowd += [policy(f"q{i:05}", {"env": "prod"}, {"tier": str(i % 2), "app": f"a{i}"})
              for i in range(10_000)]
    index = PolicyIndex(DOCUMENTED, crowd)
    assert index.winner({"tier": "1"}, {"env": "prod"}).name == "p00001"
    assert index.winner({"tier": "1", "app": "a7"}, {"env": "prod"}).name == "q00007"
    assert index.winner({"tier": "1", "app": "a8"}, {"env": "prod"}).name == "p00001"
    assert index.winner({"tier": "1"}, {"env": "test"}) is None
