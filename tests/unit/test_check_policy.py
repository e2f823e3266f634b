"""check_policy, the one policy check; the API types named once; a kubeconfig's context."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from app.k8s.resources import (
    ADMISSION_REVIEW,
    MIGRATION_POLICIES,
    NAMESPACES,
    VIRTUAL_MACHINE_INSTANCES,
)
from app.policy.feature_gates import KNOWN_FEATURE_GATES
from app.policy.model import Policy, policy_from_object
from app.policy.precedence import PolicyIndex, Precedence
from app.policy.validation import check_policy, validate_policy
from app.state.kube_api import KubeApi, KubeConfigError

POLICY: dict[str, Any] = {
    "apiVersion": "migrations.kubevirt.io/v1alpha1",
    "kind": "MigrationPolicy",
    "metadata": {"name": "gold"},
    "spec": {"selectors": {"virtualMachineInstanceSelector": {"tier": "gold"}},
             "allowPostCopy": True, "bandwidthPerMigration": "64Mi"},
}


def test_a_valid_policy_gives_its_policy_and_no_cause() -> None:
    checked = check_policy(POLICY, feature_gates=KNOWN_FEATURE_GATES)
    assert checked.findings.valid and not checked.findings.causes
    assert checked.policy == policy_from_object(POLICY)
    assert checked.policy is not None
    assert checked.policy.settings["allowWorkloadDisruption"] == "true"


def test_parse_false_gives_the_same_findings_and_the_selectors_alone() -> None:
    checked = check_policy(POLICY, feature_gates=KNOWN_FEATURE_GATES, parse=False)
    assert checked.findings.valid
    full = policy_from_object(POLICY)
    assert checked.policy == Policy(name="gold", namespace_selector=full.namespace_selector,
                                    vmi_selector=full.vmi_selector)
    assert not checked.policy.settings
    invalid = check_policy({**POLICY, "spec": None}, feature_gates=frozenset(), parse=False)
    assert invalid.policy is None


@pytest.mark.parametrize("broken", [
    None, [], "policy", {**POLICY, "spec": None}, {**POLICY, "spec": []},
    {**POLICY, "kind": "Policy"}, {**POLICY, "apiVersion": "migrations.kubevirt.io/v1"},
])
def test_an_invalid_policy_gives_causes_and_no_policy(broken: Any) -> None:
    checked = check_policy(broken, feature_gates=KNOWN_FEATURE_GATES)
    assert not checked.findings.valid
    assert checked.policy is None
    assert [cause.line() for cause in checked.findings.causes] == [
        cause.line() for cause in validate_policy(broken, feature_gates=KNOWN_FEATURE_GATES).causes]


def test_a_denied_duplicate_gives_no_policy() -> None:
    index = PolicyIndex(Precedence.KUBEVIRT)
    index.put(policy_from_object({**POLICY, "metadata": {"name": "first"}}))
    checked = check_policy(POLICY, feature_gates=frozenset(),
                           same_selectors=index.with_same_selectors, deny_duplicate_selectors=True)
    assert checked.policy is None
    assert "first" in checked.findings.causes[0].message
    warned = check_policy(POLICY, feature_gates=frozenset(),
                          same_selectors=index.with_same_selectors)
    assert warned.policy is not None and "first" in warned.findings.warnings[0]


def test_every_migration_policy_version_is_accepted_and_no_other() -> None:
    assert MIGRATION_POLICIES.api_versions == (
        "migrations.kubevirt.io/v1alpha1", "migrations.kubevirt.io/v1beta1")
    for api_version in MIGRATION_POLICIES.api_versions:
        assert check_policy({**POLICY, "apiVersion": api_version},
                            feature_gates=frozenset()).policy is not None
    wrong = check_policy({**POLICY, "apiVersion": "v1"}, feature_gates=frozenset())
    [cause] = wrong.findings.causes
    assert cause.field == "apiVersion"
    assert " or ".join(MIGRATION_POLICIES.api_versions) in cause.message


def test_resources_paths_and_names() -> None:
    assert MIGRATION_POLICIES.list_path == "/apis/migrations.kubevirt.io/v1alpha1/migrationpolicies"
    assert MIGRATION_POLICIES.group_resource == "migrationpolicies.migrations.kubevirt.io"
    assert VIRTUAL_MACHINE_INSTANCES.object_path("a b", "ns/x") == (
        "/apis/kubevirt.io/v1/namespaces/ns%2Fx/virtualmachineinstances/a%20b")
    assert NAMESPACES.object_path("hpc") == "/api/v1/namespaces/hpc"
    assert NAMESPACES.api_version == "v1" and NAMESPACES.group_resource == "namespaces"
    assert ADMISSION_REVIEW.api_versions == ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


def kubeconfig(path: Path) -> Path:
    """Two contexts, `one` (current) and `two`, on two servers."""
    clusters = [{"name": name, "cluster": {"server": f"https://{name}.example:6443",
                                           "insecure-skip-tls-verify": True}}
                for name in ("one", "two")]
    contexts = [{"name": name, "context": {"cluster": name, "user": "me"}}
                for name in ("one", "two")]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": clusters, "contexts": contexts,
        "current-context": "one", "users": [{"name": "me", "user": {"token": "t"}}]}))
    return path


def test_from_kubeconfig_uses_the_context_given_else_the_current_one(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config")
    for context, host in ((None, "https://one.example:6443"), ("two", "https://two.example:6443")):
        api = KubeApi.from_kubeconfig(config, context)
        try:
            assert api.host == host
        finally:
            api.close()


def test_from_kubeconfig_names_a_context_it_cannot_use(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config")
    with pytest.raises(KubeConfigError, match=f"--context three: cannot use it from kubeconfig "
                                              f"{config}"):
        KubeApi.from_kubeconfig(config, "three")
