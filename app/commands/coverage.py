"""`coverage`: what each policy of the state governs, which are shadowed or unused, and
which VMIs only a tie-break decides (`--fail-on` makes any of those an exit 1, for CI)."""

import os
import sys
from typing import Any

from app.commands.output import Output, dump, table
from app.commands.state import synced_state
from app.policy.coverage import Coverage, PolicyCoverage, Status, coverage
from app.settings import KUBE_STATE, Settings

EXIT_FAILED_CHECK = 1

TIES = "ties"
FAIL_ON_CHOICES = (Status.SHADOWED.value, Status.UNUSED.value, Status.NO_SELECTORS.value, TIES)


def parse_fail_on(text: str) -> frozenset[str]:
    """`shadowed,unused,ties` as given to --fail-on."""
    wanted = frozenset(filter(None, (part.strip() for part in text.split(","))))
    unknown = sorted(wanted - set(FAIL_ON_CHOICES))
    if unknown:
        raise ValueError(f"--fail-on: {', '.join(map(repr, unknown))} is not a state to fail "
                         f"on; give a comma-separated list of {', '.join(FAIL_ON_CHOICES)}")
    return wanted


def failed_checks(report: Coverage, fail_on: frozenset[str]) -> list[str]:
    """One line per policy in a state named by --fail-on."""
    lines = []
    for policy in report.policies:
        if policy.status.value in fail_on:
            lines.append(f"{policy.name}: {policy.status.value} ({_why(policy)})")
        if TIES in fail_on and policy.tie_breaks:
            lines.append(f"{policy.name}: governs {policy.tie_breaks} VMI(s) by the tie-break "
                         "only (a runner-up has the same score): make one policy more specific")
    return lines


def _why(policy: PolicyCoverage) -> str:
    if policy.status is Status.SHADOWED:
        return f"matches {policy.matches} VMI(s), all won by {_beaten_by_text(policy)}"
    if policy.status is Status.UNUSED:
        return "matches no VMI"
    return "has no spec.selectors, so it applies to nothing"


def _beaten_by(policy: PolicyCoverage) -> list[tuple[str, int]]:
    """The policies that beat it, most VMIs first."""
    return sorted(policy.beaten_by.items(), key=lambda item: (-item[1], item[0]))


def _beaten_by_text(policy: PolicyCoverage) -> str:
    return ", ".join(f"{name} ({count})" for name, count in _beaten_by(policy)) or "-"


def as_document(report: Coverage, settings: Settings, *, per_vmi: bool) -> dict[str, Any]:
    """As `-o json|yaml` prints it: `policies` with exactly the issue's keys, and `name`."""
    document: dict[str, Any] = {
        "state": settings.state, "precedence": settings.precedence.value,
        "vmiCount": report.vmi_count, "vmisWithoutNamespace": report.without_namespace,
        "policies": [{"name": policy.name, "status": policy.status.value,
                      "governs": policy.governs, "matches": policy.matches,
                      "beatenBy": [{"name": name, "vmis": count}
                                   for name, count in _beaten_by(policy)],
                      "tieBreaks": policy.tie_breaks} for policy in report.policies],
    }
    if per_vmi:
        document["vmis"] = [{"namespace": vmi.namespace, "name": vmi.name, "policy": vmi.winner,
                             "runnerUp": vmi.runner_up, "tieBreak": vmi.tie_break}
                            for vmi in report.vmis]
    return document


def as_text(report: Coverage, settings: Settings, *, per_vmi: bool) -> str:
    policies = table([("POLICY", "STATUS", "GOVERNS", "MATCHES", "TIE-BREAKS", "BEATEN BY"),
                      *((policy.name, policy.status.value, str(policy.governs),
                         str(policy.matches), str(policy.tie_breaks), _beaten_by_text(policy))
                        for policy in report.policies)])
    governed = sum(policy.governs for policy in report.policies)
    counts = report.status_counts()
    summary = (f"{report.vmi_count} VMIs in {_shown(settings.state)} (precedence "
               f"{settings.precedence.value}):\n{governed} governed by a policy, "
               f"{report.vmi_count - report.without_namespace - governed} by none")
    if report.without_namespace:
        summary += f", {report.without_namespace} in a namespace the state does not hold"
    summary += (f"; {report.tie_broken} decided by a tie-break.\npolicies: "
                + ", ".join(f"{count} {status.value}" for status, count in counts.items()))
    parts = [policies if report.policies else "no policies in the cluster state", summary]
    if per_vmi:
        parts.insert(1, table([("NAMESPACE", "VMI", "POLICY", "RUNNER-UP", "TIE-BREAK"),
                               *((vmi.namespace, vmi.name, vmi.winner or "-",
                                  vmi.runner_up or "-", "yes" if vmi.tie_break else "no")
                                 for vmi in report.vmis)]))
    return "\n\n".join(parts)


def _shown(state: str) -> str:
    """A state directory relative to the working directory when it is under it."""
    if state == KUBE_STATE:
        return "the cluster"
    relative = os.path.relpath(state)
    return state if relative.startswith("..") else relative


def run_coverage(settings: Settings, *, per_vmi: bool, fail_on: frozenset[str],
                 output: Output) -> int:
    """Print the report; 1 when a policy is in a state `fail_on` names, else 0."""
    state = synced_state(settings)
    report = coverage(state.policies, state.all_vmi_labels().items(),
                      state.all_namespace_labels(), per_vmi=per_vmi)
    if output is Output.TEXT:
        print(as_text(report, settings, per_vmi=per_vmi))
    else:
        print(dump(as_document(report, settings, per_vmi=per_vmi), output))
    failures = failed_checks(report, fail_on)
    for line in failures:
        print(f"--fail-on {','.join(sorted(fail_on))}: {line}", file=sys.stderr)
    return EXIT_FAILED_CHECK if failures else 0
