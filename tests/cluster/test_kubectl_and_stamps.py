"""Through the real API server: what kubectl prints for the sample policies (the README's
outputs are checked against it), a server-side dry run, and migrations stamped as the
README's table says, with the webhook registered as shipped and running on the shipped RBAC."""

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.support.control_plane import ControlPlane
from tests.support.live_cluster import scrape, value
from tests.support.service import REPO, SAMPLE_CLUSTER, SAMPLES, RunningService

README = (REPO / "README.md").read_text()
PREFIX = "migrations.kubevirt.io/"
DEADLINE = 30.0


def readme_output(command: str) -> str:
    """The output block the README shows right after the block holding `command`."""
    match = re.search(re.escape(command) + r"\n```\n```\n(.*?)```", README, re.S)
    assert match, f"the README shows no output for {command}"
    return match.group(1)


@pytest.fixture
def plane(webhook: RunningService, installed: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane with the webhook registered; policies made by a test are deleted."""
    yield installed
    installed.kubectl("delete", "migrationpolicies", "--all", "--wait=false")


def apply_policy(plane: ControlPlane, name: str, *extra: str):
    return plane.kubectl("apply", "-f", str(SAMPLES / "policies" / f"{name}.yaml"), *extra,
                         check=False)


def test_a_policy_with_mistakes_is_refused_as_the_readme_shows(plane: ControlPlane) -> None:
    done = apply_policy(plane, "two-mistakes")
    assert done.returncode == 1
    assert "Error from server" not in done.stdout
    shown = readme_output("kubectl apply -f samples/policies/two-mistakes.yaml")
    assert done.stderr.replace("Error from server (Invalid): error when creating "
                               f"\"{SAMPLES / 'policies' / 'two-mistakes.yaml'}\": ", "") == shown
    assert plane.kubectl("get", "migrationpolicy", "two-mistakes",
                         check=False).returncode == 1  # not stored


@pytest.fixture
def sample_vmis(plane: ControlPlane) -> ControlPlane:
    """The namespaces and VMIs of samples/cluster/ (none of its policies), as the files
    say, once the webhook's view of the VMIs has them: the README's `impact:` line counts
    them (the policy matches hpc/db-vmi and hpc/gold-db-vmi)."""
    for name in ("namespaces.yaml", "vmis.yaml"):
        plane.kubectl("apply", "-f", str(SAMPLE_CLUSTER / name))
        plane.kubectl("replace", "-f", str(SAMPLE_CLUSTER / name))  # labels as the file's
    deadline = time.monotonic() + DEADLINE
    while "; matches 2" not in apply_policy(plane, "my-awesome-policy",
                                            "--dry-run=server").stderr:
        assert time.monotonic() < deadline, "the webhook never saw the sample's VMIs"
        time.sleep(0.2)
    return plane


def test_a_legal_but_doubtful_policy_is_created_with_the_webhook_s_warning(
        sample_vmis: ControlPlane) -> None:
    plane = sample_vmis
    done = apply_policy(plane, "my-awesome-policy")
    assert done.returncode == 0, done.stderr
    assert done.stderr + done.stdout == readme_output(
        "kubectl apply -f samples/policies/my-awesome-policy.yaml")
    stored = json.loads(plane.kubectl("get", "migrationpolicy", "my-awesome-policy",
                                      "-o", "json").stdout)
    assert stored["spec"]["bandwidthPerMigration"] == "217Ki"


def test_a_server_side_dry_run_answers_the_same_and_stores_nothing(plane: ControlPlane) -> None:
    refused = apply_policy(plane, "two-mistakes", "--dry-run=server")
    assert refused.returncode == 1
    assert "is negative: use 0 (unlimited)" in refused.stderr
    created = apply_policy(plane, "my-awesome-policy", "--dry-run=server")
    assert created.returncode == 0, created.stderr
    assert "KubeVirt raises it to 1Mi" in created.stderr
    assert "(server dry run)" in created.stdout
    assert plane.kubectl("get", "migrationpolicy", "my-awesome-policy",
                         check=False).returncode == 1


def test_a_policy_can_be_deleted(plane: ControlPlane) -> None:
    assert apply_policy(plane, "my-awesome-policy").returncode == 0
    plane.kubectl("delete", "migrationpolicy", "my-awesome-policy")
    assert plane.kubectl("get", "migrationpolicy", "my-awesome-policy",
                         check=False).returncode == 1


def migration(namespace: str, vmi: str) -> str:
    return json.dumps({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                       "metadata": {"generateName": f"migrate-{vmi}-", "namespace": namespace},
                       "spec": {"vmiName": vmi}})


def stamped(plane: ControlPlane, namespace: str, vmi: str) -> tuple[dict[str, str], str]:
    """A migration of `vmi` created (and stored): its annotations under the prefix, and
    what kubectl printed on stderr (the webhook's warnings)."""
    done = plane.kubectl("create", "-f", "-", "-o", "json", stdin=migration(namespace, vmi))
    annotations = json.loads(done.stdout)["metadata"].get("annotations", {})
    return ({key.removeprefix(PREFIX): value for key, value in annotations.items()
             if key.startswith(PREFIX)}, done.stderr)


@pytest.fixture
def sample_cluster(plane: ControlPlane) -> Iterator[ControlPlane]:
    """samples/cluster/ in the API server (its policies through the webhook), and the
    service's cache caught up with it."""
    for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml"):
        plane.kubectl("apply", "-f", str(SAMPLE_CLUSTER / name))
    deadline = time.monotonic() + DEADLINE
    while stamped(plane, "hpc", "gold-db-vmi")[0].get("policy") != "gold-tier-db-policy":
        assert time.monotonic() < deadline, "the service never saw the sample cluster"
        time.sleep(0.2)
    yield plane
    plane.kubectl("delete", "virtualmachineinstancemigrations", "--all", "--all-namespaces",
                  "--wait=false")


EXPECTED = {
    ("hpc", "db-vmi"): {
        "policy": "my-awesome-policy", "allowAutoConverge": "true",
        "bandwidthPerMigration": "217Ki", "completionTimeoutPerGiB": "23",
        "allowPostCopy": "false", "allowWorkloadDisruption": "false"},
    ("hpc", "gold-db-vmi"): {
        "policy": "gold-tier-db-policy", "bandwidthPerMigration": "1Gi",
        "completionTimeoutPerGiB": "800", "allowPostCopy": "true",
        "allowWorkloadDisruption": "true"},
    ("prod", "web-vmi"): {
        "policy": "web-app-policy", "allowAutoConverge": "true",
        "bandwidthPerMigration": "64Mi"},
    ("default", "plain-vmi"): {},
}
"""The README's table of stamps."""


@pytest.mark.parametrize(("namespace", "vmi"), list(EXPECTED), ids="/".join)
def test_a_migration_is_stored_with_its_policy_s_annotations(
        sample_cluster: ControlPlane, namespace: str, vmi: str) -> None:
    annotations, _ = stamped(sample_cluster, namespace, vmi)
    assert annotations == EXPECTED[namespace, vmi]


def test_a_migration_of_a_missing_vmi_is_created_with_the_warning(
        sample_cluster: ControlPlane) -> None:
    annotations, warnings = stamped(sample_cluster, "default", "no-such-vmi")
    assert annotations == {}
    assert ("Warning: no migration policy applied: VMI 'no-such-vmi' not found in namespace "
            "'default'") in warnings


def test_type_mistakes_are_refused_by_the_crd_schema_in_the_api_server_s_words(
        plane: ControlPlane) -> None:
    done = apply_policy(plane, "three-mistakes")
    assert done.returncode == 1
    assert 'The MigrationPolicy "three-mistakes" is invalid' in done.stderr
    assert "spec.completionTimeoutPerGiB: Invalid value: \"string\"" in done.stderr


def test_a_migration_already_stamped_gets_no_patch(sample_cluster: ControlPlane,
                                                   webhook: RunningService) -> None:
    """Created with the annotations its policy gives: the webhook allows it as it is."""
    annotations, _ = stamped(sample_cluster, "hpc", "db-vmi")
    document = json.loads(migration("hpc", "db-vmi"))
    document["metadata"]["annotations"] = {PREFIX + key: value
                                           for key, value in annotations.items()}
    with webhook.client() as client:
        before = scrape(client)
        done = sample_cluster.kubectl("create", "-f", "-", "-o", "json",
                                      stdin=json.dumps(document))
        after = scrape(client)
    stored = json.loads(done.stdout)["metadata"]["annotations"]
    assert stored == document["metadata"]["annotations"]
    webhook_path = "/mutate-virtualmachineinstancemigration"
    assert reviews(after, webhook_path, "allowed") == reviews(before, webhook_path,
                                                              "allowed") + 1
    assert reviews(after, webhook_path, "patched") == reviews(before, webhook_path, "patched")


def reviews(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], webhook: str,
            outcome: str) -> float:
    return value(samples, "reviews_total", webhook=webhook, outcome=outcome) or 0.0
