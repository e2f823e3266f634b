"""`explain`: every policy, whether it applies, its score, and why it wins or loses."""

import json

import pytest
import yaml

from tests.support.service import SAMPLE_CLUSTER, run_cli


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by policy name: [applies, score, decision]."""
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("POLICY"))
    table = {}
    for line in lines[header + 1:]:
        if not line:  # the effective configuration follows
            break
        name, applies, score, decision = line.split(maxsplit=3)
        table[name] = [applies, score, decision]
    return table


def test_example_policy_governs_db_vmi() -> None:
    result = run_cli("explain", "--vmi", "db-vmi", "--namespace", "hpc")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert table["my-awesome-policy"][:2] == ["yes", "4"]
    assert table["my-awesome-policy"][2].startswith("WINS: the only policy that applies")
    assert table["gold-tier-db-policy"][:2] == ["no", "5"]
    assert "tier='gold'" in table["gold-tier-db-policy"][2]
    assert "workload-type='db'" in result.stdout


def test_more_specific_policy_wins() -> None:
    table = rows(run_cli("explain", "--vmi", "gold-db-vmi", "--namespace", "hpc").stdout)
    assert table["gold-tier-db-policy"][2] == "WINS: highest score (5, next is 4)"
    assert table["my-awesome-policy"][2] == (
        "loses to gold-tier-db-policy: lower score (4 < 5)")


@pytest.mark.parametrize(
    ("mode", "winner", "loser_reason"),
    [
        ("documented", "web-app-policy",
         "loses to web-app-policy: same score, its keys [env, team] sort after [app, env]"),
        ("kubevirt", "team-web-policy",
         "loses to team-web-policy: ties on everything else, its name sorts after"),
    ],
)
def test_tie_explained_per_mode(mode: str, winner: str, loser_reason: str) -> None:
    result = run_cli("explain", "--vmi", "web-vmi", "--namespace", "prod", "--precedence", mode)
    table = rows(result.stdout)
    assert table[winner][2].startswith("WINS: ties on score 2")
    loser = "team-web-policy" if winner == "web-app-policy" else "web-app-policy"
    assert table[loser][2] == loser_reason


def test_labels_given_on_the_command_line() -> None:
    result = run_cli("explain", "--vmi-labels", "workload-type=db,operating-system=",
                     "--namespace-labels", "hpc-workloads=True,xyz-workloads-type=")
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout)["my-awesome-policy"][0] == "yes"


def test_no_policy_applies() -> None:
    table = rows(run_cli("explain", "--vmi", "plain-vmi", "--namespace", "default").stdout)
    assert all(row[0] == "no" for row in table.values())
    assert not any(row[2].startswith("WINS") for row in table.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vmi", "nope", "--namespace", "hpc"], "VMI 'nope' not found in namespace 'hpc'"),
        ([], "explain needs --vmi NAME"),
        (["--vmi-labels", "novalue"], "label 'novalue' is not key=value"),
    ],
)
def test_mistakes_are_explained(args: list[str], message: str) -> None:
    result = run_cli("explain", *args)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_explain_for_programs(output: str) -> None:
    result = run_cli("explain", "--vmi", "gold-db-vmi", "--namespace", "hpc", "-o", output)
    assert result.returncode == 0, result.stderr
    document = (json.loads if output == "json" else yaml.safe_load)(result.stdout)
    assert document["vmi"] == {"namespace": "hpc", "name": "gold-db-vmi"}
    assert document["precedence"] == "documented"
    first, second = document["policies"][:2]
    assert first == {"name": "gold-tier-db-policy", "applies": True, "score": 5, "wins": True,
                     "reason": "highest score (5, next is 4)"}
    assert second["name"] == "my-awesome-policy"
    assert (second["applies"], second["wins"]) == (True, False)
    assert len(document["policies"]) == 5
    assert document["effectiveConfiguration"]["progressTimeout"] == {"value": 300,
                                                                     "source": "cluster"}


def test_explain_labels_for_programs() -> None:
    result = run_cli("explain", "--vmi-labels", "app=web", "--namespace-labels", "env=prod",
                     "-o", "json")
    document = json.loads(result.stdout)
    assert document["vmi"] is None
    assert (document["vmiLabels"], document["namespaceLabels"]) == ({"app": "web"},
                                                                    {"env": "prod"})
    assert [entry["name"] for entry in document["policies"] if entry["wins"]] == [
        "web-app-policy"]


def effective_rows(output: str) -> dict[str, tuple[str, str]]:
    """The effective configuration's rows by parameter: (value, source)."""
    lines = output.splitlines()
    header = lines.index("PARAMETER                VALUE  SOURCE")
    return {name: (value, source) for name, value, source in
            (line.split(maxsplit=2) for line in lines[header + 1:])}


def test_the_effective_configuration_names_each_parameter_s_source() -> None:
    """The sample cluster's KubeVirt CR sets completionTimeoutPerGiB 800, progressTimeout 300
    and bandwidthPerMigration 128Mi; web-app-policy sets bandwidth and auto-converge."""
    result = run_cli("explain", "--vmi", "web-vmi", "--namespace", "prod")
    assert result.returncode == 0, result.stderr
    assert effective_rows(result.stdout) == {
        "bandwidthPerMigration": ("64Mi", "policy web-app-policy"),
        "completionTimeoutPerGiB": ("800", "cluster"),
        "progressTimeout": ("300", "cluster"),
        "allowAutoConverge": ("true", "policy web-app-policy"),
        "allowPostCopy": ("false", "default"),
        "allowWorkloadDisruption": ("false", "default"),
    }


def test_without_a_kubevirt_manifest_the_defaults_apply(tmp_path) -> None:
    for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml"):
        (tmp_path / name).write_text((SAMPLE_CLUSTER / name).read_text())
    result = run_cli("explain", "--vmi", "plain-vmi", "--namespace", "default", "--state",
                     str(tmp_path), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["effectiveConfiguration"] == {
        "bandwidthPerMigration": {"value": "0", "source": "default"},
        "completionTimeoutPerGiB": {"value": 150, "source": "default"},
        "progressTimeout": {"value": 150, "source": "default"},
        "allowAutoConverge": {"value": False, "source": "default"},
        "allowPostCopy": {"value": False, "source": "default"},
        "allowWorkloadDisruption": {"value": False, "source": "default"},
    }


def test_a_policy_s_post_copy_sets_workload_disruption_and_the_cluster_the_rest(tmp_path) -> None:
    for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml", "kubevirt.yaml"):
        (tmp_path / name).write_text((SAMPLE_CLUSTER / name).read_text())
    result = run_cli("explain", "--vmi", "gold-db-vmi", "--namespace", "hpc", "--state",
                     str(tmp_path), "-o", "yaml")
    effective = yaml.safe_load(result.stdout)["effectiveConfiguration"]
    assert effective["allowPostCopy"] == {"value": True, "source": "policy",
                                          "policy": "gold-tier-db-policy"}
    assert effective["allowWorkloadDisruption"] == effective["allowPostCopy"]
    assert effective["completionTimeoutPerGiB"] == {"value": 800, "source": "policy",
                                                    "policy": "gold-tier-db-policy"}
    assert effective["progressTimeout"] == {"value": 300, "source": "cluster"}


def test_two_kubevirt_manifests_are_refused(tmp_path) -> None:
    for name in ("namespaces.yaml", "vmis.yaml", "policies.yaml"):
        (tmp_path / name).write_text((SAMPLE_CLUSTER / name).read_text())
    kubevirt = (SAMPLE_CLUSTER / "kubevirt.yaml").read_text()
    (tmp_path / "kubevirt.yaml").write_text(kubevirt + "---\n" + kubevirt)
    result = run_cli("explain", "--vmi", "plain-vmi", "--state", str(tmp_path))
    assert result.returncode == 2
    assert "2 KubeVirt manifests" in result.stderr
