"""`audit`: every MigrationPolicy already in the state, checked with the webhook's rules.
(Against a live cluster: tests/cluster/test_audit_cluster.py.)"""

import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml

from app.serving.certificates import KeyType, make_ca
from tests.support.control_plane import kubeconfig_text
from tests.support.kubeapi import policy
from tests.support.samples import sample_objects
from tests.support.service import SAMPLE_CLUSTER, SAMPLES, run_cli

SAMPLE_POLICIES = sample_objects("MigrationPolicy")
"""All valid (test_audit_the_sample_cluster_passes)."""

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
    assert lines[-1] == (f"{SAMPLE_POLICIES + 1} MigrationPolicies in {state}: "
                         f"{SAMPLE_POLICIES} valid, 1 invalid")
    assert "skipped" not in result.stdout  # the state's VMIs and namespaces are expected
    assert result.stderr == ""


def test_audit_the_sample_cluster_passes() -> None:
    result = run_cli("audit", "--state", str(SAMPLE_CLUSTER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert SAMPLE_POLICIES > 0
    assert result.stdout.splitlines()[-1] == (f"{SAMPLE_POLICIES} MigrationPolicies in "
                                              f"{SAMPLE_CLUSTER}: {SAMPLE_POLICIES} valid, "
                                              "0 invalid")
    assert '  Warning: spec.bandwidthPerMigration "217Ki" is below 1Mi' in result.stdout


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_audit_output_for_programs(state: Path, output: str) -> None:
    result = run_cli("audit", "--state", str(state), "-o", output)
    assert result.returncode == 1
    document = (json.loads if output == "json" else yaml.safe_load)(result.stdout)
    assert document["state"] == str(state)
    assert (document["valid"], document["invalid"]) == (SAMPLE_POLICIES, 1)
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


def test_audit_an_unreachable_cluster(tmp_path: Path) -> None:
    """A port bound but not listening (held for the whole test, so nothing else takes it):
    the connection is refused, and the audit says where it could not reach."""
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(make_ca("a CA", days=1, key_type=KeyType.ECDSA).certificate_pem())
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        server = f"https://127.0.0.1:{unused.getsockname()[1]}"
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(kubeconfig_text(server, ca_file, {"token": "any"}))
        result = run_cli("audit", "--state", "kube", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 2
    assert f"cannot reach the API server at {server}" in result.stderr
    assert "Traceback" not in result.stderr
