"""`explain` and `review` read the live cluster too (`--state kube`), through the API fixture."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kubeapi import (
    MIGRATION_POLICIES,
    NAMESPACES,
    VMIS,
    KubeApiServer,
    namespace,
    policy,
    vmi,
)
from tests.support.service import SAMPLE_REVIEWS, run_cli


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    with KubeApiServer(tmp_path / "api") as api:
        api.create(NAMESPACES, namespace("hpc", {"hpc-workloads": "True",
                                                 "xyz-workloads-type": ""}))
        api.create(VMIS, vmi("hpc", "db-vmi", {"workload-type": "db", "operating-system": ""}))
        api.create(MIGRATION_POLICIES, policy(
            "live-policy", namespace_selector={"hpc-workloads": "True"},
            vmi_selector={"workload-type": "db"}, bandwidthPerMigration="2Gi"))
        yield api.write_kubeconfig(tmp_path / "kubeconfig")


def test_explain_against_the_live_cluster(kubeconfig: Path) -> None:
    result = run_cli("explain", "--state", "kube", "--kubeconfig", str(kubeconfig),
                     "--vmi", "db-vmi", "--namespace", "hpc")
    assert result.returncode == 0, result.stderr
    assert "hpc-workloads='True'" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("live-policy"))
    assert line.split()[:3] == ["live-policy", "yes", "2"]
    assert "WINS" in line


def test_review_against_the_live_cluster(kubeconfig: Path) -> None:
    result = run_cli("review", str(SAMPLE_REVIEWS / "migration-db-vmi.json"),
                     "--state", "kube", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 0, result.stderr
    assert '"migrations.kubevirt.io/policy": "live-policy"' in result.stdout
    assert '"migrations.kubevirt.io/bandwidthPerMigration": "2Gi"' in result.stdout


def test_explain_with_a_missing_kubeconfig_says_so(tmp_path: Path) -> None:
    result = run_cli("explain", "--state", "kube", "--kubeconfig", str(tmp_path / "nope"),
                     "--vmi", "x")
    assert result.returncode == 2
    assert "--state kube" in result.stderr
    assert "Traceback" not in result.stderr
