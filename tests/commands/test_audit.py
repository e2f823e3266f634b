"""`audit`: every MigrationPolicy already in the state, checked with the webhook's rules."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.kubeapi import MIGRATION_POLICIES, NAMESPACES, KubeApiServer, namespace, policy
from tests.support.service import SAMPLE_CLUSTER, SAMPLES, free_port, run_cli

INVALID_POLICY = """\
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata:
  name: stored-without-a-webhook
spec:
  bandwidthPerMigration: -1Gi
  completionTimeoutPerGiB: "23"
  selectors:
    virtualMachineInstanceSelector:
      workload-type: batch
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The sample cluster (policies, VMIs, namespaces) plus one invalid policy."""
    directory = tmp_path / "cluster"
    shutil.copytree(SAMPLE_CLUSTER, directory)
    (directory / "invalid.yaml").write_text(INVALID_POLICY)
    return directory


def test_audit_a_directory_reports_every_policy(state: Path) -> None:
    result = run_cli("audit", "--state", str(state))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    invalid = lines.index(f"{state / 'invalid.yaml'}: MigrationPolicy "
                          "'stored-without-a-webhook' is invalid:")
    assert lines[invalid + 1].startswith('  * spec.bandwidthPerMigration: "-1Gi" is negative')
    assert lines[invalid + 2].startswith("  * spec.completionTimeoutPerGiB: ")
    assert f"{state / 'policies.yaml'}#1: MigrationPolicy 'my-awesome-policy' is valid" in lines
    assert lines[-1] == f"5 MigrationPolicies in {state}: 4 valid, 1 invalid"
    assert "skipped" not in result.stdout  # the state's VMIs and namespaces are expected
    assert result.stderr == ""


def test_audit_the_sample_cluster_passes() -> None:
    result = run_cli("audit", "--state", str(SAMPLE_CLUSTER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(": 4 valid, 0 invalid")
    assert '  Warning: spec.bandwidthPerMigration "217Ki" is below 1Mi' in result.stdout


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_audit_output_for_programs(state: Path, output: str) -> None:
    result = run_cli("audit", "--state", str(state), "-o", output)
    assert result.returncode == 1
    document = (json.loads if output == "json" else yaml.safe_load)(result.stdout)
    assert document["state"] == str(state)
    assert (document["valid"], document["invalid"]) == (4, 1)
    by_name = {entry["name"]: entry for entry in document["policies"]}
    bad = by_name["stored-without-a-webhook"]
    assert bad["valid"] is False
    assert bad["source"] == str(state / "invalid.yaml")
    assert [(cause["reason"], cause["field"]) for cause in bad["causes"]] == [
        ("FieldValueInvalid", "spec.bandwidthPerMigration"),
        ("FieldValueTypeInvalid", "spec.completionTimeoutPerGiB")]
    assert by_name["my-awesome-policy"]["valid"] is True
    assert by_name["my-awesome-policy"]["causes"] == []
    assert "1Mi" in by_name["my-awesome-policy"]["warnings"][0]


def test_equal_selectors_are_reported_on_both_policies(tmp_path: Path) -> None:
    for name in ("first", "second"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            policy(name, vmi_selector={"app": "db"})))
    warned = run_cli("audit", "--state", str(tmp_path))
    assert warned.returncode == 0, warned.stdout
    assert warned.stdout.count('Warning: spec.selectors equal policy') == 2
    assert '"first" takes precedence' in warned.stdout
    denied = run_cli("audit", "--state", str(tmp_path), "--deny-duplicate-selectors")
    assert denied.returncode == 1
    assert denied.stdout.count("* spec.selectors: equal to the selectors of policy") == 2


def test_feature_gates_decide_as_in_the_webhook(tmp_path: Path) -> None:
    (tmp_path / "gated.yaml").write_text(yaml.safe_dump(
        policy("gated", vmi_selector={"app": "db"}, maxDowntimeMs=300)))
    without = run_cli("audit", "--state", str(tmp_path))
    assert without.returncode == 1
    assert "  * spec.maxDowntimeMs: setting it to 300 needs the" in without.stdout
    gated = run_cli("audit", "--state", str(tmp_path), "--feature-gates",
                    "MigrationDowntimeTuning")
    assert gated.returncode == 0, gated.stdout


def test_an_unreadable_file_fails_the_audit(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "policies" / "my-awesome-policy.yaml", tmp_path)
    (tmp_path / "broken.yaml").write_text("spec: [\n")
    result = run_cli("audit", "--state", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'broken.yaml'}: not valid YAML or JSON" in result.stderr
    assert "'my-awesome-policy' is valid" in result.stdout


def test_a_missing_state_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("audit", "--state", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert f"--state {tmp_path / 'nope'}: no such directory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApiServer]:
    with KubeApiServer(tmp_path / "api") as server:
        server.create(NAMESPACES, namespace("hpc", {"hpc-workloads": "true"}))
        yield server


def audit_kube(api: KubeApiServer, tmp_path: Path, *args: str):
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    return run_cli("audit", "--state", "kube", "--kubeconfig", str(kubeconfig), *args)


def test_audit_the_live_cluster(api: KubeApiServer, tmp_path: Path) -> None:
    api.create(MIGRATION_POLICIES, policy("good", vmi_selector={"app": "db"},
                                          bandwidthPerMigration="1Gi"))
    # What a cluster without this webhook (or with other rules) lets through.
    api.create(MIGRATION_POLICIES, policy("bad", namespace_selector={"hpc workloads": "x"},
                                          bandwidthPerMigration="1 GB"))
    result = audit_kube(api, tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "MigrationPolicy 'good' is valid" in lines
    bad = lines.index("MigrationPolicy 'bad' is invalid:")
    assert lines[bad + 1].startswith('  * spec.bandwidthPerMigration: "1 GB" is not a '
                                     "Kubernetes quantity")
    assert lines[bad + 2].startswith('  * spec.selectors.namespaceSelector: label key '
                                     '"hpc workloads"')
    assert lines[-1] == "2 MigrationPolicies in kube: 1 valid, 1 invalid"
    [listed] = api.calls("list", MIGRATION_POLICIES)
    assert listed.query["limit"] == "500"
    assert not api.calls("watch")


def test_audit_lists_the_live_cluster_page_by_page(api: KubeApiServer, tmp_path: Path) -> None:
    api.load(MIGRATION_POLICIES, [policy(f"p-{number:04}", vmi_selector={"n": str(number)})
                                  for number in range(1201)])
    result = audit_kube(api, tmp_path, "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["valid"] == 1201
    assert len({entry["name"] for entry in document["policies"]}) == 1201
    pages = api.calls("list", MIGRATION_POLICIES)
    assert len(pages) == 3
    assert "continue" not in pages[0].query
    assert all(page.query.get("continue") for page in pages[1:])


def test_audit_without_permission_says_which(api: KubeApiServer, tmp_path: Path) -> None:
    api.fail("list", MIGRATION_POLICIES, 403)
    result = audit_kube(api, tmp_path)
    assert result.returncode == 2
    assert "refused to list migrationpolicies.migrations.kubevirt.io" in result.stderr
    assert "needs the list permission" in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_an_unreachable_cluster(api: KubeApiServer, tmp_path: Path) -> None:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    text = kubeconfig.read_text().replace(f":{api.port}", f":{free_port()}")
    kubeconfig.write_text(text)
    result = run_cli("audit", "--state", "kube", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 2
    assert "cannot reach the API server at https://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
