"""The README's examples are what the service and the command line really answer."""

import base64
import json
import re

import httpx
import pytest

from tests.support.reviews import MUTATE, VALIDATE, post_review, sample_review
from tests.support.service import REPO, SAMPLE_REVIEWS, run_cli

README = (REPO / "README.md").read_text()
MESSAGE_ROW = re.compile(r"^\| `(policy-[\w-]+\.json)` \| `(.+)` \|$", re.MULTILINE)
ROWS = MESSAGE_ROW.findall(README)


def output_after(command: str) -> str:
    """The code block the README shows right after the block holding `command`."""
    opened = f"{command}\n```\n"
    start = README.index(opened) + len(opened)
    return re.compile(r"```\w*\n(.*?)```", re.DOTALL).search(README, start).group(1)


def test_the_message_table_covers_every_mistake_sample() -> None:
    samples = {path.name for path in SAMPLE_REVIEWS.glob("policy-*.json")}
    assert {name for name, _ in ROWS} == samples - {"policy-valid-example.json"}


@pytest.mark.parametrize(("name", "shown"), ROWS, ids=[name for name, _ in ROWS])
def test_message_table_rows(client: httpx.Client, name: str, shown: str) -> None:
    message = post_review(client, VALIDATE, sample_review(name))["status"]["message"]
    if shown.endswith("..."):
        assert message.startswith(shown.removesuffix("..."))
    else:
        assert message == shown


@pytest.mark.parametrize("sample", ["policy-valid-example.json", "policy-negative-bandwidth.json"])
def test_shown_validation_responses(client: httpx.Client, sample: str) -> None:
    shown = json.loads(output_after(f"review {sample} validate-migrationpolicy"))
    assert post_review(client, VALIDATE, sample_review(sample)) == shown


def test_shown_patch(client: httpx.Client) -> None:
    shown = json.loads(output_after("review migration-db-vmi.json "
                                    "mutate-virtualmachineinstancemigration | jq -r "
                                    "'.patch // empty' | base64 -d | jq ."))
    response = post_review(client, MUTATE, sample_review("migration-db-vmi.json"))
    assert json.loads(base64.b64decode(response["patch"])) == shown


@pytest.mark.parametrize(
    "command",
    ["lint samples/policies/three-mistakes.yaml", "explain --vmi web-vmi --namespace prod",
     "coverage"],
)
def test_shown_command_output(command: str) -> None:
    shown = output_after(f".venv/bin/migration-policy-webhook {command}")
    assert run_cli(*command.split()).stdout == shown
