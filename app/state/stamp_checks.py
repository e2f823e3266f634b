"""Does KubeVirt agree with the stamps? Each migration's stamp against the policy KubeVirt
applied (`--state kube`).

KubeVirt picks a policy again when it hands the migration to its target pod, from the VMI's
labels and the policies of that moment, and records its choice in `status.migrationState`
(`migrationPolicyName`, absent when no policy applied): in the migration's own status on
recent releases, else in its VMI's, for the same `migrationUid`. A reflector feeds this store
the migrations; a migration is followed from when it is seen running until it has finished,
checked once KubeVirt's choice is known, and then forgotten. The VMI is fetched once per
migration, within the direct-GET limits, only when the migration's own status does not say.
"""

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.policy.annotations import POLICY_ANNOTATION
from app.policy.precedence import Precedence, precedence_key
from app.state import LookupFailed
from app.state.stores import LabelStore, PolicyStore

log = logging.getLogger(__name__)

Object = Mapping[str, Any]

AGREE, DISAGREE, UNSTAMPED, NO_POLICY = "agree", "disagree", "unstamped", "no-policy"
RESULTS = (AGREE, DISAGREE, UNSTAMPED, NO_POLICY)
"""As `migration_policy_webhook_stamp_checks_total` counts them."""

FINISHED = frozenset({"Succeeded", "Failed"})
HANDED_OFF = frozenset({"PreparingTarget", "TargetReady", "Running", *FINISHED})
"""Phases by which KubeVirt has chosen its policy (at the hand-off to the target pod)."""

Choice = str | None
"""The policy KubeVirt applied; None for no policy."""
FetchVmiStatus = Callable[[str, str], Mapping[str, Any] | None]
"""(namespace, VMI name) → the VMI's status, None if there is no such VMI; may raise
LookupFailed."""
Explain = Callable[["Migration", Choice], str]
"""Why a stamp and KubeVirt's choice differ."""


@dataclass
class Migration:
    """What the check keeps of a migration in flight."""

    uid: str
    namespace: str
    name: str
    vmi: str
    created: float
    """Its creationTimestamp, as a Unix time: when it was stamped (to the second)."""
    stamp: str | None
    """The policy its stamp names; None when it carries no stamp."""
    fetched: bool = False
    checked: bool = False


class StampChecks:
    """The reflector store of VirtualMachineInstanceMigrations: checks and counts."""

    def __init__(self, *, prefix: str, fetch_vmi_status: FetchVmiStatus,
                 explain: Explain) -> None:
        self._annotation = prefix + POLICY_ANNOTATION
        self._fetch_vmi_status = fetch_vmi_status
        self._explain = explain
        self._inflight: dict[str, Migration] = {}
        self.counts = dict.fromkeys(RESULTS, 0)

    def __len__(self) -> int:
        return len(self._inflight)

    def replace(self, objects: Iterable[Object]) -> int:
        """A relist: follow the migrations still in flight (those checked stay checked);
        the ones that finished meanwhile are not counted (their end was not seen)."""
        old = self._inflight
        inflight = {}
        for obj in objects:
            migration = self._migration(obj, old)
            if migration is not None and _phase(obj) not in FINISHED:
                inflight[migration.uid] = migration
        self._inflight = inflight
        return len(inflight)

    def apply(self, event_type: str, obj: Object) -> None:
        migration = self._migration(obj, self._inflight)
        if migration is None:
            return
        finished = event_type == "DELETED" or _phase(obj) in FINISHED
        if finished and migration.uid not in self._inflight:
            # Not seen in flight: finished before this replica saw it, or finished and
            # forgotten already (finished migrations are still written: finalizers, labels,
            # the deletion); counting it would count it again.
            return
        if not migration.checked:
            self._check(migration, obj)
        if finished:
            self._inflight.pop(migration.uid, None)
        else:
            self._inflight[migration.uid] = migration

    def _migration(self, obj: Object, known: Mapping[str, Migration]) -> Migration | None:
        metadata = obj.get("metadata") or {}
        uid = metadata.get("uid")
        if not isinstance(uid, str):
            return None
        found = known.get(uid)
        if found is not None:
            return found
        spec = obj.get("spec") or {}
        annotations = metadata.get("annotations") or {}
        stamp = annotations.get(self._annotation)
        return Migration(uid=uid, namespace=str(metadata.get("namespace", "")),
                         name=str(metadata.get("name", "")), vmi=str(spec.get("vmiName", "")),
                         created=_unix_time(metadata.get("creationTimestamp")),
                         stamp=stamp if isinstance(stamp, str) else None)

    def _check(self, migration: Migration, obj: Object) -> None:
        known, choice = self._choice(migration, obj)
        if known:
            migration.checked = True
            self._count(migration, choice)

    def _choice(self, migration: Migration, obj: Object) -> tuple[bool, Choice]:
        """(whether KubeVirt's choice is known, that choice)."""
        status = obj.get("status") or {}
        phase = status.get("phase")
        state = status.get("migrationState")
        if (isinstance(state, dict) and state.get("migrationUid") in (None, migration.uid)
                and ("migrationPolicyName" in state or phase in HANDED_OFF)):
            return True, _policy_name(state)
        if phase not in HANDED_OFF or migration.fetched:
            return False, None
        migration.fetched = True
        try:
            vmi_status = self._fetch_vmi_status(migration.namespace, migration.vmi)
        except LookupFailed as error:
            log.info("stamp check of migration %s/%s skipped: its VMI %r could not be read: "
                     "%s", migration.namespace, migration.name, migration.vmi, error)
            return False, None
        if vmi_status is None:
            log.debug("stamp check of migration %s/%s skipped: its VMI %r was not found",
                      migration.namespace, migration.name, migration.vmi)
            return False, None
        state = vmi_status.get("migrationState")
        if not isinstance(state, dict) or state.get("migrationUid") != migration.uid:
            log.debug("stamp check of migration %s/%s skipped: its VMI's migrationState is "
                      "not this migration's", migration.namespace, migration.name)
            return False, None
        return True, _policy_name(state)

    def _count(self, migration: Migration, choice: Choice) -> None:
        if migration.stamp is None:
            result = UNSTAMPED if choice is not None else NO_POLICY
        else:
            result = AGREE if migration.stamp == choice else DISAGREE
        self.counts[result] += 1
        if result == DISAGREE:
            log.warning("stamp check: migration %s/%s was stamped with policy %r, KubeVirt "
                        "applied %s: %s", migration.namespace, migration.name, migration.stamp,
                        repr(choice) if choice is not None else "no policy",
                        self._explain(migration, choice))


@dataclass(frozen=True)
class Reasons:
    """Why a stamp and KubeVirt's choice differ, from what this replica saw since the
    stamp: labels or policies that changed, else the precedence mode, else unknown."""

    vmis: LabelStore[tuple[str, str]]
    namespaces: LabelStore[str]
    policies: PolicyStore
    precedence: Precedence

    def __call__(self, migration: Migration, choice: Choice) -> str:
        since = migration.created
        found = []
        vmi_key = (migration.namespace, migration.vmi)
        if self.vmis.changed_at.get(vmi_key, 0.0) >= since:
            found.append("the VMI's labels changed since the stamp")
        if self.namespaces.changed_at.get(migration.namespace, 0.0) >= since:
            found.append("the namespace's labels changed since the stamp")
        for name in dict.fromkeys(filter(None, (migration.stamp, choice))):
            at, what = self.policies.events.get(name, (0.0, ""))
            if at >= since:
                found.append(f"policy {name!r} {what} since the stamp")
        if found:
            return "; ".join(found)
        if self.precedence is Precedence.DOCUMENTED and self._kubevirt_rule_explains(
                migration, choice):
            return ("the precedence: KubeVirt breaks this tie by its own rule (more VMI "
                    "labels, then the name): run --precedence kubevirt")
        return "unknown: nothing this webhook saw changed since the stamp"

    def _kubevirt_rule_explains(self, migration: Migration, choice: Choice) -> bool:
        labels = self.vmis.get((migration.namespace, migration.vmi))
        ns_labels = self.namespaces.get(migration.namespace)
        if labels is None or ns_labels is None:
            return False
        applicable = self.policies.index.applicable(labels, ns_labels)
        if not applicable:
            return False
        theirs = min(applicable, key=lambda policy: precedence_key(policy, Precedence.KUBEVIRT))
        return applicable[0].name == migration.stamp and theirs.name == choice


def _phase(obj: Object) -> Any:
    return (obj.get("status") or {}).get("phase")


def _policy_name(state: Mapping[str, Any]) -> Choice:
    name = state.get("migrationPolicyName")
    return name if isinstance(name, str) and name else None


def _unix_time(stamp: Any) -> float:
    """An RFC 3339 timestamp as a Unix time; now when it is missing or unreadable."""
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()
