"""A policy whose selectors equal an existing policy's (contract §2 warnings, issue 3)."""

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.reviews import VALIDATE, post_review, sample_review
from tests.support.service import run_cli, start_service, stop_service

# The example's bandwidth, 217Ki, is legal but below what KubeVirt applies.
BELOW_ONE_MEBI = ('spec.bandwidthPerMigration "217Ki" is below 1Mi per second: '
                  "KubeVirt raises it to 1Mi")


def example_review(name: str) -> dict[str, Any]:
    review = sample_review("policy-valid-example.json")
    review["request"]["object"]["metadata"]["name"] = name
    review["request"]["name"] = name
    return review


@pytest.mark.parametrize(
    ("name", "winner"),
    [("aaa-copy", "aaa-copy"), ("zzz-copy", "my-awesome-policy")],
)
def test_equal_selectors_warn_and_name_the_winner(
    client: httpx.Client, name: str, winner: str
) -> None:
    response = post_review(client, VALIDATE, example_review(name))
    assert response["allowed"] is True
    duplicates = [w for w in response["warnings"] if w.startswith("spec.selectors equal")]
    assert len(duplicates) == 1
    assert f'"{winner}" takes precedence' in duplicates[0]
    assert all(len(warning) < 120 for warning in response["warnings"])


def test_updating_the_policy_itself_does_not_warn(client: httpx.Client) -> None:
    review = example_review("my-awesome-policy")
    review["request"]["operation"] = "UPDATE"
    review["request"]["oldObject"] = copy.deepcopy(review["request"]["object"])
    """The policy compared with the others but not with itself: a check that does not leave
    out the policy under review would add `spec.selectors equal policy "my-awesome-policy"'s`;
    one that stopped before the later checks would lose the impact warning. In the sample
    cluster it matches db-vmi and gold-db-vmi, and gold-tier-db-policy (one pair more) wins
    gold-db-vmi."""
    response = post_review(client, VALIDATE, review)
    assert response["allowed"] is True
    assert response["warnings"] == [
        BELOW_ONE_MEBI,
        "impact: would govern 1 VMI (1 it governs already); matches 2; governs 1 now",
    ]


def test_different_selectors_do_not_warn(client: httpx.Client) -> None:
    """Equal namespaceSelectors, a virtualMachineInstanceSelector with the same keys but one
    other value: a duplicate check that compared one selector, or the keys without the
    values, would warn here. No VMI of the sample cluster is labelled workload-type: web."""
    review = example_review("other")
    review["request"]["object"]["spec"]["selectors"]["virtualMachineInstanceSelector"] = {
        "workload-type": "web", "operating-system": ""}
    response = post_review(client, VALIDATE, review)
    assert response["allowed"] is True
    assert response["warnings"] == [BELOW_ONE_MEBI, "impact: matches no VMI now"]


def test_deny_duplicate_selectors_flag(tmp_path: Path) -> None:
    service = start_service(tmp_path, ["--deny-duplicate-selectors"])
    try:
        with service.client() as client:
            response = post_review(client, VALIDATE, example_review("copy"))
    finally:
        stop_service(service)
    assert response["allowed"] is False
    causes = response["status"]["details"]["causes"]
    assert [(c["field"], c["type"]) for c in causes] == [("spec.selectors", "FieldValueInvalid")]
    assert '"my-awesome-policy"' in causes[0]["message"]


def test_lint_warns_about_the_later_of_two_equal_policies(tmp_path: Path) -> None:
    """As if applied in the order given: the second is the one the webhook would judge."""
    files = []
    for name in ("zeta", "alpha"):
        obj = example_review(name)["request"]["object"]
        files.append(tmp_path / f"{len(files)}-{name}.json")
        files[-1].write_text(json.dumps(obj))
    warned = run_cli("lint", *map(str, files))
    assert warned.returncode == 0, warned.stdout
    lines = warned.stdout.splitlines()
    second = lines.index(f"{files[1]}: MigrationPolicy 'alpha' is valid")
    assert lines[second + 2] == ('  Warning: spec.selectors equal policy "zeta"\'s: "alpha" '
                                 "takes precedence (its name sorts first)")
    assert warned.stdout.count("spec.selectors equal policy") == 1
    denied = run_cli("lint", "--deny-duplicate-selectors", "-o", "json", *map(str, files))
    assert denied.returncode == 1
    document = json.loads(denied.stdout)
    assert [entry["valid"] for entry in document["policies"]] == [True, False]
    assert document["policies"][1]["causes"][0]["field"] == "spec.selectors"
