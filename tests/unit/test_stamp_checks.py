"""Stamps checked against KubeVirt's choice (issue 21): each result, each reason, and the
forgetting of finished migrations, driven through the reflector store interface."""

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from app.policy.precedence import Precedence
from app.state import LookupFailed
from app.state.stamp_checks import Migration, Reasons, StampChecks
from app.state.stores import LabelStore, PolicyStore, name_key, namespaced_key

PREFIX = "migrations.kubevirt.io/"
CREATED = "2026-12-06T10:00:00Z"
UID = "0b9f8d2e-0000-4000-8000-000000000001"


def migration(*, stamp: str | None = "web-app-policy", phase: str = "Running",
              state: dict[str, Any] | None = None, uid: str = UID) -> dict[str, Any]:
    annotations = {f"{PREFIX}policy": stamp} if stamp is not None else {}
    status: dict[str, Any] = {"phase": phase}
    if state is not None:
        status["migrationState"] = state
    return {"metadata": {"uid": uid, "namespace": "prod", "name": "move-web",
                         "creationTimestamp": CREATED, "annotations": annotations},
            "spec": {"vmiName": "web-vmi"}, "status": status}


class FakeVmis:
    """The VMI statuses a direct GET finds, and the GETs made."""

    def __init__(self, status: Mapping[str, Any] | None = None,
                 error: LookupFailed | None = None) -> None:
        self.status = status
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def __call__(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.calls.append((namespace, name))
        if self.error is not None:
            raise self.error
        return self.status


def checks(fetch: FakeVmis | None = None, reason: str = "a reason") -> StampChecks:
    return StampChecks(prefix=PREFIX, fetch_vmi_status=fetch or FakeVmis(),
                       explain=lambda migration, choice: reason)


@pytest.mark.parametrize(("stamp", "choice", "result"), [
    ("web-app-policy", "web-app-policy", "agree"),
    ("web-app-policy", "team-web-policy", "disagree"),
    ("web-app-policy", None, "disagree"),
    (None, "web-app-policy", "unstamped"),
    (None, None, "no-policy"),
])
def test_each_result_from_the_migration_s_own_status(stamp: str | None, choice: str | None,
                                                      result: str) -> None:
    store = checks()
    state = {"migrationUid": UID, **({"migrationPolicyName": choice} if choice else {})}
    store.apply("MODIFIED", migration(stamp=stamp, state=state))
    assert store.counts == {name: int(name == result)
                            for name in ("agree", "disagree", "unstamped", "no-policy")}


def test_checked_once_however_many_events_follow() -> None:
    store = checks()
    state = {"migrationUid": UID, "migrationPolicyName": "web-app-policy"}
    for _ in range(3):
        store.apply("MODIFIED", migration(state=state))
    store.apply("MODIFIED", migration(phase="Succeeded", state=state))
    assert store.counts["agree"] == 1


def test_not_counted_before_kubevirt_has_chosen() -> None:
    fetch = FakeVmis()
    store = checks(fetch)
    store.apply("ADDED", migration(phase="Scheduling"))
    assert sum(store.counts.values()) == 0
    assert fetch.calls == []  # before the hand-off the VMI is not read
    assert len(store) == 1


def test_the_vmi_s_status_is_read_once_when_the_migration_s_does_not_say() -> None:
    fetch = FakeVmis({"migrationState": {"migrationUid": UID,
                                         "migrationPolicyName": "team-web-policy"}})
    store = checks(fetch)
    store.apply("MODIFIED", migration(phase="Running"))
    store.apply("MODIFIED", migration(phase="Running"))
    assert fetch.calls == [("prod", "web-vmi")]
    assert store.counts["disagree"] == 1


def test_a_vmi_state_of_another_migration_is_no_answer() -> None:
    fetch = FakeVmis({"migrationState": {"migrationUid": "someone-else",
                                         "migrationPolicyName": "team-web-policy"}})
    store = checks(fetch)
    store.apply("MODIFIED", migration(phase="Running"))
    assert sum(store.counts.values()) == 0
    store.apply("MODIFIED", migration(phase="Running"))
    assert fetch.calls == [("prod", "web-vmi")]  # once per migration, not per event


def test_a_failed_get_skips_the_check_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    store = checks(FakeVmis(error=LookupFailed("the API answered 403")))
    with caplog.at_level(logging.INFO, logger="app.state.stamp_checks"):
        store.apply("MODIFIED", migration(phase="Running"))
    assert sum(store.counts.values()) == 0
    assert "could not be read: the API answered 403" in caplog.text


def test_finished_migrations_are_forgotten() -> None:
    store = checks()
    store.apply("ADDED", migration(phase="Scheduling"))
    store.apply("ADDED", migration(phase="Scheduling", uid="second"))
    assert len(store) == 2
    store.apply("MODIFIED", migration(phase="Failed"))
    store.apply("DELETED", migration(phase="Scheduling", uid="second"))
    assert len(store) == 0
    # a finished migration never seen in flight (a relist after a restart) is not counted
    store.replace([migration(phase="Succeeded", state={"migrationUid": UID,
                                                       "migrationPolicyName": "x"})])
    assert len(store) == 0 and sum(store.counts.values()) == 0


@pytest.mark.parametrize("event", ["MODIFIED", "DELETED"])
def test_a_finished_migration_forgotten_is_not_counted_again_by_a_later_event(
        event: str) -> None:
    """KubeVirt and users still write finished migrations (a finalizer removed, a label, the
    deletion): an event about one no longer followed is not a migration seen in flight."""
    store = checks()
    state = {"migrationUid": UID, "migrationPolicyName": "web-app-policy"}
    store.apply("MODIFIED", migration(state=state))
    store.apply("MODIFIED", migration(phase="Succeeded", state=state))
    store.apply(event, migration(phase="Succeeded", state=state))
    assert store.counts["agree"] == 1 and len(store) == 0


@pytest.mark.parametrize("event", ["ADDED", "MODIFIED", "DELETED"])
def test_a_migration_first_seen_finished_is_not_counted(event: str) -> None:
    """Finished before this replica saw it in flight (it listed after a restart, or the
    watch was down): its end was not seen, another replica or run may have counted it."""
    store = checks()
    store.replace([])
    store.apply(event, migration(phase="Failed", state={"migrationUid": UID,
                                                        "migrationPolicyName": "x"}))
    assert sum(store.counts.values()) == 0 and len(store) == 0


def test_a_relist_keeps_what_was_checked() -> None:
    store = checks()
    state = {"migrationUid": UID, "migrationPolicyName": "web-app-policy"}
    store.apply("MODIFIED", migration(state=state))
    store.replace([migration(state=state)])
    store.apply("MODIFIED", migration(state=state))
    assert store.counts["agree"] == 1


def test_a_disagreement_is_one_log_line_naming_both_policies_and_the_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    store = checks(reason="policy 'team-web-policy' created since the stamp")
    with caplog.at_level(logging.WARNING, logger="app.state.stamp_checks"):
        store.apply("MODIFIED", migration(state={"migrationUid": UID,
                                                 "migrationPolicyName": "team-web-policy"}))
    [record] = caplog.records
    assert record.getMessage() == (
        "stamp check: migration prod/move-web was stamped with policy 'web-app-policy', "
        "KubeVirt applied 'team-web-policy': policy 'team-web-policy' created since the stamp")


# Reasons: what this replica saw since the stamp


def stores() -> tuple[LabelStore[tuple[str, str]], LabelStore[str], PolicyStore]:
    vmis: LabelStore[tuple[str, str]] = LabelStore(namespaced_key)
    namespaces: LabelStore[str] = LabelStore(name_key)
    policies = PolicyStore(Precedence.DOCUMENTED)
    vmis.replace([{"metadata": {"namespace": "prod", "name": "web-vmi",
                                "labels": {"app": "web", "team": "web"}}}])
    namespaces.replace([{"metadata": {"name": "prod", "labels": {"env": "prod"}}}])
    policies.replace([policy_object("web-app-policy", {"app": "web"}),
                      policy_object("team-web-policy", {"team": "web"})])
    return vmis, namespaces, policies


def policy_object(name: str, vmi_selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": name}, "spec": {"selectors": {
                "namespaceSelector": {"env": "prod"},
                "virtualMachineInstanceSelector": vmi_selector}}}


def reason_for(reasons: Reasons, choice: str | None) -> str:
    """The reason a disagreement of the stamp `web-app-policy` with `choice` is logged with."""
    said: list[str] = []

    def explain(found: Migration, chosen: str | None) -> str:
        said.append(reasons(found, chosen))
        return said[-1]

    store = StampChecks(prefix=PREFIX, fetch_vmi_status=FakeVmis(), explain=explain)
    state = {"migrationUid": UID, **({"migrationPolicyName": choice} if choice else {})}
    store.apply("MODIFIED", migration(state=state))
    [reason] = said
    return reason


def test_reason_the_kubevirt_rule_where_it_differs() -> None:
    """Both score 2 on web-vmi: documented prefers web-app-policy (keys [app, env] sort
    before [app, team]), KubeVirt both-labels (2 VMI labels matched against 1)."""
    vmis, namespaces, policies = stores()
    policies.replace([policy_object("web-app-policy", {"app": "web"}),
                      {**policy_object("both-labels", {}),
                       "spec": {"selectors": {"virtualMachineInstanceSelector": {
                           "team": "web", "app": "web"}}}}])
    reasons = Reasons(vmis, namespaces, policies, Precedence.DOCUMENTED)
    said = reason_for(reasons, "both-labels")
    assert said.startswith("the precedence: KubeVirt breaks this tie by its own rule")
    assert "--precedence kubevirt" in said
    assert reason_for(Reasons(vmis, namespaces, policies, Precedence.KUBEVIRT),
                      "both-labels").startswith("unknown")


def test_reason_labels_changed_since_the_stamp() -> None:
    vmis, namespaces, policies = stores()
    vmis.apply("MODIFIED", {"metadata": {"namespace": "prod", "name": "web-vmi",
                                         "labels": {"team": "web"}}})
    namespaces.apply("MODIFIED", {"metadata": {"name": "prod",
                                               "labels": {"env": "prod", "x": "y"}}})
    said = reason_for(Reasons(vmis, namespaces, policies, Precedence.DOCUMENTED),
                      "team-web-policy")
    assert said == ("the VMI's labels changed since the stamp; the namespace's labels "
                    "changed since the stamp")


@pytest.mark.parametrize(("event", "name", "words"), [
    ("ADDED", "team-web-policy", "created"),
    ("MODIFIED", "web-app-policy", "changed"),
    ("DELETED", "web-app-policy", "deleted"),
])
def test_reason_a_policy_created_changed_or_deleted(event: str, name: str, words: str) -> None:
    vmis, namespaces, policies = stores()
    policies.apply(event, policy_object(name, {"team": "web"}))
    said = reason_for(Reasons(vmis, namespaces, policies, Precedence.DOCUMENTED),
                      "team-web-policy")
    assert said == f"policy {name!r} {words} since the stamp"


def test_no_policy_as_kubevirt_s_choice_reads_as_such() -> None:
    vmis, namespaces, policies = stores()
    said = reason_for(Reasons(vmis, namespaces, policies, Precedence.DOCUMENTED), None)
    assert said.startswith("unknown")


def test_a_relabel_before_the_stamp_is_no_reason() -> None:
    vmis, namespaces, policies = stores()
    vmis.changed_at[("prod", "web-vmi")] = 0.0  # long before CREATED
    said = reason_for(Reasons(vmis, namespaces, policies, Precedence.DOCUMENTED),
                      "team-web-policy")
    assert "labels changed" not in said
