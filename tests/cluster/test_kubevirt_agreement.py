"""Does KubeVirt agree with the stamps? Through the real API server (issue 21): the
service, registered and on the shipped ServiceAccount (so exactly the shipped RBAC),
watches the migrations; the test writes each migration's status as KubeVirt's controllers
write it (the status subresource), and reads the counts on /metrics and the disagreements
in the service's log. And `explain`'s effective configuration, with and without a KubeVirt
CR.

The service is the session's: counts are compared before and after. A check is known to be
done, and nothing else counted, when a marker migration written after it is counted too
(one watch delivers the migrations' events in order)."""

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.cluster_state import apply, delete_namespace, namespace, policy, vmi
from tests.support.control_plane import ControlPlane
from tests.support.live_cluster import scrape, value
from tests.support.service import REPO, SAMPLE_CLUSTER, RunningService, run_cli

DEADLINE = 30.0
PREFIX = "migrations.kubevirt.io/"
RESULTS = ("agree", "disagree", "unstamped", "no-policy")
MIGRATIONS = "virtualmachineinstancemigrations"
SPACE = "stamp-checks"
"""The test's own namespace: the markers, and VMIs and a policy of its own."""
LABEL = "test=stamp-checks"
"""On every migration this module creates, so that it deletes exactly those."""
OWN_POLICY = "stamp-checks-policy"
SAMPLE_POLICIES = {document["metadata"]["name"]: document for document in yaml.safe_load_all(
    (SAMPLE_CLUSTER / "policies.yaml").read_text())}
EXPECTED_STAMPS = {("hpc", "db-vmi"): "my-awesome-policy",
                   ("hpc", "gold-db-vmi"): "gold-tier-db-policy",
                   ("prod", "web-vmi"): "web-app-policy",
                   ("default", "plain-vmi"): None,
                   (SPACE, "status-vmi"): OWN_POLICY}
"""The policy each VMI's migrations are stamped with, as the sample cluster is."""

Counts = dict[str, float]


def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll `check` until it holds (the deadline only ends a failure)."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


@dataclass(frozen=True)
class Migration:
    namespace: str
    name: str
    uid: str
    stamp: str | None


def create_migration(plane: ControlPlane, namespace_name: str, vmi_name: str) -> Migration:
    """A migration of the VMI, created through the registered webhook (which stamps it)."""
    document = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                "metadata": {"generateName": f"check-{vmi_name}-", "namespace": namespace_name,
                             "labels": dict([LABEL.split("=")])},
                "spec": {"vmiName": vmi_name}}
    created = json.loads(plane.kubectl("create", "-f", "-", "-o", "json",
                                       stdin=json.dumps(document)).stdout)
    metadata = created["metadata"]
    return Migration(namespace_name, metadata["name"], metadata["uid"],
                     (metadata.get("annotations") or {}).get(PREFIX + "policy"))


def write_status(plane: ControlPlane, resource: str, namespace_name: str, name: str,
                 status: dict[str, Any]) -> None:
    """A merge patch of the status subresource, as KubeVirt's controllers write status."""
    plane.kubectl("patch", resource, name, "-n", namespace_name, "--subresource=status",
                  "--type=merge", "-p", json.dumps({"status": status}))


def kubevirt_chose(plane: ControlPlane, migration: Migration, policy_name: str | None,
                   phase: str = "Running") -> None:
    """The migration's own status.migrationState, as recent KubeVirt releases write it."""
    state = {"migrationUid": migration.uid}
    if policy_name is not None:
        state["migrationPolicyName"] = policy_name
    write_status(plane, MIGRATIONS, migration.namespace, migration.name,
                 {"phase": phase, "migrationState": state})


def dry_run_stamp(plane: ControlPlane, namespace_name: str, vmi_name: str) -> str | None:
    """The policy the webhook stamps a migration of the VMI with now (a server-side dry
    run: the webhook is called, nothing is stored)."""
    document = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                "metadata": {"generateName": "dry-run-", "namespace": namespace_name},
                "spec": {"vmiName": vmi_name}}
    done = plane.kubectl("create", "--dry-run=server", "-f", "-", "-o", "json",
                         stdin=json.dumps(document))
    annotations = json.loads(done.stdout)["metadata"].get("annotations") or {}
    stamp: str | None = annotations.get(PREFIX + "policy")
    return stamp


def counts(client: httpx.Client) -> Counts:
    samples = scrape(client)
    return {result: value(samples, "stamp_checks_total", result=result) or 0.0
            for result in RESULTS}


def in_flight(client: httpx.Client) -> float | None:
    return value(scrape(client), "cache_objects", resource=MIGRATIONS)


def expect_counted(plane: ControlPlane, client: httpx.Client, before: Counts,
                   **added: int) -> None:
    """The counts are `before` plus `added` (results with `-` for `_`), and nothing else:
    checked once a marker migration, written after everything the test did, is counted
    (one result the test does not expect, so that it cannot stand in for one)."""
    added = {result.replace("_", "-"): count for result, count in added.items()}
    marker_result = "unstamped" if "no-policy" in added else "no-policy"
    marker = create_migration(plane, SPACE, "marker-vmi")
    assert marker.stamp is None
    kubevirt_chose(plane, marker, "marker-policy" if marker_result == "unstamped" else None)
    target = {result: before[result] + added.get(result, 0) + (result == marker_result)
              for result in RESULTS}
    deadline = time.monotonic() + DEADLINE
    while (now := counts(client)) != target and time.monotonic() < deadline \
            and all(now[result] <= target[result] for result in RESULTS):
        time.sleep(0.1)
    assert {result: now[result] - before[result] for result in RESULTS} == {
        result: target[result] - before[result] for result in RESULTS}


def disagreements(service: RunningService, migration: Migration) -> list[str]:
    """The service's log lines about the migration's disagreement."""
    said = f"stamp check: migration {migration.namespace}/{migration.name} was stamped"
    return [line for line in service.log().splitlines() if said in line]


def disagreement(service: RunningService, migration: Migration, kubevirt_s: str | None,
                 reason: str) -> None:
    """One WARNING line naming the migration, both policies and `reason`."""
    applied = repr(kubevirt_s) if kubevirt_s is not None else "no policy"
    [line] = disagreements(service, migration)
    assert "WARNING" in line, line
    assert line.endswith(
        f"stamp check: migration {migration.namespace}/{migration.name} was stamped with "
        f"policy {migration.stamp!r}, KubeVirt applied {applied}: {reason}"), line


def next_second() -> None:
    """Until the wall clock is past the second it is in now. A migration's
    creationTimestamp, when it was stamped, is to the second (the API server truncates it;
    it runs on this host's clock), and the service takes a change it saw at or after that
    whole second for one made since the stamp. The changes the caller waited for were seen
    before this call, so a migration created from the next second on is stamped after them.
    A condition on the clock, not a guess at how long something takes: `time.sleep` never
    returns early, and on a loaded machine it only returns later, which the condition
    allows."""
    next_whole_second = math.floor(time.time()) + 1
    while (left := next_whole_second - time.time()) > 0:
        time.sleep(left)


@pytest.fixture(scope="module")
def log_start(webhook: RunningService) -> int:
    """Where the service's log was when this module began (the service is the session's:
    an API server restart of another module's test refuses it for a moment)."""
    return len(webhook.log())


@pytest.fixture(scope="module")
def own(log_start: int, installed: ControlPlane) -> Iterator[ControlPlane]:
    """The test's own namespace: marker-vmi (matched by no policy), status-vmi and its
    policy; at the end they are taken away, and the sample's policies `plane` applied."""
    apply(installed, namespace(SPACE), vmi(SPACE, "marker-vmi"),
          vmi(SPACE, "status-vmi", {"app": SPACE}),
          policy(OWN_POLICY, vmi_selector={"app": SPACE}, bandwidthPerMigration="32Mi"))
    yield installed
    installed.kubectl("delete", MIGRATIONS, "-A", "-l", LABEL, "--wait=false")
    installed.kubectl("delete", "migrationpolicy", OWN_POLICY, *SAMPLE_POLICIES,
                      "--ignore-not-found")
    delete_namespace(installed, SPACE)


@pytest.fixture
def plane(own: ControlPlane, webhook: RunningService) -> Iterator[ControlPlane]:
    """The sample cluster as its files say (labels and policies), the service caught up with
    it and with the migrations in flight, and the clock past the second of the last change;
    the test's migrations, and policies it made, deleted at the end."""
    as_the_files_say(own)
    eventually(lambda: all(dry_run_stamp(own, *key) == stamp
                           for key, stamp in EXPECTED_STAMPS.items()),
               "the service sees the sample cluster as its files say")
    with webhook.client() as client:
        eventually(lambda: in_flight(client) == unfinished(own),
                   "the service follows the migrations in flight")
    next_second()
    yield own
    own.kubectl("delete", MIGRATIONS, "-A", "-l", LABEL)
    own.kubectl("delete", "migrationpolicy", "aa-stamp-checks-policy", "--ignore-not-found")
    as_the_files_say(own)


def as_the_files_say(plane: ControlPlane) -> None:
    """The sample's namespaces, VMIs and policies, labels and specs as its files say (a
    relabel, a policy changed or deleted by a test undone)."""
    for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml"):
        plane.kubectl("apply", "-f", str(SAMPLE_CLUSTER / name))
        plane.kubectl("replace", "-f", str(SAMPLE_CLUSTER / name))


def unfinished(plane: ControlPlane) -> int:
    found = json.loads(plane.kubectl("get", MIGRATIONS, "-A", "-o", "json").stdout)["items"]
    return sum((item.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
               for item in found)


@pytest.fixture
def client(webhook: RunningService) -> Iterator[httpx.Client]:
    with webhook.client() as client:
        yield client


# Each result


def test_kubevirt_s_policy_the_stamp_s_is_agree(plane: ControlPlane,
                                                client: httpx.Client) -> None:
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    assert migration.stamp == "my-awesome-policy"
    kubevirt_chose(plane, migration, "my-awesome-policy")
    expect_counted(plane, client, before, agree=1)


def test_another_policy_is_disagree_and_one_warning(plane: ControlPlane, client: httpx.Client,
                                                    webhook: RunningService) -> None:
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    kubevirt_chose(plane, migration, "gold-tier-db-policy")
    expect_counted(plane, client, before, disagree=1)
    disagreement(webhook, migration, "gold-tier-db-policy",
                 "unknown: nothing this webhook saw changed since the stamp")


def test_a_policy_applied_to_an_unstamped_migration_is_unstamped(
        plane: ControlPlane, client: httpx.Client) -> None:
    """The mutating webhook was not called (its failure policy is Ignore), or no policy
    applied when it was: here, default/plain-vmi matches none."""
    before = counts(client)
    migration = create_migration(plane, "default", "plain-vmi")
    assert migration.stamp is None
    kubevirt_chose(plane, migration, "web-app-policy")
    expect_counted(plane, client, before, unstamped=1)


def test_neither_a_stamp_nor_kubevirt_s_policy_is_no_policy(plane: ControlPlane,
                                                            client: httpx.Client) -> None:
    before = counts(client)
    migration = create_migration(plane, "default", "plain-vmi")
    kubevirt_chose(plane, migration, None)
    expect_counted(plane, client, before, no_policy=1)


def test_checked_once_however_many_times_kubevirt_writes_the_status(
        plane: ControlPlane, client: httpx.Client) -> None:
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    write_status(plane, MIGRATIONS, "hpc", migration.name, {"phase": "Scheduling"})
    kubevirt_chose(plane, migration, "my-awesome-policy", phase="PreparingTarget")
    kubevirt_chose(plane, migration, "my-awesome-policy", phase="Running")
    kubevirt_chose(plane, migration, "my-awesome-policy", phase="Succeeded")
    expect_counted(plane, client, before, agree=1)


def test_kubevirt_s_choice_is_read_from_the_vmi_when_the_migration_s_status_lacks_it(
        plane: ControlPlane, client: httpx.Client) -> None:
    """Older releases write status.migrationState on the VMI only: one GET of the VMI (the
    shipped `get` on VMIs), for the same migrationUid."""
    samples = scrape(client)
    gets_before = value(samples, "direct_gets_total", resource="virtualmachineinstances",
                        result="found") or 0.0
    before = counts(client)
    migration = create_migration(plane, SPACE, "status-vmi")
    assert migration.stamp == OWN_POLICY
    write_status(plane, "virtualmachineinstances", SPACE, "status-vmi", {"migrationState": {
        "migrationUid": migration.uid, "migrationPolicyName": OWN_POLICY}})
    write_status(plane, MIGRATIONS, SPACE, migration.name, {"phase": "Running"})
    expect_counted(plane, client, before, agree=1)
    gets = value(scrape(client), "direct_gets_total", resource="virtualmachineinstances",
                 result="found")
    assert gets == gets_before + 1


def test_a_vmi_state_of_another_migration_is_not_counted(plane: ControlPlane,
                                                          client: httpx.Client) -> None:
    before = counts(client)
    migration = create_migration(plane, SPACE, "status-vmi")
    write_status(plane, "virtualmachineinstances", SPACE, "status-vmi", {"migrationState": {
        "migrationUid": "an-earlier-migration", "migrationPolicyName": "someone-else"}})
    write_status(plane, MIGRATIONS, SPACE, migration.name, {"phase": "Running"})
    expect_counted(plane, client, before)


# Reasons


def test_reason_the_vmi_relabelled_since_the_stamp(plane: ControlPlane, client: httpx.Client,
                                                   webhook: RunningService) -> None:
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    plane.kubectl("label", "vmi", "db-vmi", "-n", "hpc", "tier=gold")
    eventually(lambda: dry_run_stamp(plane, "hpc", "db-vmi") == "gold-tier-db-policy",
               "the service sees the relabel")
    kubevirt_chose(plane, migration, "gold-tier-db-policy")
    expect_counted(plane, client, before, disagree=1)
    disagreement(webhook, migration, "gold-tier-db-policy",
                 "the VMI's labels changed since the stamp")


def test_reason_the_namespace_relabelled_since_the_stamp(
        plane: ControlPlane, client: httpx.Client, webhook: RunningService) -> None:
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    plane.kubectl("label", "namespace", "hpc", "hpc-workloads-")
    eventually(lambda: dry_run_stamp(plane, "hpc", "db-vmi") is None,
               "the service sees the relabel")
    kubevirt_chose(plane, migration, None)
    expect_counted(plane, client, before, disagree=1)
    disagreement(webhook, migration, None, "the namespace's labels changed since the stamp")


def test_reason_a_policy_created_since_the_stamp(plane: ControlPlane, client: httpx.Client,
                                                 webhook: RunningService) -> None:
    """A policy with my-awesome-policy's selectors whose name sorts first: it wins."""
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    apply(plane, {**SAMPLE_POLICIES["my-awesome-policy"],
                  "metadata": {"name": "aa-stamp-checks-policy"}})
    eventually(lambda: dry_run_stamp(plane, "hpc", "db-vmi") == "aa-stamp-checks-policy",
               "the service sees the new policy")
    kubevirt_chose(plane, migration, "aa-stamp-checks-policy")
    expect_counted(plane, client, before, disagree=1)
    disagreement(webhook, migration, "aa-stamp-checks-policy",
                 "policy 'aa-stamp-checks-policy' created since the stamp")


def test_reason_the_stamped_policy_changed_since_the_stamp(
        plane: ControlPlane, client: httpx.Client, webhook: RunningService) -> None:
    """my-awesome-policy now wants a label db-vmi lacks: no policy applies."""
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    plane.kubectl("patch", "migrationpolicy", "my-awesome-policy", "--type=merge", "-p",
                  json.dumps({"spec": {"selectors": {"virtualMachineInstanceSelector": {
                      "tier": "silver"}}}}))
    eventually(lambda: dry_run_stamp(plane, "hpc", "db-vmi") is None,
               "the service sees the change")
    kubevirt_chose(plane, migration, None)
    expect_counted(plane, client, before, disagree=1)
    disagreement(webhook, migration, None, "policy 'my-awesome-policy' changed since the stamp")


def test_reason_the_stamped_policy_deleted_since_the_stamp(
        plane: ControlPlane, client: httpx.Client, webhook: RunningService) -> None:
    before = counts(client)
    migration = create_migration(plane, "hpc", "db-vmi")
    plane.kubectl("delete", "migrationpolicy", "my-awesome-policy")
    eventually(lambda: dry_run_stamp(plane, "hpc", "db-vmi") is None,
               "the service sees the deletion")
    kubevirt_chose(plane, migration, None)
    expect_counted(plane, client, before, disagree=1)
    disagreement(webhook, migration, None, "policy 'my-awesome-policy' deleted since the stamp")


def test_reason_the_precedence(plane: ControlPlane, client: httpx.Client,
                               webhook: RunningService) -> None:
    """web-app-policy and team-web-policy tie on web-vmi (score 2, one VMI label each):
    the documented rule (the session's service) takes web-app-policy on its selector keys,
    KubeVirt's rule team-web-policy on its name."""
    kubevirt_rule = run_cli("explain", "--state", "kube", "--kubeconfig",
                            str(plane.kubeconfig), "--precedence", "kubevirt",
                            "--vmi", "web-vmi", "--namespace", "prod", "-o", "json")
    assert kubevirt_rule.returncode == 0, kubevirt_rule.stderr
    assert [found["name"] for found in json.loads(kubevirt_rule.stdout)["policies"]
            if found["wins"]] == ["team-web-policy"]
    before = counts(client)
    migration = create_migration(plane, "prod", "web-vmi")
    assert migration.stamp == "web-app-policy"
    kubevirt_chose(plane, migration, "team-web-policy")
    expect_counted(plane, client, before, disagree=1)
    disagreement(webhook, migration, "team-web-policy",
                 "the precedence: KubeVirt breaks this tie by its own rule (more VMI labels, "
                 "then the name): run --precedence kubevirt")


# Forgetting finished migrations


def test_a_migration_is_followed_while_in_flight_and_forgotten_when_finished(
        plane: ControlPlane, client: httpx.Client) -> None:
    start = in_flight(client)
    assert start is not None
    before = counts(client)
    succeeds = create_migration(plane, "hpc", "db-vmi")
    deleted = create_migration(plane, "hpc", "db-vmi")
    eventually(lambda: in_flight(client) == start + 2, "both followed")
    kubevirt_chose(plane, succeeds, "my-awesome-policy")
    kubevirt_chose(plane, deleted, "my-awesome-policy")
    expect_counted(plane, client, before, agree=2)
    marker_in_flight = start + 3  # the marker of expect_counted is Running
    assert in_flight(client) == marker_in_flight
    kubevirt_chose(plane, succeeds, "my-awesome-policy", phase="Succeeded")
    eventually(lambda: in_flight(client) == marker_in_flight - 1, "the succeeded forgotten")
    plane.kubectl("delete", MIGRATIONS, deleted.name, "-n", "hpc")
    eventually(lambda: in_flight(client) == marker_in_flight - 2, "the deleted forgotten")
    # a finished migration changed or deleted later is not counted again
    plane.kubectl("label", MIGRATIONS, succeeds.name, "-n", "hpc", "archived=yes")
    plane.kubectl("delete", MIGRATIONS, succeeds.name, "-n", "hpc")
    expect_counted(plane, client, before, agree=2, no_policy=1)  # the first marker


# The shipped RBAC


def test_the_shipped_role_lets_the_service_watch_migrations_and_nothing_more(
        own: ControlPlane, webhook: RunningService, log_start: int) -> None:
    """list and watch on migrations, no get (the watch delivers them whole); the KubeVirt
    CR is read by `explain` with its user's credentials, not by the service. Everything in
    this module ran on the shipped ServiceAccount's token: nothing was refused."""
    account = "system:serviceaccount:migration-policy-webhook:migration-policy-webhook"
    for verb, resource, answer in (
            ("list", f"{MIGRATIONS}.kubevirt.io", "yes"),
            ("watch", f"{MIGRATIONS}.kubevirt.io", "yes"),
            ("get", f"{MIGRATIONS}.kubevirt.io", "no"),
            ("get", "virtualmachineinstances.kubevirt.io", "yes"),
            ("list", "kubevirts.kubevirt.io", "no")):
        said = own.kubectl("auth", "can-i", verb, resource, "-A", "--as", account,
                           check=False).stdout.strip()
        assert said == answer, (verb, resource)
    assert f"{MIGRATIONS}: listed" in webhook.log()
    log = webhook.log()[log_start:]
    refused = [line for line in log.splitlines() if MIGRATIONS in line and (
        "permission missing" in line or " 403" in line or "forbidden" in line.lower())]
    assert refused == []


# explain: the effective configuration's sources


def effective(plane: ControlPlane) -> dict[str, dict[str, Any]]:
    done = run_cli("explain", "--state", "kube", "--kubeconfig", str(plane.kubeconfig),
                   "--vmi", "db-vmi", "--namespace", "hpc", "-o", "json")
    assert done.returncode == 0, done.stderr
    configuration: dict[str, dict[str, Any]] = json.loads(done.stdout)["effectiveConfiguration"]
    return configuration


POLICY = {"source": "policy", "policy": "my-awesome-policy"}
WITHOUT_CR = {
    "bandwidthPerMigration": {"value": "217Ki", **POLICY},
    "completionTimeoutPerGiB": {"value": 23, **POLICY},
    "progressTimeout": {"value": 150, "source": "default"},
    "allowAutoConverge": {"value": True, **POLICY},
    "allowPostCopy": {"value": False, **POLICY},
    "allowWorkloadDisruption": {"value": False, **POLICY},
}
"""db-vmi's, from my-awesome-policy (which sets neither progressTimeout nor maxDowntimeMs)."""


@pytest.fixture
def kubevirt_cr(plane: ControlPlane) -> Iterator[ControlPlane]:
    """The KubeVirt CR, created by the test in namespace kubevirt; both deleted after."""
    apply(plane, namespace("kubevirt"))
    yield plane
    plane.kubectl("delete", "kubevirts", "--all", "-n", "kubevirt", "--ignore-not-found")
    delete_namespace(plane, "kubevirt")


def test_explain_s_sources_without_and_with_a_kubevirt_cr(kubevirt_cr: ControlPlane) -> None:
    plane = kubevirt_cr
    assert effective(plane) == WITHOUT_CR
    apply(plane, {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                  "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                  "spec": {"configuration": {"migrations": {
                      "progressTimeout": 300, "completionTimeoutPerGiB": 800}}}})
    assert effective(plane) == {**WITHOUT_CR,
                                "progressTimeout": {"value": 300, "source": "cluster"}}


def test_the_kubectl_plugin_s_explain_shows_the_cluster_s_values(
        kubevirt_cr: ControlPlane) -> None:
    plane = kubevirt_cr
    apply(plane, yaml.safe_load((SAMPLE_CLUSTER / "kubevirt.yaml").read_text()))
    plugin_dir = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
    done = plane.kubectl("migration-policy", "explain", "db-vmi", "-n", "hpc", "-o", "yaml",
                         env_path=str(plugin_dir))  # KUBECONFIG: the admin's
    shown = yaml.safe_load(done.stdout)["effectiveConfiguration"]
    assert shown == {**WITHOUT_CR, "progressTimeout": {"value": 300, "source": "cluster"}}
