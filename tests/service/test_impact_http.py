"""The `impact:` warning over HTTP (issue 20): the real service over TLS on the sample state,
on CREATE and UPDATE, turned off, in `--enforcement warn`, and following a state directory
that changes while it runs."""

import copy
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.reviews import VALIDATE, Review, post_review, sample_review
from tests.support.service import SAMPLE_CLUSTER, RunningService, running_service

DEADLINE = 30.0
SAMPLE_IMPACT = "impact: would govern 1 VMI (1 it governs already); matches 2"
"""samples/reviews/policy-valid-example.json: my-awesome-policy (stored in the sample state
already) matches db-vmi and gold-db-vmi and governs db-vmi; gold-tier-db-policy keeps the
other."""


def policy_review(name: str, selectors: dict[str, Any], *, operation: str = "CREATE",
                  old_selectors: dict[str, Any] | None = None) -> Review:
    """The sample's review with another name and selectors; an UPDATE carries the stored
    version (the same policy, or `old_selectors`) as oldObject."""
    review = sample_review("policy-valid-example.json")
    request = review["request"]
    request["name"] = name
    request["operation"] = operation
    policy = request["object"]
    policy["metadata"]["name"] = name
    policy["spec"]["bandwidthPerMigration"] = "64Mi"  # no other warning
    policy["spec"]["selectors"] = selectors
    if operation == "UPDATE":
        old = copy.deepcopy(policy)
        if old_selectors is not None:
            old["spec"]["selectors"] = old_selectors
        request["oldObject"] = old
    return review


def impact_of(response: dict[str, Any]) -> list[str]:
    """The answer's impact warnings (one, or none)."""
    return [warning for warning in response.get("warnings", [])
            if warning.startswith("impact:")]


def all_short(response: dict[str, Any]) -> bool:
    return all(len(warning) < 120 for warning in response.get("warnings", []))


# --- the sample state ------------------------------------------------------------------------

def test_the_sample_policy_on_create_gets_its_impact_last(client: httpx.Client) -> None:
    response = post_review(client, VALIDATE, sample_review("policy-valid-example.json"),
                           allowed=True)
    assert response["warnings"] == [
        'spec.bandwidthPerMigration "217Ki" is below 1Mi per second: KubeVirt raises it to 1Mi',
        SAMPLE_IMPACT]


def test_the_sample_policy_on_update_also_says_what_it_governs_now(
        client: httpx.Client) -> None:
    review = sample_review("policy-valid-example.json")
    review["request"]["operation"] = "UPDATE"
    review["request"]["oldObject"] = copy.deepcopy(review["request"]["object"])
    response = post_review(client, VALIDATE, review, allowed=True)
    assert impact_of(response) == [f"{SAMPLE_IMPACT}; governs 1 now"]


def test_an_update_that_moves_a_policy_off_its_vmis(client: httpx.Client) -> None:
    """web-app-policy governs web-vmi now; changed to select app=nothing it would match no
    VMI: a server dry run shows that it governs 1 now."""
    web = {"namespaceSelector": {"env": "prod"},
           "virtualMachineInstanceSelector": {"app": "web"}}
    review = policy_review("web-app-policy", {"virtualMachineInstanceSelector":
                                              {"app": "nothing"}},
                           operation="UPDATE", old_selectors=web)
    response = post_review(client, VALIDATE, review, allowed=True)
    assert impact_of(response) == ["impact: matches no VMI now; governs 1 now"]


def test_an_update_that_moves_a_policy_to_namespaces_without_vmis(client: httpx.Client) -> None:
    """Changed to select namespaces no namespace matches, it has no VMI to read, but its
    stored version governs web-vmi: still `governs 1 now`. Catches the shortcut for a policy
    with nothing to read taken for one that is stored."""
    web = {"namespaceSelector": {"env": "prod"},
           "virtualMachineInstanceSelector": {"app": "web"}}
    review = policy_review("web-app-policy", {"namespaceSelector": {"env": "nowhere"}},
                           operation="UPDATE", old_selectors=web)
    response = post_review(client, VALIDATE, review, allowed=True)
    assert impact_of(response) == ["impact: matches no VMI now; governs 1 now"]


def test_a_new_policy_takes_a_vmi_from_the_tie_break_winner(client: httpx.Client) -> None:
    """Score 3 on web-vmi: it beats web-app-policy (score 2), which governs it now."""
    review = policy_review("web-team-app", {
        "namespaceSelector": {"env": "prod"},
        "virtualMachineInstanceSelector": {"app": "web", "team": "web"}})
    response = post_review(client, VALIDATE, review, allowed=True)
    assert response["warnings"] == [
        "impact: would govern 1 VMI (1 now governed by web-app-policy); matches 1"]


def test_a_policy_matching_no_vmi(client: httpx.Client) -> None:
    review = policy_review("qa-policy", {"namespaceSelector": {"env": "qa"}})
    response = post_review(client, VALIDATE, review, allowed=True)
    assert response["warnings"] == ["impact: matches no VMI now"]


def test_a_policy_beaten_everywhere_names_who_wins(client: httpx.Client) -> None:
    review = policy_review("any-web", {"virtualMachineInstanceSelector": {"app": "web"}})
    response = post_review(client, VALIDATE, review, allowed=True)
    assert response["warnings"] == [
        "impact: matches 1 VMI but governs none: web-app-policy wins 1"]


def test_a_policy_beaten_by_two(client: httpx.Client) -> None:
    """workload-type=db (score 1) matches db-vmi (my-awesome-policy's, score 4) and
    gold-db-vmi (gold-tier-db-policy's, 5)."""
    review = policy_review("any-db", {"virtualMachineInstanceSelector":
                                      {"workload-type": "db"}})
    response = post_review(client, VALIDATE, review, allowed=True)
    assert response["warnings"] == [
        "impact: matches 2 VMIs but governs none: gold-tier-db-policy wins 1, "
        "my-awesome-policy wins 1"]


def test_a_refused_policy_gets_no_impact(client: httpx.Client) -> None:
    response = post_review(client, VALIDATE, sample_review("policy-negative-bandwidth.json"),
                           allowed=False)
    assert impact_of(response) == []


def test_a_delete_gets_no_impact(client: httpx.Client) -> None:
    review = sample_review("policy-valid-example.json")
    review["request"]["operation"] = "DELETE"
    review["request"]["oldObject"] = review["request"].pop("object")
    review["request"]["object"] = None
    response = post_review(client, VALIDATE, review, allowed=True)
    assert impact_of(response) == []


def test_a_long_name_stays_under_120_characters(client: httpx.Client) -> None:
    """A 253-character name, taking web-vmi from web-app-policy."""
    name = "a" * 200 + "." + "b" * 52
    review = policy_review(name, {"namespaceSelector": {"env": "prod"},
                                  "virtualMachineInstanceSelector": {"app": "web",
                                                                     "team": "web"}})
    response = post_review(client, VALIDATE, review, allowed=True)
    [impact] = impact_of(response)
    assert impact.startswith("impact: would govern 1 VMI (1 now governed by web-app-policy)")
    assert all_short(response)


# --- flags -----------------------------------------------------------------------------------

def test_impact_warnings_false_gives_none(tmp_path: Path) -> None:
    with running_service(tmp_path, ["--impact-warnings=false"]) as service, \
            service.client() as http:
        response = post_review(http, VALIDATE, sample_review("policy-valid-example.json"),
                               allowed=True)
        assert response["warnings"] == [
            'spec.bandwidthPerMigration "217Ki" is below 1Mi per second: KubeVirt raises it '
            "to 1Mi"]
        nothing = post_review(http, VALIDATE, policy_review("qa-policy", {
            "namespaceSelector": {"env": "qa"}}), allowed=True)
        assert "warnings" not in nothing or nothing["warnings"] == []


def test_enforcement_warn_still_gives_the_impact_of_an_invalid_policy(tmp_path: Path) -> None:
    """A negative bandwidth is admitted with its problem as a warning; its selectors are the
    sample policy's, so the impact is the sample's."""
    with running_service(tmp_path, ["--enforcement", "warn"]) as service, \
            service.client() as http:
        response = post_review(http, VALIDATE,
                               sample_review("policy-negative-bandwidth.json"), allowed=True)
        warnings = response["warnings"]
        assert warnings[0].startswith("would be refused: spec.bandwidthPerMigration")
        assert warnings[-1] == ("impact: matches 2 VMIs but governs none: "
                                "gold-tier-db-policy wins 1, my-awesome-policy wins 1")
        assert all_short(response)
        valid = post_review(http, VALIDATE, sample_review("policy-valid-example.json"),
                            allowed=True)
        assert impact_of(valid) == [SAMPLE_IMPACT]


# --- a state directory that changes ----------------------------------------------------------

@pytest.fixture
def changing_state(tmp_path: Path) -> Iterator[tuple[Path, RunningService]]:
    """The service on a copy of samples/cluster/, with a pass at most every 0.2 s."""
    state = tmp_path / "cluster"
    shutil.copytree(SAMPLE_CLUSTER, state)
    with running_service(tmp_path, ["--state", str(state), "--coverage-interval", "0.2"]) \
            as service:
        yield state, service


def eventually_impact(http: httpx.Client, review: Review, wanted: str) -> list[str]:
    """Post `review` until its impact is `wanted`; the deadline only ends a failure."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = impact_of(post_review(http, VALIDATE, review, allowed=True))
        if found == [wanted] or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_new_vmi_in_the_state_directory_shows_in_the_impact(
        changing_state: tuple[Path, RunningService]) -> None:
    state, service = changing_state
    review = policy_review("batch", {"virtualMachineInstanceSelector": {"app": "batch"}})
    with service.client() as http:
        assert impact_of(post_review(http, VALIDATE, review, allowed=True)) == [
            "impact: would govern 1 VMI (1 by no policy); matches 1"]  # plain-vmi
        (state / "more-vmis.yaml").write_text(yaml.safe_dump(
            {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
             "metadata": {"name": "batch-2", "namespace": "prod", "labels": {"app": "batch"}}}))
        assert eventually_impact(http, review, "impact: would govern 2 VMIs (2 by no policy); "
                                 "matches 2") == [
            "impact: would govern 2 VMIs (2 by no policy); matches 2"]


def test_a_new_policy_in_the_state_directory_shows_in_the_impact(
        changing_state: tuple[Path, RunningService]) -> None:
    """A policy added to the directory now governs plain-vmi: the candidate would take it
    from that policy."""
    state, service = changing_state
    review = policy_review("batch", {"namespaceSelector": {"kubernetes.io/metadata.name":
                                                           "default"},
                                     "virtualMachineInstanceSelector": {"app": "batch"}})
    with service.client() as http:
        assert impact_of(post_review(http, VALIDATE, review, allowed=True)) == [
            "impact: would govern 1 VMI (1 by no policy); matches 1"]
        (state / "more-policies.yaml").write_text(yaml.safe_dump(
            {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
             "metadata": {"name": "batch-policy"},
             "spec": {"selectors": {"virtualMachineInstanceSelector": {"app": "batch"}}}}))
        wanted = "impact: would govern 1 VMI (1 now governed by batch-policy); matches 1"
        assert eventually_impact(http, review, wanted) == [wanted]
