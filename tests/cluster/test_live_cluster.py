"""Through the real API server: live changes reach the next migration's stamp, the shipped
failure policies hold with the service down, the commands read the real cluster, and the
shipped base applies as a whole."""

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.cluster.test_kubectl_and_stamps import stamped
from tests.support.control_plane import ControlPlane
from tests.support.service import REPO, SAMPLE_CLUSTER, SAMPLES, RunningService, free_port, run_cli

DEADLINE = 30.0


def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll `check` until it holds (no timed assertion: the deadline only ends a failure)."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


@pytest.fixture
def cluster(webhook: RunningService, installed: ControlPlane) -> Iterator[ControlPlane]:
    for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml"):
        installed.kubectl("apply", "-f", str(SAMPLE_CLUSTER / name))
    eventually(lambda: stamped(installed, "hpc", "db-vmi")[0].get("policy")
               == "my-awesome-policy", "the service sees the sample cluster")
    yield installed
    installed.kubectl("delete", "virtualmachineinstancemigrations", "--all",
                      "--all-namespaces", "--wait=false")
    installed.kubectl("delete", "migrationpolicies", "--all")
    # labels set by a test are undone (`apply` would keep the ones it did not set)
    installed.kubectl("replace", "-f", str(SAMPLE_CLUSTER / "namespaces.yaml"),
                      "-f", str(SAMPLE_CLUSTER / "vmis.yaml"))


def policy_of(plane: ControlPlane, namespace: str, vmi: str) -> str | None:
    return stamped(plane, namespace, vmi)[0].get("policy")


def test_a_relabelled_vmi_gets_the_policy_of_its_new_labels(cluster: ControlPlane) -> None:
    cluster.kubectl("label", "vmi", "db-vmi", "-n", "hpc", "tier=gold", "--overwrite")
    eventually(lambda: policy_of(cluster, "hpc", "db-vmi") == "gold-tier-db-policy",
               "db-vmi, now tier=gold, is stamped by gold-tier-db-policy")


def test_a_relabelled_namespace_takes_its_vmis_out_of_a_policy(cluster: ControlPlane) -> None:
    cluster.kubectl("label", "namespace", "hpc", "hpc-workloads-", "--overwrite")
    eventually(lambda: policy_of(cluster, "hpc", "db-vmi") is None,
               "db-vmi's namespace no longer matches my-awesome-policy")


def test_a_policy_created_changed_and_deleted_shows_in_the_next_stamp(
        cluster: ControlPlane) -> None:
    document = {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
                "metadata": {"name": "plain-policy"},
                "spec": {"bandwidthPerMigration": "32Mi",
                         "selectors": {"virtualMachineInstanceSelector": {"app": "plain"}}}}
    cluster.kubectl("label", "vmi", "plain-vmi", "-n", "default", "app=plain", "--overwrite")
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(document))
    eventually(lambda: stamped(cluster, "default", "plain-vmi")[0].get(
        "bandwidthPerMigration") == "32Mi", "the new policy stamps plain-vmi")
    document["spec"]["bandwidthPerMigration"] = "48Mi"
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(document))
    eventually(lambda: stamped(cluster, "default", "plain-vmi")[0].get(
        "bandwidthPerMigration") == "48Mi", "the changed policy stamps its new bandwidth")
    cluster.kubectl("delete", "migrationpolicy", "plain-policy")
    eventually(lambda: policy_of(cluster, "default", "plain-vmi") is None,
               "the deleted policy stamps nothing")


@pytest.fixture
def service_down(webhook: RunningService, installed: ControlPlane,
                 tmp_path: Path) -> Iterator[ControlPlane]:
    """The webhook configurations pointed at a port where nothing listens (a stopped
    service), then put back as registered."""
    registered = installed.kubectl("get", "validatingwebhookconfiguration,"
                                   "mutatingwebhookconfiguration", "-o", "yaml").stdout
    documents = yaml.safe_load(registered)
    for item in documents["items"]:
        item["metadata"] = {"name": item["metadata"]["name"]}
    dead = free_port()
    for item in documents["items"]:
        for hook in item["webhooks"]:
            path = hook["clientConfig"]["url"].split("/", 3)[3]
            hook["clientConfig"]["url"] = f"https://127.0.0.1:{dead}/{path}"
    installed.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(documents))
    yield installed
    for item in documents["items"]:
        for hook in item["webhooks"]:
            path = hook["clientConfig"]["url"].split("/", 3)[3]
            hook["clientConfig"]["url"] = f"https://127.0.0.1:{webhook.port}/{path}"
    installed.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(documents))


def test_with_the_service_down_policy_writes_fail_closed_and_migrations_go_through(
        service_down: ControlPlane) -> None:
    refused = service_down.kubectl("apply", "-f",
                                   str(SAMPLES / "policies" / "my-awesome-policy.yaml"),
                                   check=False)
    assert refused.returncode == 1
    assert 'failed calling webhook "validate.migrationpolicies.migrations.kubevirt.io"' \
        in refused.stderr
    annotations, _ = stamped(service_down, "default", "plain-vmi")
    assert annotations == {}  # created, unstamped (failurePolicy: Ignore)
    service_down.kubectl("delete", "virtualmachineinstancemigrations", "--all", "-n", "default")


def winners(explained: str) -> list[str]:
    return [policy["name"] for policy in json.loads(explained)["policies"] if policy["wins"]]


def test_explain_and_audit_read_the_real_cluster(cluster: ControlPlane) -> None:
    explained = run_cli("explain", "--state", "kube", "--kubeconfig", str(cluster.kubeconfig),
                        "--vmi", "gold-db-vmi", "--namespace", "hpc", "-o", "json")
    assert explained.returncode == 0, explained.stderr
    assert winners(explained.stdout) == ["gold-tier-db-policy"]
    audited = run_cli("audit", "--state", "kube", "--kubeconfig", str(cluster.kubeconfig))
    assert audited.returncode == 0, audited.stderr
    assert "gold-tier-db-policy" in audited.stdout


def test_review_answers_a_sample_as_the_real_cluster_decides(cluster: ControlPlane) -> None:
    reviewed = run_cli("review", str(SAMPLES / "reviews" / "migration-gold-db-vmi.json"),
                       "--state", "kube", "--kubeconfig", str(cluster.kubeconfig))
    assert reviewed.returncode == 0, reviewed.stderr
    assert '"migrations.kubevirt.io/policy": "gold-tier-db-policy"' in reviewed.stdout
    assert '"migrations.kubevirt.io/bandwidthPerMigration": "1Gi"' in reviewed.stdout


def test_the_kubectl_plugin_reads_the_real_cluster(cluster: ControlPlane) -> None:
    plugin_dir = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
    done = cluster.kubectl("migration-policy", "explain", "db-vmi", "-n", "hpc", "-o", "json",
                           env_path=str(plugin_dir))
    assert winners(done.stdout) == ["my-awesome-policy"]


def test_the_base_applies_as_a_whole_on_a_server_dry_run(webhook: RunningService,
                                                         installed: ControlPlane) -> None:
    done = installed.kubectl("apply", "--dry-run=server", "-k", str(REPO / "manifests"))
    assert "deployment.apps/migration-policy-webhook created (server dry run)" in done.stdout \
        or "deployment.apps/migration-policy-webhook configured (server dry run)" in done.stdout


def etcd_revision(plane: ControlPlane) -> int:
    """etcd's current revision, through its JSON gateway."""
    answer = httpx.post(f"{plane.etcd_url}/v3/kv/range", json={"key": "AA=="}, timeout=10)
    answer.raise_for_status()
    return int(answer.json()["header"]["revision"])


def test_after_compaction_and_an_api_server_restart_decisions_are_right_again(
        cluster: ControlPlane, webhook: RunningService) -> None:
    """etcd compacted past every watch's resourceVersion, then the API server restarted:
    the service's watches resume to a 410, list again, and a change made after the
    restart shows in the next stamp."""
    cluster.kubectl("label", "vmi", "web-vmi", "-n", "prod", "touched=yes")
    answer = httpx.post(f"{cluster.etcd_url}/v3/kv/compaction",
                        json={"revision": str(etcd_revision(cluster)), "physical": True},
                        timeout=30)
    answer.raise_for_status()
    cluster.stop_apiserver()
    cluster.start_apiserver()
    cluster.kubectl("label", "vmi", "db-vmi", "-n", "hpc", "tier=gold", "--overwrite")
    eventually(lambda: policy_of(cluster, "hpc", "db-vmi") == "gold-tier-db-policy",
               "a relabel after the restart reaches the stamp")
    assert policy_of(cluster, "prod", "web-vmi") == "web-app-policy"
    assert "cannot resume the watch" in webhook.log()  # the 410, and a list again


def gated_policy(max_downtime_ms: int, bandwidth: str = "64Mi") -> str:
    return json.dumps({
        "apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
        "metadata": {"name": "gated-policy"},
        "spec": {"maxDowntimeMs": max_downtime_ms, "bandwidthPerMigration": bandwidth,
                 "selectors": {"virtualMachineInstanceSelector": {"app": "gated"}}}})


def test_a_gated_field_unchanged_on_update_is_allowed_and_changed_is_refused(
        cluster: ControlPlane) -> None:
    """A policy stored with maxDowntimeMs while the validating webhook was not registered
    (as before the webhook was installed): with its gate off, an UPDATE that keeps the
    field is allowed, one that changes it is refused."""
    configuration = json.loads(cluster.kubectl(
        "get", "validatingwebhookconfiguration", "migration-policy-webhook", "-o",
        "json").stdout)
    configuration["metadata"] = {"name": configuration["metadata"]["name"]}
    cluster.kubectl("delete", "validatingwebhookconfiguration", "migration-policy-webhook")
    eventually(lambda: cluster.kubectl("apply", "-f", "-", stdin=gated_policy(300),
                                       check=False).returncode == 0,
               "the policy is stored without the validating webhook")
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(configuration))
    attempt = iter(range(301, 400))
    refused: list[str] = []

    def change_is_refused() -> bool:
        done = cluster.kubectl("apply", "-f", "-", stdin=gated_policy(next(attempt)),
                               check=False)
        refused.append(done.stderr)
        return done.returncode == 1

    eventually(change_is_refused, "changing maxDowntimeMs is refused once registered")
    assert "spec.maxDowntimeMs: setting it to" in refused[-1]
    assert "feature gate" in refused[-1]
    stored = json.loads(cluster.kubectl("get", "migrationpolicy", "gated-policy", "-o",
                                        "json").stdout)
    kept = stored["spec"]["maxDowntimeMs"]
    done = cluster.kubectl("apply", "-f", "-", stdin=gated_policy(kept, bandwidth="128Mi"),
                           check=False)
    assert done.returncode == 0, done.stderr
