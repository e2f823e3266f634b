"""The two admission handlers: each takes an AdmissionRequest and returns its decision.

Nothing here knows about HTTP or the review's envelope: `app.admission.answer` completes a
decision with the request's uid, for the server and the `review` command alike.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from app.admission.review import (
    AdmissionRequest,
    Decision,
    allowed,
    denied,
    invalid,
    patched,
)
from app.k8s.resources import MIGRATION_POLICIES, VIRTUAL_MACHINE_INSTANCE_MIGRATIONS
from app.policy.annotations import POLICY_ANNOTATION, stamp_patch
from app.policy.findings import MAX_WARNING_LENGTH, Cause
from app.policy.impact import (
    ClusterView,
    Impact,
    impact_warning,
    measure_impact,
    vmis_to_read,
)
from app.policy.model import Policy, selectors_of
from app.policy.validation import check_policy
from app.settings import Enforcement, Settings
from app.state import ClusterState, LookupFailed, WouldBlock, on_event_loop

VALIDATE_PATH = "/validate-migrationpolicy"
MUTATE_PATH = "/mutate-virtualmachineinstancemigration"

IMPACT_BUDGET_SECONDS = 0.050
"""CPU time an impact warning may take in all; beyond, it says `at least`."""
IMPACT_ON_LOOP_SECONDS = 0.005
"""What it may take on the event loop: beyond, the review is judged again in a thread,
which has what is left of the budget."""
IMPACT_ON_LOOP_VMIS = 500
"""A policy whose namespaces hold more VMIs goes to a thread at once, without a start on
the loop that would be thrown away."""
IMPACT_LOADING = "impact: not known yet: the webhook is still reading the cluster's VMIs"

Views = Callable[[], ClusterView | None]
"""The latest view of the cluster's VMIs and namespaces, None until there is one."""

ENFORCEMENT_WARNING = "would be refused: "
"""How `--enforcement warn` begins each problem it admits (kubectl: `Warning: would be...`)."""


class Handler(Protocol):
    """Answers one review; `errored` answers in its place if answering raised a bug, and
    `malformed` a review whose uid is known but whose other parts are wrong."""

    def __call__(self, request: AdmissionRequest) -> Decision: ...

    def errored(self, request: AdmissionRequest | None) -> Decision: ...

    def malformed(self, problem: str) -> Decision: ...


def is_enforcement_warning(decision: Decision) -> bool:
    """Whether the decision admits an invalid policy under `--enforcement warn`."""
    warnings = decision.get("warnings")
    return warnings is not None and bool(warnings) and warnings[0].startswith(ENFORCEMENT_WARNING)


@dataclass(frozen=True)
class PolicyValidator:
    """Validates MigrationPolicy CREATE and UPDATE; DELETE and CONNECT are allowed. A
    policy that will be stored is told its impact (`--impact-warnings`)."""

    settings: Settings
    state: ClusterState
    views: Views

    def __call__(self, request: AdmissionRequest) -> Decision:
        resource = request.resource
        policies = MIGRATION_POLICIES
        if resource["group"] != policies.group or resource["resource"] != policies.plural:
            return denied(
                code=400, reason="BadRequest",
                message=f"this webhook validates {policies.group}/{policies.plural}, "
                f"got {request.resource_name}: check the ValidatingWebhookConfiguration rules",
            )
        if resource["version"] not in policies.versions:
            return denied(
                code=400, reason="BadRequest",
                message=f"{policies.group}/{resource['version']} is not a {policies.kind} "
                f"version this webhook knows: {', '.join(policies.versions)}",
            )
        if request.operation not in ("CREATE", "UPDATE"):
            return allowed()
        policy = request.object
        if policy is None:
            return self.malformed(_missing_object(request))
        findings, selectors = check_policy(
            policy,
            old=request.old_object if request.operation == "UPDATE" else None,
            feature_gates=self.settings.feature_gates,
            same_selectors=self.state.policies.with_same_selectors,
            deny_duplicate_selectors=self.settings.deny_duplicate_selectors,
            parse=False,  # the answer needs the findings and the selectors only
        )
        if selectors is not None:
            return allowed([*findings.warnings, *self._impact(request, selectors)])
        if self.settings.enforcement is Enforcement.WARN:
            return allowed([*map(_enforcement_warning, findings.causes), *findings.warnings,
                            *self._impact(request, selectors_of(policy))])
        metadata = policy.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return invalid(findings=findings, group=policies.group, kind=policies.kind,
                       name=name if isinstance(name, str) else request.name)

    def _impact(self, request: AdmissionRequest, candidate: Policy | None) -> list[str]:
        """The `impact:` warning of a policy about to be stored: none when turned off, or
        when its selectors cannot be read (an invalid policy admitted in warn mode).

        On the event loop it may take IMPACT_ON_LOOP_SECONDS; a larger pass raises
        WouldBlock and the review is judged again in a worker thread."""
        if candidate is None or not self.settings.impact_warnings:
            return []
        view = self.views()
        if view is None:
            return [IMPACT_LOADING]
        on_loop = on_event_loop()
        to_read = vmis_to_read(candidate, view, IMPACT_ON_LOOP_VMIS)
        if on_loop and to_read > IMPACT_ON_LOOP_VMIS:
            raise WouldBlock("the impact warning has many VMIs to read")
        if not to_read and self.state.policies.get(candidate.name) is None:
            impact = Impact()  # the usual new policy: no VMI in the namespaces it selects
        else:
            impact = measure_impact(
                candidate, self.state.policies, view,
                budget_seconds=IMPACT_ON_LOOP_SECONDS if on_loop
                else IMPACT_BUDGET_SECONDS - IMPACT_ON_LOOP_SECONDS)
        if on_loop and not impact.complete:
            raise WouldBlock("the impact warning needs more than the event loop's share")
        return [impact_warning(impact, name=candidate.name,
                               update=request.operation == "UPDATE")]

    def errored(self, request: AdmissionRequest | None) -> Decision:
        """Fail closed, as the webhook's failurePolicy does, but say so."""
        return denied(code=500, reason="InternalError",
                      message="migration-policy-webhook failed to validate this policy: "
                      "an internal error, logged by the webhook; try again or report it")

    def malformed(self, problem: str) -> Decision:
        """A review this webhook cannot judge is refused, saying what is wrong with it."""
        return denied(code=400, reason="BadRequest", message=problem)


@dataclass(frozen=True)
class MigrationStamper:
    """Stamps a new VirtualMachineInstanceMigration with its policy's parameters.

    It never blocks a migration: whatever it cannot decide, it lets through unchanged with
    a warning that says why.
    """

    settings: Settings
    state: ClusterState

    def __call__(self, request: AdmissionRequest) -> Decision:
        resource = request.resource
        migrations = VIRTUAL_MACHINE_INSTANCE_MIGRATIONS
        if resource["group"] != migrations.group or resource["resource"] != migrations.plural:
            return allowed([
                f"migration-policy-webhook stamps {migrations.group}/{migrations.plural}, "
                f"not {request.resource_name}: check the MutatingWebhookConfiguration",
            ])
        if request.operation != "CREATE":
            return allowed()
        migration = request.object
        if migration is None:
            return self.malformed(_missing_object(request))
        if not self.state.is_ready():
            return allowed(["no migration policy applied: the webhook's cluster "
                                         "state has not synced yet"])
        spec = migration.get("spec")
        vmi_name = spec.get("vmiName") if isinstance(spec, dict) else None
        metadata = migration.get("metadata")
        namespace = request.namespace or (
            metadata.get("namespace", "") if isinstance(metadata, dict) else ""
        )
        if not isinstance(vmi_name, str) or not vmi_name:
            return allowed(["no migration policy applied: spec.vmiName is not set"])
        try:
            vmi_labels = self.state.vmi_labels(namespace, vmi_name)
            ns_labels = None if vmi_labels is None else self.state.namespace_labels(namespace)
        except LookupFailed as error:
            return allowed([
                f"no migration policy applied: could not look up VMI {vmi_name!r} in "
                f"namespace {namespace!r}: {error}",
            ])
        if vmi_labels is None:
            return allowed([
                f"no migration policy applied: VMI {vmi_name!r} not found in namespace "
                f"{namespace!r}",
            ])
        if ns_labels is None:
            return allowed([
                f"no migration policy applied: namespace {namespace!r} not found",
            ])
        policy = self.state.policies.winner(vmi_labels, ns_labels)
        patch = stamp_patch(migration, policy, self.settings.annotation_prefix)
        audit = {POLICY_ANNOTATION: policy.name} if policy is not None else None
        stale = self.state.staleness_warning()
        return patched(patch, audit=audit, warnings=(stale,) if stale else ())

    def errored(self, request: AdmissionRequest | None) -> Decision:
        """Never block a migration, even on a bug."""
        return allowed(["no migration policy applied: an internal error in "
                                     "migration-policy-webhook, logged by it"])

    def malformed(self, problem: str) -> Decision:
        """Never block a migration, even for a review it cannot read."""
        return allowed([f"no migration policy applied: the review is malformed: "
                             f"{problem}"[:MAX_WARNING_LENGTH]])


def _enforcement_warning(cause: Cause) -> str:
    line = f"{ENFORCEMENT_WARNING}{cause.line()}"
    return line if len(line) <= MAX_WARNING_LENGTH else line[: MAX_WARNING_LENGTH - 3] + "..."


def _missing_object(request: AdmissionRequest) -> str:
    return f"request.object is missing: a {request.operation} review carries the object"


def build_handlers(settings: Settings, state: ClusterState,
                   views: Views) -> dict[str, Handler]:
    """The admission handlers by URL path."""
    return {
        VALIDATE_PATH: PolicyValidator(settings, state, views),
        MUTATE_PATH: MigrationStamper(settings, state),
    }


def handler_for_resource(handlers: Mapping[str, Handler], plural: str) -> Handler:
    """The handler that a review of this resource is meant for (for `review FILE`)."""
    return handlers[
        MUTATE_PATH if plural == VIRTUAL_MACHINE_INSTANCE_MIGRATIONS.plural else VALIDATE_PATH]
