"""`explain` with `--state kube`: what it says when the cluster cannot be read. Reading a
real cluster (`explain`, `review`, `audit`) is tested in tests/cluster/test_live_cluster.py."""

from pathlib import Path

from tests.support.service import run_cli


def test_explain_with_a_missing_kubeconfig_says_so(tmp_path: Path) -> None:
    result = run_cli("explain", "--state", "kube", "--kubeconfig", str(tmp_path / "nope"),
                     "--vmi", "x")
    assert result.returncode == 2
    assert "--state kube" in result.stderr
    assert "Traceback" not in result.stderr
