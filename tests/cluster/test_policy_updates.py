"""Policy writes through the real API server: which of them reach the webhook, as what, and
what is stored. What reached the webhook is read from the service's review log, one line a
review in the order answered; a server-side dry run of another policy marks where the
lines of a step end."""

import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.control_plane import ControlPlane
from tests.support.service import SAMPLES, RunningService

AWESOME = SAMPLES / "policies" / "my-awesome-policy.yaml"
DEADLINE = 30.0
MARKS = itertools.count()


@pytest.fixture
def plane(webhook: RunningService, installed: ControlPlane) -> Iterator[ControlPlane]:
    yield installed
    installed.kubectl("delete", "migrationpolicies", "--all")


class Reviews:
    """The policy reviews the service answers from now on, read from its review log."""

    def __init__(self, plane: ControlPlane, webhook: RunningService) -> None:
        self.plane = plane
        self.webhook = webhook
        self.start = 0
        self.so_far("")  # what earlier tests sent is in the log: start after it
        self.start = len(webhook.log())

    def operations(self, name: str) -> list[str]:
        pattern = re.compile(r"webhook=/validate-migrationpolicy operation=(\w+) "
                             rf'namespace="" name={re.escape(name)} ')
        return [match.group(1) for match in pattern.finditer(self.webhook.log()[self.start:])]

    def so_far(self, name: str) -> list[str]:
        """The operations reviewed for `name`, once every review sent before this call is
        in the log (a server-side dry run of another policy marks the end)."""
        mark = f"mark-{next(MARKS)}"
        document = {"apiVersion": "migrations.kubevirt.io/v1alpha1",
                    "kind": "MigrationPolicy", "metadata": {"name": mark},
                    "spec": {"selectors": {"virtualMachineInstanceSelector": {"mark": mark}}}}
        self.plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(document))
        deadline = time.monotonic() + DEADLINE
        while not self.operations(mark):
            assert time.monotonic() < deadline, "the review log never showed the mark"
            time.sleep(0.05)
        return self.operations(name)


@pytest.fixture
def reviews(plane: ControlPlane, webhook: RunningService) -> Reviews:
    return Reviews(plane, webhook)


def edited(tmp_path: Path, old: str, new: str) -> str:
    path = tmp_path / AWESOME.name
    path.write_text(AWESOME.read_text().replace(old, new))
    return str(path)


def test_a_change_is_reviewed_as_an_update_and_an_unchanged_apply_is_not_sent(
        plane: ControlPlane, reviews: Reviews, tmp_path: Path) -> None:
    assert plane.kubectl("apply", "-f", str(AWESOME)).returncode == 0
    faster = edited(tmp_path, "217Ki", "64Mi")
    changed = plane.kubectl("apply", "-f", faster)
    assert changed.stdout == "migrationpolicy.migrations.kubevirt.io/my-awesome-policy configured\n"
    # 64Mi is not below 1Mi: the one warning is the UPDATE's impact, with what the policy
    # governs now (its figures are those of the VMIs other tests left in the cluster)
    assert re.fullmatch(r"Warning: impact: [^\n]*; governs \d+ now\n", changed.stderr), \
        changed.stderr
    stored = json.loads(plane.kubectl("get", "migrationpolicy", "my-awesome-policy", "-o",
                                      "json").stdout)
    assert stored["spec"]["bandwidthPerMigration"] == "64Mi"
    assert stored["metadata"]["generation"] == 2
    again = plane.kubectl("apply", "-f", faster)
    assert again.stdout == "migrationpolicy.migrations.kubevirt.io/my-awesome-policy unchanged\n"
    assert reviews.so_far("my-awesome-policy") == ["CREATE", "UPDATE"]


def test_an_invalid_change_is_refused_and_the_policy_stays_as_it_was(
        plane: ControlPlane, reviews: Reviews, tmp_path: Path) -> None:
    assert plane.kubectl("apply", "-f", str(AWESOME)).returncode == 0
    before = json.loads(plane.kubectl("get", "migrationpolicy", "my-awesome-policy", "-o",
                                      "json").stdout)
    refused = plane.kubectl("apply", "-f", edited(tmp_path, "217Ki", "-1Gi"), check=False)
    assert refused.returncode == 1
    assert refused.stderr.endswith(
        'The MigrationPolicy "my-awesome-policy" is invalid: spec.bandwidthPerMigration: '
        '"-1Gi" is negative: use 0 (unlimited) or a larger quantity, such as 64Mi\n')
    after = json.loads(plane.kubectl("get", "migrationpolicy", "my-awesome-policy", "-o",
                                     "json").stdout)
    assert after == before
    assert reviews.so_far("my-awesome-policy") == ["CREATE", "UPDATE"]


def test_replace_is_reviewed_as_an_update_too(plane: ControlPlane, reviews: Reviews,
                                               tmp_path: Path) -> None:
    assert plane.kubectl("create", "-f", str(AWESOME)).returncode == 0
    refused = plane.kubectl("replace", "-f", edited(tmp_path, "217Ki", "-1Gi"), check=False)
    assert refused.returncode == 1
    assert 'spec.bandwidthPerMigration: "-1Gi" is negative' in refused.stderr
    replaced = plane.kubectl("replace", "-f", edited(tmp_path, "217Ki", "64Mi"))
    assert replaced.stdout == "migrationpolicy.migrations.kubevirt.io/my-awesome-policy replaced\n"
    assert reviews.so_far("my-awesome-policy") == ["CREATE", "UPDATE",
                                                                     "UPDATE"]


def test_equal_selectors_to_an_existing_policy_print_a_warning_naming_it(
        plane: ControlPlane, tmp_path: Path) -> None:
    assert plane.kubectl("apply", "-f", str(AWESOME)).returncode == 0
    twin = edited(tmp_path, "name: my-awesome-policy", "name: twin")
    deadline = time.monotonic() + DEADLINE
    while True:  # until the service's state holds my-awesome-policy (it watches)
        done = plane.kubectl("apply", "--dry-run=server", "-f", twin)
        if '"my-awesome-policy"' in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    created = plane.kubectl("apply", "-f", twin)
    assert created.stdout == "migrationpolicy.migrations.kubevirt.io/twin created\n"
    duplicate = [line for line in created.stderr.splitlines()
                 if line.startswith("Warning: spec.selectors ")]
    assert len(duplicate) == 1
    assert '"my-awesome-policy"' in duplicate[0] and "takes precedence" in duplicate[0]


def test_delete_is_not_sent_to_the_webhook(plane: ControlPlane, reviews: Reviews) -> None:
    """The configuration's rules name CREATE and UPDATE only."""
    assert plane.kubectl("apply", "-f", str(AWESOME)).returncode == 0
    deleted = plane.kubectl("delete", "-f", str(AWESOME))
    assert deleted.stdout == 'migrationpolicy.migrations.kubevirt.io "my-awesome-policy" deleted\n'
    assert reviews.so_far("my-awesome-policy") == ["CREATE"]
