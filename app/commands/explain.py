"""`explain`: every policy, whether it applies to a VMI, its score, and why it wins or loses."""

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from app.commands.output import Output, dump, table
from app.commands.state import synced_state
from app.policy.effective import Effective, effective_configuration
from app.policy.model import Policy
from app.policy.precedence import Precedence, precedence_key
from app.settings import Settings
from app.state import LookupFailed

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Verdict:
    policy: Policy
    applies: bool
    reason: str
    wins: bool = False


def _mismatch(policy: Policy, vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str]) -> str:
    """Why a policy does not apply: its first selector pair the labels lack."""
    if not policy.has_selectors:
        return "has no spec.selectors, so it applies to nothing"
    for what, selector, labels in (
        ("VMI", policy.vmi_selector, vmi_labels),
        ("namespace", policy.namespace_selector, ns_labels),
    ):
        for key, value in sorted(selector.items()):
            if key not in labels:
                return f"wants {what} label {key}={value!r}, the {what} has no label {key}"
            if labels[key] != value:
                return f"wants {what} label {key}={value!r}, the {what} has {labels[key]!r}"
    return "applies"


def _why_wins(winner: Policy, runner_up: Policy, mode: Precedence) -> str:
    if winner.score != runner_up.score:
        return f"highest score ({winner.score}, next is {runner_up.score})"
    if mode is Precedence.KUBEVIRT and len(winner.vmi_selector) != len(runner_up.vmi_selector):
        return f"ties on score {winner.score}, matches the most VMI labels"
    if mode is Precedence.DOCUMENTED and winner.sorted_keys != runner_up.sorted_keys:
        return (f"ties on score {winner.score}, its selector keys "
                f"[{', '.join(winner.sorted_keys)}] sort first")
    return f"ties on score {winner.score}, its name sorts first"


def _why_loses(loser: Policy, winner: Policy, mode: Precedence) -> str:
    if loser.score != winner.score:
        return f"loses to {winner.name}: lower score ({loser.score} < {winner.score})"
    if mode is Precedence.KUBEVIRT and len(loser.vmi_selector) != len(winner.vmi_selector):
        return (f"loses to {winner.name}: same score, fewer VMI labels "
                f"({len(loser.vmi_selector)} < {len(winner.vmi_selector)})")
    if mode is Precedence.DOCUMENTED and loser.sorted_keys != winner.sorted_keys:
        return (f"loses to {winner.name}: same score, its keys [{', '.join(loser.sorted_keys)}] "
                f"sort after [{', '.join(winner.sorted_keys)}]")
    return f"loses to {winner.name}: ties on everything else, its name sorts after"


def explain(
    policies: Iterable[Policy], vmi_labels: Mapping[str, str], ns_labels: Mapping[str, str],
    mode: Precedence,
) -> list[Verdict]:
    """One verdict per policy: the winner first, then the other applicable ones, then the rest."""
    policies = list(policies)
    applicable = sorted(
        (policy for policy in policies if policy.applies_to(vmi_labels, ns_labels)),
        key=lambda policy: precedence_key(policy, mode),
    )
    applying = {policy.name for policy in applicable}
    verdicts: list[Verdict] = []
    if applicable:
        winner = applicable[0]
        reason = (_why_wins(winner, applicable[1], mode) if len(applicable) > 1
                  else "the only policy that applies")
        verdicts.append(Verdict(winner, True, reason, wins=True))
        verdicts += [Verdict(policy, True, _why_loses(policy, winner, mode))
                     for policy in applicable[1:]]
    verdicts += [
        Verdict(policy, False, _mismatch(policy, vmi_labels, ns_labels))
        for policy in sorted(policies, key=lambda policy: policy.name)
        if policy.name not in applying
    ]
    return verdicts


def format_labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in sorted(labels.items())) or "(none)"


def format_verdicts(verdicts: list[Verdict]) -> str:
    """A table a person reads in a terminal."""
    rows = [("POLICY", "APPLIES", "SCORE", "DECISION")]
    for verdict in verdicts:
        decision = ("WINS: " if verdict.wins else "") + verdict.reason
        rows.append((verdict.policy.name, "yes" if verdict.applies else "no",
                     str(verdict.policy.score), decision))
    return table(rows)


def verdicts_as_dicts(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """As `-o json|yaml` prints them."""
    return [{"name": verdict.policy.name, "applies": verdict.applies,
             "score": verdict.policy.score, "wins": verdict.wins, "reason": verdict.reason}
            for verdict in verdicts]


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k=v` as given to --vmi-labels and --namespace-labels."""
    labels = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"label {pair!r} is not key=value")
        labels[key] = value
    return labels


def run_explain(
    settings: Settings, *, vmi: str | None, namespace: str, vmi_labels: str | None = None,
    namespace_labels: str | None = None, output: Output = Output.TEXT,
) -> int:
    """Print the verdicts for a VMI of the state, or for labels given instead."""
    if vmi_labels is not None or namespace_labels is not None:
        labels, ns_labels = parse_labels(vmi_labels or ""), parse_labels(namespace_labels or "")
        state = synced_state(settings)
        subject = None
    elif vmi:
        state = synced_state(settings)
        found = state.vmi_labels(namespace, vmi)
        if found is None:
            print(f"VMI {vmi!r} not found in namespace {namespace!r} in {settings.state}",
                  file=sys.stderr)
            return EXIT_NOT_FOUND
        labels, ns_labels = dict(found), dict(state.namespace_labels(namespace) or {})
        subject = {"namespace": namespace, "name": vmi}
    else:
        print("explain needs --vmi NAME, or --vmi-labels and/or --namespace-labels",
              file=sys.stderr)
        return EXIT_USAGE
    verdicts = explain(state.policies, labels, ns_labels, settings.precedence)
    winner = verdicts[0].policy if verdicts and verdicts[0].wins else None
    try:
        effective: dict[str, Effective] | str = effective_configuration(
            winner, state.migration_configuration())
    except LookupFailed as error:
        effective = f"unknown: {error}"
    if output is not Output.TEXT:
        print(dump({"vmi": subject, "vmiLabels": labels, "namespaceLabels": ns_labels,
                    "precedence": settings.precedence.value,
                    "policies": verdicts_as_dicts(verdicts),
                    "effectiveConfiguration": effective if isinstance(effective, str) else
                    {name: value.as_dict() for name, value in effective.items()}}, output))
        return 0
    title = (f"VMI {namespace}/{vmi}" if subject else "VMI with the given labels")
    print(f"{title}\n  VMI labels:       {format_labels(labels)}\n"
          f"  namespace labels: {format_labels(ns_labels)}\n"
          f"  precedence:       {settings.precedence.value}\n")
    print(format_verdicts(verdicts) if verdicts else "no policies in the cluster state")
    print("\nEffective configuration of its migrations:")
    print(f"  {effective}" if isinstance(effective, str) else format_effective(effective))
    return 0


def format_effective(effective: Mapping[str, Effective]) -> str:
    """Each parameter, its value as the KubeVirt API writes it, and where it comes from."""
    rows = [("PARAMETER", "VALUE", "SOURCE")]
    for name, found in effective.items():
        value = orjson.dumps(found.value).decode() if not isinstance(found.value, str) \
            else found.value
        source = f"{found.source} {found.policy}" if found.policy else found.source
        rows.append((name, value, source))
    return table(rows)
