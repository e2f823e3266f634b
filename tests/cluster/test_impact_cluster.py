"""Through the real API server (issue 20): `kubectl apply --dry-run=server` prints the
webhook's `impact:` warning with the figures of the sample cluster and stores nothing; an
UPDATE says what the policy governs now; a change in the cluster shows in the next
warnings; and `coverage --state kube` and `kubectl migration-policy coverage` read the real
cluster as a plain scan of its objects does."""

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.policy.model import Policy
from app.policy.precedence import Precedence
from tests.support.control_plane import ControlPlane
from tests.support.coverage_oracle import (
    State,
    coverage_by_scan,
    impact_by_scan,
    status_by_scan,
)
from tests.support.service import REPO, SAMPLE_CLUSTER, SAMPLES, RunningService, run_cli

DEADLINE = 30.0
GROUP = "migrations.kubevirt.io"
EXTRA_VMIS = ("batch-2",)
"""VMIs a test adds to the sample cluster, deleted after it."""


def eventually(probe: Callable[[], Any], check: Callable[[Any], bool], what: str) -> Any:
    """Poll `probe` until `check` holds of its result (no timed assertion: the deadline
    only ends a failure)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = probe()
        if check(found):
            return found
        assert time.monotonic() < deadline, f"never: {what} (last: {found!r})"
        time.sleep(0.2)


def policy_document(name: str, selectors: dict[str, Any],
                    bandwidth: str = "64Mi") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": name},
            "spec": {"bandwidthPerMigration": bandwidth, "selectors": selectors}}


def dry_run(plane: ControlPlane, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --dry-run=server -f -` of the document."""
    return plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(document))


def impact_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning: impact:")]


def stored(plane: ControlPlane, name: str) -> bool:
    return plane.kubectl("get", "migrationpolicy", name, check=False).returncode == 0


def eventually_impact(plane: ControlPlane, document: dict[str, Any],
                      wanted: str) -> subprocess.CompletedProcess[str]:
    """Dry-run the document until kubectl prints `wanted` as the impact warning: the
    webhook follows the cluster through watches and a coverage pass (at most every 0.5 s
    after a change)."""
    done: subprocess.CompletedProcess[str] = eventually(
        lambda: dry_run(plane, document),
        lambda done: impact_lines(done.stderr) == [f"Warning: {wanted}"],
        f"kubectl prints Warning: {wanted}")
    return done


ANY_DB = policy_document("any-db", {"virtualMachineInstanceSelector": {"workload-type": "db"}})
ANY_DB_IMPACT = ("impact: matches 2 VMIs but governs none: gold-tier-db-policy wins 1, "
                 "my-awesome-policy wins 1")


@pytest.fixture
def sample(webhook: RunningService, installed: ControlPlane) -> Iterator[ControlPlane]:
    """samples/cluster/ in the API server (its policies through the webhook), once the
    webhook's view of the VMIs has it; afterwards no policy is left, the sample's labels
    are put back and the VMIs a test added are deleted."""
    for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml"):
        installed.kubectl("apply", "-f", str(SAMPLE_CLUSTER / name))
    eventually_impact(installed, ANY_DB, ANY_DB_IMPACT)
    yield installed
    installed.kubectl("delete", "migrationpolicies", "--all")
    installed.kubectl("delete", "vmi", "-n", "prod", *EXTRA_VMIS, "--ignore-not-found")
    installed.kubectl("replace", "-f", str(SAMPLE_CLUSTER / "namespaces.yaml"),
                      "-f", str(SAMPLE_CLUSTER / "vmis.yaml"))


def cluster_state(plane: ControlPlane) -> State:
    """The namespaces, VMIs and policies the API server holds, as the oracle reads them."""
    def items(*resource: str) -> list[dict[str, Any]]:
        return list(json.loads(plane.kubectl("get", *resource, "-o", "json").stdout)["items"])

    namespaces = {item["metadata"]["name"]: item["metadata"].get("labels", {})
                  for item in items("namespaces")}
    vmis = {(item["metadata"]["namespace"], item["metadata"]["name"]):
            item["metadata"].get("labels", {}) for item in items("vmis", "--all-namespaces")}
    policies = [Policy(item["metadata"]["name"],
                       item["spec"]["selectors"].get("namespaceSelector") or {},
                       item["spec"]["selectors"].get("virtualMachineInstanceSelector") or {})
                for item in items("migrationpolicies")]
    return State(namespaces, vmis, policies)


# --- server dry runs -------------------------------------------------------------------------

@pytest.mark.parametrize(("document", "wanted"), [
    (policy_document("web-team-app", {"namespaceSelector": {"env": "prod"},
                                      "virtualMachineInstanceSelector": {"app": "web",
                                                                         "team": "web"}}),
     "impact: would govern 1 VMI (1 now governed by web-app-policy); matches 1"),
    (policy_document("batch", {"virtualMachineInstanceSelector": {"app": "batch"}}),
     "impact: would govern 1 VMI (1 by no policy); matches 1"),
    (ANY_DB, ANY_DB_IMPACT),
    (policy_document("qa", {"namespaceSelector": {"env": "qa"}}),
     "impact: matches no VMI now"),
], ids=["takes-from-a-policy", "takes-from-none", "beaten-everywhere", "matches-nothing"])
def test_a_server_dry_run_prints_the_impact_and_stores_nothing(
        sample: ControlPlane, document: dict[str, Any], wanted: str) -> None:
    done = eventually_impact(sample, document, wanted)
    assert done.stdout == (f"migrationpolicy.{GROUP}/{document['metadata']['name']} created "
                           "(server dry run)\n")
    assert done.stderr.splitlines() == [f"Warning: {wanted}"]
    assert not stored(sample, document["metadata"]["name"])


def test_the_figures_are_those_of_a_plain_scan_of_the_cluster(sample: ControlPlane) -> None:
    """The numbers of the dry run of `web-team-app` and `any-db` against the oracle run on
    what the API server holds."""
    state = cluster_state(sample)
    web = impact_by_scan(Policy("web-team-app", {"env": "prod"}, {"app": "web", "team": "web"}),
                         state.policies, state.vmis, state.namespaces, Precedence.DOCUMENTED)
    assert (web.matches, web.governs, dict(web.taken_from)) == (1, 1, {"web-app-policy": 1})
    db = impact_by_scan(Policy("any-db", {}, {"workload-type": "db"}), state.policies,
                        state.vmis, state.namespaces, Precedence.DOCUMENTED)
    assert (db.matches, db.governs, dict(db.kept_by)) == (
        2, 0, {"gold-tier-db-policy": 1, "my-awesome-policy": 1})


def test_the_readme_s_sample_policy_changed_on_a_dry_run_says_what_it_governs_now(
        sample: ControlPlane) -> None:
    """my-awesome-policy is stored (from policies.yaml): applying the sample file with
    another bandwidth is an UPDATE."""
    document = policy_document(
        "my-awesome-policy", {"namespaceSelector": {"hpc-workloads": "True",
                                                    "xyz-workloads-type": ""},
                              "virtualMachineInstanceSelector": {"workload-type": "db",
                                                                 "operating-system": ""}},
        bandwidth="32Mi")
    done = eventually_impact(sample, document, "impact: would govern 1 VMI (1 it governs "
                             "already); matches 2; governs 1 now")
    assert done.stdout == f"migrationpolicy.{GROUP}/my-awesome-policy configured " \
        "(server dry run)\n"
    kept = json.loads(sample.kubectl("get", "migrationpolicy", "my-awesome-policy",
                                     "-o", "json").stdout)
    assert kept["spec"]["bandwidthPerMigration"] == "217Ki"  # the dry run stored nothing


def test_an_update_that_moves_a_policy_says_what_it_governs_now(sample: ControlPlane) -> None:
    """web-app-policy governs web-vmi; applied with selectors that match plain-vmi only, it
    would take that one from no policy and leave web-vmi: `governs 1 now`. Applied for
    real, the next UPDATE says it governs plain-vmi now."""
    moved = policy_document("web-app-policy", {"virtualMachineInstanceSelector":
                                               {"app": "batch"}})
    done = eventually_impact(sample, moved, "impact: would govern 1 VMI (1 by no policy); "
                             "matches 1; governs 1 now")
    applied = sample.kubectl("apply", "-f", "-", stdin=json.dumps(moved))
    assert applied.stdout == f"migrationpolicy.{GROUP}/web-app-policy configured\n"
    assert impact_lines(applied.stderr) == impact_lines(done.stderr)
    moved["spec"]["bandwidthPerMigration"] = "48Mi"
    eventually_impact(sample, moved, "impact: would govern 1 VMI (1 it governs already); "
                      "matches 1; governs 1 now")


def test_a_vmi_created_in_the_cluster_shows_in_the_next_impact(sample: ControlPlane) -> None:
    batch = policy_document("batch", {"virtualMachineInstanceSelector": {"app": "batch"}})
    eventually_impact(sample, batch, "impact: would govern 1 VMI (1 by no policy); matches 1")
    sample.kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
         "metadata": {"name": "batch-2", "namespace": "prod", "labels": {"app": "batch"}}}))
    eventually_impact(sample, batch, "impact: would govern 2 VMIs (2 by no policy); matches 2")


def test_a_policy_created_in_the_cluster_shows_in_the_next_impact(
        sample: ControlPlane) -> None:
    batch = policy_document("batch", {"virtualMachineInstanceSelector": {"app": "batch"}})
    sample.kubectl("apply", "-f", "-", stdin=json.dumps(batch))
    rival = policy_document("batch-in-default", {
        "namespaceSelector": {"kubernetes.io/metadata.name": "default"},
        "virtualMachineInstanceSelector": {"app": "batch"}})
    eventually_impact(sample, rival,
                      "impact: would govern 1 VMI (1 now governed by batch); matches 1")


# --- coverage of the real cluster ------------------------------------------------------------

def expected_policies(state: State) -> list[dict[str, Any]]:
    shares = coverage_by_scan(state.policies, state.vmis, state.namespaces,
                              Precedence.DOCUMENTED)
    by_name = {policy.name: policy for policy in state.policies}
    return [{"name": name, "status": status_by_scan(by_name[name], share),
             "governs": share["governs"], "matches": share["matches"],
             "beatenBy": [{"name": winner, "vmis": count} for winner, count in
                          sorted(share["beatenBy"].items(),
                                 key=lambda item: (-item[1], item[0]))],
             "tieBreaks": share["tieBreaks"]}
            for name, share in sorted(shares.items())]


def test_coverage_of_the_real_cluster_is_a_plain_scan_of_its_objects(
        sample: ControlPlane) -> None:
    done = run_cli("coverage", "--state", "kube", "--kubeconfig", str(sample.kubeconfig),
                   "-o", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    state = cluster_state(sample)
    assert document["policies"] == expected_policies(state)
    statuses = {policy["name"]: policy["status"] for policy in document["policies"]}
    assert statuses == {"gold-tier-db-policy": "active", "my-awesome-policy": "active",
                        "staging-policy": "unused", "team-web-policy": "shadowed",
                        "web-app-policy": "active"}
    assert document["vmiCount"] == len(state.vmis)
    text = run_cli("coverage", "--state", "kube", "--kubeconfig", str(sample.kubeconfig),
                   "--fail-on", "shadowed")
    assert text.returncode == 1
    assert text.stderr.splitlines() == [
        "--fail-on shadowed: team-web-policy: shadowed (matches 1 VMI(s), all won by "
        "web-app-policy (1))"]
    assert "VMIs in the cluster (precedence documented)" in text.stdout


def test_the_kubectl_plugin_reports_the_real_cluster(sample: ControlPlane) -> None:
    plugin_dir = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
    done = sample.kubectl("migration-policy", "coverage", "-o", "yaml", "--precedence",
                          "kubevirt", env_path=str(plugin_dir))
    document = yaml.safe_load(done.stdout)
    statuses = {policy["name"]: policy["status"] for policy in document["policies"]}
    assert (statuses["team-web-policy"], statuses["web-app-policy"]) == ("active", "shadowed")
    failed = sample.kubectl("migration-policy", "coverage", "--fail-on", "unused",
                            env_path=str(plugin_dir), check=False)
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        "--fail-on unused: staging-policy: unused (matches no VMI)"]


def test_the_sample_policy_file_dry_run_against_the_sample_cluster(
        sample: ControlPlane) -> None:
    """samples/policies/my-awesome-policy.yaml (v1beta1) while the sample's own version is
    stored: an UPDATE whose impact is the sample's."""
    wanted = ["Warning: impact: would govern 1 VMI (1 it governs already); matches 2; "
              "governs 1 now"]
    done = eventually(lambda: sample.kubectl(
        "apply", "--dry-run=server", "-f", str(SAMPLES / "policies" / "my-awesome-policy.yaml")),
        lambda done: impact_lines(done.stderr) == wanted, "the sample file's impact")
    assert "Warning: spec.bandwidthPerMigration \"217Ki\" is below 1Mi" in done.stderr
    assert done.stdout == f"migrationpolicy.{GROUP}/my-awesome-policy configured " \
        "(server dry run)\n"
