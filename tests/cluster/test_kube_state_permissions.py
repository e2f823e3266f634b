"""`--state kube` with a permission missing, refused by the real API server's RBAC: the log
names the verb and resource to grant, and once granted the service carries on. Moved here
from tests/live_cluster/ (issue 19), where the stand-in answered 403 on demand.

Each test starts its own service on a ServiceAccount of its own, bound to the shipped
ClusterRole's rules less one verb (`rules_without`); `grant` puts the verb back.
test_credentials.py checks the shipped role and a missing `list` on VMIs alone.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster_state import (
    account,
    apply,
    delete_namespace,
    delete_policies,
    grant,
    namespace,
    policy,
    rules_without,
    shipped_rules,
    state_service,
    vmi,
)
from tests.support.control_plane import ControlPlane
from tests.support.live_cluster import Decision, decide, scrape, value, wait_for

SPACE = "ks-rbac"
NOT_SYNCED = "no migration policy applied: the webhook's cluster state has not synced yet"
NOT_FOUND = f"no migration policy applied: VMI 'secret' not found in namespace '{SPACE}'"

WHERE = {
    "migrationpolicies": 'API group "migrations.kubevirt.io" (cluster-scoped)',
    "virtualmachineinstances": 'API group "kubevirt.io" in every namespace',
    "namespaces": 'the core API group ("") (cluster-scoped)',
}


@pytest.fixture
def space(installed: ControlPlane) -> Iterator[ControlPlane]:
    apply(installed, namespace(SPACE), vmi(SPACE, "db", {"app": "ks-rbac"}),
          policy("ks-rbac", vmi_selector={"app": "ks-rbac"}))
    yield installed
    delete_policies(installed, "ks-rbac", "ks-rbac-prod")
    delete_namespace(installed, SPACE)


def refusal(plural: str, verb: str) -> str:
    """How the service's log names a missing verb (app/state/kube_api.py `refusal`)."""
    return f"{plural}: permission missing: verb '{verb}' on resource '{plural}' in {WHERE[plural]}"


@pytest.mark.parametrize("failing", sorted(WHERE))
def test_not_ready_until_every_kind_has_listed(space: ControlPlane, tmp_path: Path,
                                               failing: str) -> None:
    """One kind may not be listed: the others list, that one is retried and named, the
    service is live but not ready and says so in its answers; granted, it is ready."""
    name = f"ks-no-list-{failing}"
    others = [plural for plural in WHERE if plural != failing]
    with account(space, name, rules_without(failing, "list")) as token, \
            state_service(space, tmp_path, token, wait_ready=False) as service, \
            service.client() as client:
        refused = refusal(failing, "list")
        log = wait_for(service.log, lambda text: text.count(refused) >= 2 and all(
            f"{plural}: listed" in text for plural in others))
        assert log.count(refused) >= 2, log  # retried
        assert all(f"{plural}: listed" in log for plural in others), log
        assert f'cannot list resource "{failing}"' in log  # the API server's own words
        assert client.get("/healthz").status_code == 200
        readyz = client.get("/readyz")
        assert (readyz.status_code, readyz.text) == (503, "cluster state not synced yet\n")
        assert decide(client, SPACE, "db") == Decision({}, [NOT_SYNCED])

        grant(space, name, shipped_rules())
        assert wait_for(lambda: client.get("/readyz").status_code, 200) == 200
        assert decide(client, SPACE, "db").policy == "ks-rbac"


def test_a_forbidden_watch_is_named_and_once_granted_catches_up(space: ControlPlane,
                                                                 tmp_path: Path) -> None:
    """Namespaces may be listed but not watched: ready on the lists, the refused watch is
    named, and a namespace relabelled meanwhile shows once the watch is granted."""
    name = "ks-no-watch-namespaces"
    with account(space, name, rules_without("namespaces", "watch")) as token, \
            state_service(space, tmp_path, token) as service, service.client() as client:
        refused = refusal("namespaces", "watch")
        assert wait_for(lambda: refused in service.log(), True), service.log()
        assert 'cannot watch resource "namespaces"' in service.log()
        assert decide(client, SPACE, "db").policy == "ks-rbac"

        apply(space, namespace(SPACE, {"env": "ks-rbac-prod"}),
              policy("ks-rbac-prod", namespace_selector={"env": "ks-rbac-prod"},
                     vmi_selector={"app": "ks-rbac"}))
        grant(space, name, shipped_rules())
        assert wait_for(lambda: decide(client, SPACE, "db").policy, "ks-rbac-prod") == \
            "ks-rbac-prod"


def direct_gets(client_samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
                result: str) -> float | None:
    return value(client_samples, "direct_gets_total", resource="virtualmachineinstances",
                 result=result)


def test_a_forbidden_direct_get_names_the_missing_permission(space: ControlPlane,
                                                             tmp_path: Path) -> None:
    """VMIs may be listed and watched but not fetched one by one: a VMI the cache does not
    hold is an error, named in the log, and not remembered as missing: once granted, the
    next migration asks again and finds out."""
    name = "ks-no-get-vmis"
    with account(space, name, rules_without("virtualmachineinstances", "get")) as token, \
            state_service(space, tmp_path, token) as service, service.client() as client:
        assert decide(client, SPACE, "secret") == Decision({}, [
            f"no migration policy applied: could not look up VMI 'secret' in namespace "
            f"'{SPACE}': the API answered 403"])
        assert refusal("virtualmachineinstances", "get").split(": ", 1)[1] in service.log()
        assert 'cannot get resource "virtualmachineinstances"' in service.log()

        grant(space, name, shipped_rules())
        assert wait_for(lambda: decide(client, SPACE, "secret").warnings, [NOT_FOUND]) == \
            [NOT_FOUND]
        samples = scrape(client)
        errors = direct_gets(samples, "error")
        assert errors is not None and errors >= 1
        assert direct_gets(samples, "not_found") == 1
        assert direct_gets(samples, "negative_cached") == 0
