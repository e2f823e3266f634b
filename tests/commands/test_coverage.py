"""`migration-policy-webhook coverage` and `kubectl migration-policy coverage` (issue 20):
on the sample state and on generated directory states, every figure checked against a
plain scan (tests/support/coverage_oracle.py); the table, `-o json|yaml`, `--vmis`,
`--precedence`, `--fail-on` and its exit codes."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.policy.model import Policy
from app.policy.precedence import Precedence
from app.state.files import load_snapshot
from tests.support.coverage_oracle import (
    State,
    coverage_by_scan,
    decisions_by_scan,
    random_state,
    status_by_scan,
    write_state,
)
from tests.support.service import SAMPLE_CLUSTER, run_cli
from tests.support.tools import run_kubectl

POLICY_KEYS = {"name", "status", "governs", "matches", "beatenBy", "tieBreaks"}
STATUSES = ("active", "shadowed", "unused", "no-selectors")
SEEDS = range(6)


def sample_state(mode: Precedence) -> State:
    """samples/cluster/ as the oracle reads it (its files parsed by the webhook's reader)."""
    snapshot = load_snapshot(SAMPLE_CLUSTER, mode)
    return State(dict(snapshot.namespaces), dict(snapshot.vmis), list(snapshot.policies))


def coverage_json(*args: str) -> dict[str, Any]:
    done = run_cli("coverage", "-o", "json", *args)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def expected_policies(state: State, mode: Precedence) -> list[dict[str, Any]]:
    """The `policies` list `-o json` must print, from the plain scan."""
    shares = coverage_by_scan(state.policies, state.vmis, state.namespaces, mode)
    by_name = {policy.name: policy for policy in state.policies}
    return [{"name": name, "status": status_by_scan(by_name[name], share),
             "governs": share["governs"], "matches": share["matches"],
             "beatenBy": [{"name": winner, "vmis": count} for winner, count in
                          sorted(share["beatenBy"].items(), key=lambda item: (-item[1],
                                                                              item[0]))],
             "tieBreaks": share["tieBreaks"]}
            for name, share in sorted(shares.items())]


def expected_vmis(state: State, mode: Precedence) -> list[dict[str, Any]]:
    decided = decisions_by_scan(state.policies, state.vmis, state.namespaces, mode)
    return [{"namespace": namespace, "name": name, "policy": winner, "runnerUp": runner_up,
             "tieBreak": tie_break}
            for (namespace, name), (winner, runner_up, tie_break) in sorted(decided.items())]


# --- the sample state ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(Precedence))
def test_the_sample_as_json_is_what_a_plain_scan_counts(mode: Precedence) -> None:
    document = coverage_json("--precedence", mode.value, "--vmis")
    state = sample_state(mode)
    assert document["policies"] == expected_policies(state, mode)
    assert document["vmis"] == expected_vmis(state, mode)
    assert document["vmiCount"] == len(state.vmis) == 4
    assert document["vmisWithoutNamespace"] == 0
    assert document["precedence"] == mode.value


def test_the_sample_s_figures() -> None:
    """What the README and docs/metrics.md say of the sample: 3 active, 1 shadowed (its
    VMI won by web-app-policy on the tie-break), 1 unused."""
    policies = {policy["name"]: policy for policy in coverage_json()["policies"]}
    assert {name: policy["status"] for name, policy in policies.items()} == {
        "gold-tier-db-policy": "active", "my-awesome-policy": "active",
        "staging-policy": "unused", "team-web-policy": "shadowed", "web-app-policy": "active"}
    assert policies["my-awesome-policy"]["beatenBy"] == [{"name": "gold-tier-db-policy",
                                                           "vmis": 1}]
    assert (policies["my-awesome-policy"]["governs"],
            policies["my-awesome-policy"]["matches"]) == (1, 2)
    assert policies["web-app-policy"]["tieBreaks"] == 1


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_each_policy_has_exactly_the_issue_s_keys(output: str) -> None:
    done = run_cli("coverage", "-o", output)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout) if output == "json" else yaml.safe_load(done.stdout)
    assert isinstance(document["policies"], list)
    assert len(document["policies"]) == 5
    for policy in document["policies"]:
        assert set(policy) == POLICY_KEYS
        assert policy["status"] in STATUSES
        for beaten_by in policy["beatenBy"]:
            assert set(beaten_by) == {"name", "vmis"}
    assert "vmis" not in document  # only with --vmis


def test_json_and_yaml_say_the_same() -> None:
    as_json = run_cli("coverage", "-o", "json", "--vmis")
    as_yaml = run_cli("coverage", "-o", "yaml", "--vmis")
    assert json.loads(as_json.stdout) == yaml.safe_load(as_yaml.stdout)


def test_precedence_kubevirt_gives_web_vmi_to_the_other_policy() -> None:
    """web-vmi is matched by web-app-policy and team-web-policy, score 2 each: documented
    decides on the selector keys ([app, env] first), kubevirt on the name (team first)."""
    documented = coverage_json("--vmis")
    kubevirt = coverage_json("--vmis", "--precedence", "kubevirt")

    def web_vmi(document: dict[str, Any]) -> dict[str, Any]:
        return next(vmi for vmi in document["vmis"] if vmi["name"] == "web-vmi")

    assert web_vmi(documented) == {"namespace": "prod", "name": "web-vmi",
                                   "policy": "web-app-policy", "runnerUp": "team-web-policy",
                                   "tieBreak": True}
    assert web_vmi(kubevirt) == {"namespace": "prod", "name": "web-vmi",
                                 "policy": "team-web-policy", "runnerUp": "web-app-policy",
                                 "tieBreak": True}
    status = {mode: {policy["name"]: policy["status"] for policy in document["policies"]}
              for mode, document in (("documented", documented), ("kubevirt", kubevirt))}
    assert (status["documented"]["team-web-policy"], status["documented"]["web-app-policy"]) \
        == ("shadowed", "active")
    assert (status["kubevirt"]["team-web-policy"], status["kubevirt"]["web-app-policy"]) \
        == ("active", "shadowed")
    others = [vmi for vmi in documented["vmis"] if vmi["name"] != "web-vmi"]
    assert others == [vmi for vmi in kubevirt["vmis"] if vmi["name"] != "web-vmi"]


# --- the table -------------------------------------------------------------------------------

def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with `header`, cells split on the
    two or more spaces that pad them."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(re.split(r" {2,}", line))
    return rows


def expected_table(state: State, mode: Precedence) -> list[list[str]]:
    return [[policy["name"], policy["status"], str(policy["governs"]), str(policy["matches"]),
             str(policy["tieBreaks"]),
             ", ".join(f"{beaten['name']} ({beaten['vmis']})"
                       for beaten in policy["beatenBy"]) or "-"]
            for policy in expected_policies(state, mode)]


def expected_summary(state: State, mode: Precedence, shown: str) -> str:
    shares = coverage_by_scan(state.policies, state.vmis, state.namespaces, mode)
    governed = sum(share["governs"] for share in shares.values())
    without = sum(namespace not in state.namespaces for namespace, _ in state.vmis)
    ties = sum(share["tieBreaks"] for share in shares.values())
    by_name = {policy.name: policy for policy in state.policies}
    statuses = [status_by_scan(by_name[name], share) for name, share in shares.items()]
    line = (f"{governed} governed by a policy, {len(state.vmis) - without - governed} by none")
    if without:
        line += f", {without} in a namespace the state does not hold"
    return (f"{len(state.vmis)} VMIs in {shown} (precedence {mode.value}):\n{line}; "
            f"{ties} decided by a tie-break.\npolicies: "
            + ", ".join(f"{statuses.count(status)} {status}" for status in STATUSES))


@pytest.mark.parametrize("mode", list(Precedence))
def test_the_sample_s_table_for_people(mode: Precedence) -> None:
    done = run_cli("coverage", "--precedence", mode.value, "--vmis")
    assert done.returncode == 0, done.stderr
    state = sample_state(mode)
    assert table_rows(done.stdout, "POLICY ") == expected_table(state, mode)
    assert done.stdout.rstrip("\n").endswith(expected_summary(state, mode, "samples/cluster"))
    vmis = table_rows(done.stdout, "NAMESPACE ")
    assert vmis == [[vmi["namespace"], vmi["name"], vmi["policy"] or "-",
                     vmi["runnerUp"] or "-", "yes" if vmi["tieBreak"] else "no"]
                    for vmi in expected_vmis(state, mode)]


def test_without_vmis_there_is_no_vmi_table() -> None:
    done = run_cli("coverage")
    assert "NAMESPACE " not in done.stdout
    assert done.stdout.startswith("POLICY ")


# --- generated states ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", list(Precedence))
def test_a_generated_state_is_counted_as_a_plain_scan_counts(tmp_path: Path, seed: int,
                                                             mode: Precedence) -> None:
    state = random_state(seed)
    directory = write_state(tmp_path / "state", state)
    document = coverage_json("--state", str(directory), "--precedence", mode.value, "--vmis")
    assert document["policies"] == expected_policies(state, mode)
    assert document["vmis"] == expected_vmis(state, mode)
    assert document["vmiCount"] == len(state.vmis)
    assert document["vmisWithoutNamespace"] == sum(namespace not in state.namespaces
                                                   for namespace, _ in state.vmis)
    text = run_cli("coverage", "--state", str(directory), "--precedence", mode.value)
    assert text.returncode == 0, text.stderr
    assert table_rows(text.stdout, "POLICY ") == expected_table(state, mode)
    assert text.stdout.rstrip("\n").endswith(expected_summary(state, mode, str(directory)))


def test_the_generated_states_are_varied() -> None:
    """The seeds give every status but no-selectors, ties, and VMIs without a namespace
    (a directory state cannot hold a policy without selectors: it would be invalid)."""
    seen: set[str] = set()
    ties = without = 0
    for seed in SEEDS:
        state = random_state(seed)
        shares = coverage_by_scan(state.policies, state.vmis, state.namespaces,
                                  Precedence.DOCUMENTED)
        by_name = {policy.name: policy for policy in state.policies}
        seen.update(status_by_scan(by_name[name], share) for name, share in shares.items())
        ties += sum(share["tieBreaks"] for share in shares.values())
        without += sum(namespace not in state.namespaces for namespace, _ in state.vmis)
    assert seen == {"active", "shadowed", "unused"}
    assert ties and without


def test_the_two_modes_differ_on_a_written_state(tmp_path: Path) -> None:
    """`a-wide` ({env: prod} and {team: t}: keys [env, team], 1 VMI label) and `z-narrow`
    ({tier: gold, zone: x}: keys [tier, zone], 2 VMI labels) both score 2 on vm-1:
    documented takes the first keys, kubevirt the more VMI labels."""
    state = State({"prod": {"env": "prod"}},
                  {("prod", "vm-1"): {"tier": "gold", "team": "t", "zone": "x"},
                   ("prod", "vm-2"): {"team": "t"}},
                  [Policy("a-wide", {"env": "prod"}, {"team": "t"}),
                   Policy("z-narrow", {}, {"tier": "gold", "zone": "x"})])
    directory = write_state(tmp_path / "state", state)
    documents = {mode: coverage_json("--state", str(directory), "--precedence", mode.value,
                                     "--vmis") for mode in Precedence}
    for mode, document in documents.items():
        assert document["policies"] == expected_policies(state, mode)
        assert document["vmis"] == expected_vmis(state, mode)
    assert documents[Precedence.DOCUMENTED]["vmis"][0] == {
        "namespace": "prod", "name": "vm-1", "policy": "a-wide", "runnerUp": "z-narrow",
        "tieBreak": True}
    assert documents[Precedence.KUBEVIRT]["vmis"][0] == {
        "namespace": "prod", "name": "vm-1", "policy": "z-narrow", "runnerUp": "a-wide",
        "tieBreak": True}
    status = {mode: [policy["status"] for policy in document["policies"]]
              for mode, document in documents.items()}
    assert status == {Precedence.DOCUMENTED: ["active", "shadowed"],
                      Precedence.KUBEVIRT: ["active", "active"]}


# --- --fail-on -------------------------------------------------------------------------------

SHADOWED = ("team-web-policy: shadowed (matches 1 VMI(s), all won by web-app-policy (1))")
UNUSED = "staging-policy: unused (matches no VMI)"
TIES = ("web-app-policy: governs 1 VMI(s) by the tie-break only (a runner-up has the same "
        "score): make one policy more specific")


@pytest.mark.parametrize(("fail_on", "lines"), [
    ("shadowed", [SHADOWED]),
    ("unused", [UNUSED]),
    ("ties", [TIES]),
    ("shadowed,unused,ties", [UNUSED, SHADOWED, TIES]),
    ("ties, unused", [UNUSED, TIES]),
])
def test_fail_on_a_state_the_sample_has_exits_1_naming_each(fail_on: str,
                                                            lines: list[str]) -> None:
    done = run_cli("coverage", "--fail-on", fail_on)
    assert done.returncode == 1
    named = ",".join(sorted(part.strip() for part in fail_on.split(",")))
    assert done.stderr.splitlines() == [f"--fail-on {named}: {line}" for line in lines]
    assert done.stdout.startswith("POLICY ")  # the report is printed all the same


def test_fail_on_a_state_no_policy_is_in_exits_0() -> None:
    done = run_cli("coverage", "--fail-on", "no-selectors")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_fail_on_with_json_prints_the_document_and_exits_1() -> None:
    done = run_cli("coverage", "--fail-on", "shadowed", "-o", "json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["policies"]
    assert done.stderr.splitlines() == [f"--fail-on shadowed: {SHADOWED}"]


def test_fail_on_passes_on_a_state_without_the_named_states(tmp_path: Path) -> None:
    """Two policies, each the only one for its VMIs: a CI check that passes."""
    state = State({"prod": {"env": "prod"}},
                  {("prod", "web"): {"app": "web"}, ("prod", "db"): {"app": "db"}},
                  [Policy("web", {}, {"app": "web"}), Policy("db", {"env": "prod"},
                                                             {"app": "db"})])
    directory = write_state(tmp_path / "state", state)
    done = run_cli("coverage", "--state", str(directory), "--fail-on",
                   "shadowed,unused,ties,no-selectors")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (directory / "more.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
         "metadata": {"name": "web-too"},
         "spec": {"selectors": {"virtualMachineInstanceSelector": {"app": "web"}}}}))
    done = run_cli("coverage", "--state", str(directory), "--fail-on", "shadowed,ties")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "--fail-on shadowed,ties: web: governs 1 VMI(s) by the tie-break only (a runner-up "
        "has the same score): make one policy more specific",
        "--fail-on shadowed,ties: web-too: shadowed (matches 1 VMI(s), all won by web (1))"]


@pytest.mark.parametrize(("given", "named"), [("bogus", "'bogus'"), ("active", "'active'"),
                                              ("shadowed,Unused", "'Unused'"),
                                              ("tie,ties,x", "'tie', 'x'")])
def test_a_bad_fail_on_is_exit_2_naming_it(given: str, named: str) -> None:
    done = run_cli("coverage", "--fail-on", given)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"--fail-on: {named} is not a state to fail on; give a comma-separated list of "
        "shadowed, unused, no-selectors, ties"]


def test_a_state_that_is_not_a_directory_is_exit_2(tmp_path: Path) -> None:
    done = run_cli("coverage", "--state", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "no such directory" in done.stderr
    assert "Traceback" not in done.stderr


# --- kubectl migration-policy coverage --------------------------------------------------------

# kubectl of the real-cluster tier's release, as `make kube-binaries` builds it; missing, these
# tests fail (tests/support/tools.py). HOME is the test's folder: no kubeconfig at all.


@pytest.mark.parametrize("mode", list(Precedence))
def test_the_plugin_reports_a_directory_state_as_the_command_does(tmp_path: Path,
                                                                  mode: Precedence) -> None:
    state = random_state(7)
    directory = write_state(tmp_path / "state", state)
    done = run_kubectl("migration-policy", "coverage", "--state", str(directory), "--precedence",
                       mode.value, "--vmis", "-o", "json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["policies"] == expected_policies(state, mode)
    assert document["vmis"] == expected_vmis(state, mode)
    assert document == coverage_json("--state", str(directory), "--precedence", mode.value,
                                     "--vmis")


def test_the_plugin_prints_the_table_and_fails_on_as_the_command_does(tmp_path: Path) -> None:
    done = run_kubectl("migration-policy", "coverage", "--state", str(SAMPLE_CLUSTER),
                       "--fail-on", "shadowed,unused", home=tmp_path)
    assert done.returncode == 1
    assert done.stdout == run_cli("coverage", "--state", str(SAMPLE_CLUSTER)).stdout
    assert done.stderr.splitlines() == [f"--fail-on shadowed,unused: {UNUSED}",
                                        f"--fail-on shadowed,unused: {SHADOWED}"]
    yaml_out = run_kubectl("migration-policy", "coverage", "--state", str(SAMPLE_CLUSTER),
                           "-o", "yaml", home=tmp_path)
    assert yaml_out.returncode == 0, yaml_out.stderr
    for policy in yaml.safe_load(yaml_out.stdout)["policies"]:
        assert set(policy) == POLICY_KEYS


def test_the_plugin_refuses_a_bad_fail_on_with_exit_2(tmp_path: Path) -> None:
    done = run_kubectl("migration-policy", "coverage", "--state", str(SAMPLE_CLUSTER),
                       "--fail-on", "shadowed,nope", home=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--fail-on: 'nope' is not a state to fail on" in done.stderr
    assert "Traceback" not in done.stderr
