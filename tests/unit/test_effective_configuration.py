"""The effective configuration of a migration (issue 21): policy, else cluster, else default."""

import pytest

from app.policy.effective import effective_configuration
from app.policy.model import Policy, settings_of


def policy(**spec: object) -> Policy:
    return Policy(name="chosen", namespace_selector={"env": "prod"}, settings=settings_of(spec))


def shown(policy_: Policy | None, cluster: dict | None) -> dict[str, tuple]:
    return {name: (found.value, found.source, found.policy)
            for name, found in effective_configuration(policy_, cluster).items()}


def test_without_policy_or_cluster_every_parameter_is_kubevirt_s_default() -> None:
    # KubeVirt's defaults, written here as the issue states them (not read from the code)
    assert shown(None, None) == {
        "bandwidthPerMigration": ("0", "default", None),
        "completionTimeoutPerGiB": (150, "default", None),
        "progressTimeout": (150, "default", None),
        "allowAutoConverge": (False, "default", None),
        "allowPostCopy": (False, "default", None),
        "allowWorkloadDisruption": (False, "default", None),
    }


def test_the_policy_wins_over_the_cluster_which_wins_over_the_default() -> None:
    cluster = {"bandwidthPerMigration": "128Mi", "completionTimeoutPerGiB": 800,
               "progressTimeout": 300, "allowAutoConverge": True}
    found = shown(policy(bandwidthPerMigration="1Gi", completionTimeoutPerGiB=23), cluster)
    assert found["bandwidthPerMigration"] == ("1Gi", "policy", "chosen")
    assert found["completionTimeoutPerGiB"] == (23, "policy", "chosen")
    assert found["progressTimeout"] == (300, "cluster", None)
    assert found["allowAutoConverge"] == (True, "cluster", None)
    assert found["allowPostCopy"] == (False, "default", None)


def test_values_are_typed_as_the_kubevirt_api_writes_them() -> None:
    found = effective_configuration(
        policy(allowAutoConverge=True, completionTimeoutPerGiB=0, bandwidthPerMigration=0), None)
    assert found["allowAutoConverge"].value is True
    assert found["completionTimeoutPerGiB"].value == 0
    assert isinstance(found["completionTimeoutPerGiB"].value, int)
    assert found["bandwidthPerMigration"].value == "0"


@pytest.mark.parametrize(("spec", "cluster", "expected"), [
    ({"allowPostCopy": True}, None, (True, "policy", "chosen")),  # follows the policy's
    ({"allowPostCopy": True, "allowWorkloadDisruption": False}, None, (False, "policy", "chosen")),
    ({}, {"allowPostCopy": True}, (True, "default", None)),  # follows the cluster's post-copy
    ({}, {"allowPostCopy": True, "allowWorkloadDisruption": False}, (False, "cluster", None)),
    ({"allowAutoConverge": True}, None, (False, "default", None)),
])
def test_workload_disruption_follows_post_copy_unless_set(
        spec: dict, cluster: dict | None, expected: tuple) -> None:
    assert shown(policy(**spec), cluster)["allowWorkloadDisruption"] == expected


def test_max_downtime_is_shown_only_where_set() -> None:
    assert "maxDowntimeMs" not in shown(policy(), {"progressTimeout": 1})
    assert shown(None, {"maxDowntimeMs": 300})["maxDowntimeMs"] == (300, "cluster", None)
    assert shown(policy(maxDowntimeMs=120), {"maxDowntimeMs": 300})["maxDowntimeMs"] == \
        (120, "policy", "chosen")
