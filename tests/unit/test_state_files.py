"""Cluster state read from a directory of manifests (`--state DIR`, contract §5)."""

import json
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.policy.precedence import Precedence
from app.state.files import DirectoryState, StateError, load_snapshot
from tests.support.service import SAMPLE_CLUSTER

POLICY = {
    "apiVersion": "migrations.kubevirt.io/v1alpha1",
    "kind": "MigrationPolicy",
    "metadata": {"name": "json-policy"},
    "spec": {"selectors": {"virtualMachineInstanceSelector": {"app": "web"}}},
}


def test_sample_cluster_loads() -> None:
    snapshot = load_snapshot(SAMPLE_CLUSTER, Precedence.DOCUMENTED)
    assert {p.name for p in snapshot.policies} == {
        "my-awesome-policy", "gold-tier-db-policy", "web-app-policy", "team-web-policy",
        "staging-policy"}
    assert set(snapshot.namespaces) == {"hpc", "prod", "default"}
    assert snapshot.vmis[("hpc", "db-vmi")] == {"workload-type": "db", "operating-system": ""}
    assert len(snapshot.vmis) == 4


def test_json_multi_document_and_list_files(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    (tmp_path / "many.yml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: '1'}}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n")
    (tmp_path / "list.yaml").write_text(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstanceList\nitems:\n"
        "- metadata: {name: v1, namespace: a, labels: {app: web}}\n  kind: VirtualMachineInstance\n"
        "- metadata: {name: v2}\n  kind: VirtualMachineInstance\n")
    (tmp_path / "notes.txt").write_text("not a manifest, ignored")
    snapshot = load_snapshot(tmp_path, Precedence.DOCUMENTED)
    assert [p.name for p in snapshot.policies] == ["json-policy"]
    assert snapshot.namespaces == {"a": {"x": "1"}, "b": {}}
    assert snapshot.vmis == {("a", "v1"): {"app": "web"}, ("default", "v2"): {}}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("kind: [unclosed\n", "not valid YAML or JSON"),
        ("- just\n- a list\n", "must be a mapping"),
        ("kind: MigrationPolicy\nmetadata: {name: bad}\nspec: {selectors: {}, "
         "bandwidthPerMigration: -1Gi}\n", '"-1Gi" is negative'),
        ("kind: Namespace\nmetadata: {name: n, labels: {on: true}}\n", "labels must map strings"),
    ],
    ids=["broken-yaml", "not-a-mapping", "invalid-policy", "non-string-label"],
)
def test_problems_are_reported_with_the_file(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(content)
    with pytest.raises(StateError) as error:
        load_snapshot(tmp_path, Precedence.DOCUMENTED)
    assert expected in str(error.value)
    assert "bad.yaml" in str(error.value)


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no such directory"):
        load_snapshot(tmp_path / "nope", Precedence.DOCUMENTED)
    (tmp_path / "file.yaml").write_text("{}")
    with pytest.raises(StateError, match="not a directory of manifests"):
        load_snapshot(tmp_path / "file.yaml", Precedence.DOCUMENTED)


def test_reload_keeps_last_good_state(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    state = DirectoryState(tmp_path, Precedence.DOCUMENTED)
    assert state.policies.winner({"app": "web"}, {}).name == "json-policy"
    assert state.reload_if_changed() is False
    (tmp_path / "policy.json").write_text("{broken")
    assert state.reload_if_changed() is False
    assert "policy.json" in (state.last_error or "")
    assert state.policies.winner({"app": "web"}, {}).name == "json-policy"
    renamed = {**POLICY, "metadata": {"name": "renamed"}}
    (tmp_path / "policy.json").write_text(json.dumps(renamed))
    assert state.reload_if_changed() is True
    assert state.last_error is None
    assert state.policies.winner({"app": "web"}, {}).name == "renamed"


def _samples(state: DirectoryState) -> dict[tuple[str, tuple[str, ...]], float]:
    registry = CollectorRegistry()
    registry.register(state.collector())
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sample.labels.values())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_files_are_never_stale_and_their_metrics_follow_the_last_good_load(
        tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    before = time.time()
    state = DirectoryState(tmp_path, Precedence.DOCUMENTED)
    assert state.staleness_warning() is None
    samples = _samples(state)
    objects = "migration_policy_webhook_cache_objects"
    synced = "migration_policy_webhook_cache_last_sync_timestamp_seconds"
    assert samples[(objects, ("migrationpolicies",))] == 1
    assert samples[(objects, ("virtualmachineinstances",))] == 0
    loaded = samples[(synced, ("namespaces",))]
    assert before <= loaded <= time.time()
    assert {name for name, _ in samples} == {objects, synced}

    (tmp_path / "policy.json").write_text("{broken")
    assert state.reload_if_changed() is False
    assert _samples(state)[(synced, ("namespaces",))] == loaded  # a failed load is no sync
    (tmp_path / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    assert state.reload_if_changed() is True
    samples = _samples(state)
    assert samples[(objects, ("namespaces",))] == 1
    assert samples[(synced, ("namespaces",))] >= loaded
