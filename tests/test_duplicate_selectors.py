"""A policy whose selectors equal an existing policy's (contract §2 warnings, issue 3)."""

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SAMPLE_REVIEWS, start_service, stop_service

VALIDATE = "/validate-migrationpolicy"


def example_review(name: str) -> dict[str, Any]:
    review = json.loads((SAMPLE_REVIEWS / "policy-valid-example.json").read_text())
    review = copy.deepcopy(review)
    review["request"]["object"]["metadata"]["name"] = name
    review["request"]["name"] = name
    return review


def answer(client: httpx.Client, review: dict[str, Any]) -> dict[str, Any]:
    response = client.post(VALIDATE, json=review)
    assert response.status_code == 200, response.text
    return response.json()["response"]


@pytest.mark.parametrize(
    ("name", "winner"),
    [("aaa-copy", "aaa-copy"), ("zzz-copy", "my-awesome-policy")],
)
def test_equal_selectors_warn_and_name_the_winner(
    client: httpx.Client, name: str, winner: str
) -> None:
    response = answer(client, example_review(name))
    assert response["allowed"] is True
    duplicates = [w for w in response["warnings"] if "my-awesome-policy" in w]
    assert len(duplicates) == 1
    assert f'"{winner}" takes precedence' in duplicates[0]
    assert all(len(warning) < 120 for warning in response["warnings"])


def test_updating_the_policy_itself_does_not_warn(client: httpx.Client) -> None:
    review = example_review("my-awesome-policy")
    review["request"]["operation"] = "UPDATE"
    review["request"]["oldObject"] = copy.deepcopy(review["request"]["object"])
    response = answer(client, review)
    assert response["allowed"] is True
    assert not any("equal" in warning for warning in response.get("warnings", []))


def test_different_selectors_do_not_warn(client: httpx.Client) -> None:
    review = example_review("other")
    review["request"]["object"]["spec"]["selectors"]["virtualMachineInstanceSelector"] = {
        "workload-type": "web"}
    assert not any("equal" in w for w in answer(client, review).get("warnings", []))


def test_deny_duplicate_selectors_flag(tmp_path: Path) -> None:
    service = start_service(tmp_path, ["--deny-duplicate-selectors"])
    try:
        with service.client() as client:
            response = answer(client, example_review("copy"))
    finally:
        stop_service(service)
    assert response["allowed"] is False
    causes = response["status"]["details"]["causes"]
    assert [(c["field"], c["type"]) for c in causes] == [("spec.selectors", "FieldValueInvalid")]
    assert '"my-awesome-policy"' in causes[0]["message"]
