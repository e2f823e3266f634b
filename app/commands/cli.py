"""The command line: `migration-policy-webhook serve | lint | review | explain | audit | coverage |
certs`."""

import argparse
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.commands.audit import run_audit
from app.commands.certs import add_certs_parser, run_certs
from app.commands.coverage import FAIL_ON_CHOICES, parse_fail_on, run_coverage
from app.commands.explain import run_explain
from app.commands.lint import lint_files
from app.commands.output import Output
from app.commands.review import run_review
from app.commands.state import open_state
from app.policy.precedence import Precedence
from app.serving.logs import configure_logging
from app.serving.serve import run_service
from app.settings import (
    BIND_ADDRESS_FORM,
    KUBE_STATE,
    Enforcement,
    LoggingFormat,
    LogLevel,
    Settings,
    default,
    parse_feature_gates,
)
from app.state.files import StateError

EXIT_USAGE = 2
ONE_SHOT_LOG_LEVEL = LogLevel.WARNING
"""The commands that print an answer log only what is wrong: progress would bury it."""


def _setting(parser: argparse.ArgumentParser, flag: str, help: str, *,
             shown: str | None = None, **kwargs: Any) -> None:
    """A flag for the Settings field of the same name, its default read from Settings."""
    value = default(flag.removeprefix("--").replace("-", "_"))
    if shown is None and value is not None:
        shown = str(value)
    parser.add_argument(flag, default=value,
                        help=f"{help} (default: {shown})" if shown else help, **kwargs)


def _choices(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=_choices(Output), default=Output.TEXT.value,
                        help="text for a person, json or yaml for a program (default: text)")


BOOLEAN: dict[str, Any] = {"nargs": "?", "const": "true", "metavar": "true|false"}
"""A flag written `--flag`, `--flag=true` or `--flag=false` (as kubectl's and Go's)."""


def add_policy_flags(parser: argparse.ArgumentParser) -> None:
    _setting(parser, "--feature-gates", "enabled KubeVirt feature gates: "
             "MigrationStallDetection, MigrationDowntimeTuning", shown="none",
             type=parse_feature_gates, metavar="GATE,GATE")
    _setting(parser, "--deny-duplicate-selectors",
             "refuse a policy whose selectors equal another's, rather than warn",
             shown="off", action="store_true")


def _add_impact_flag(parser: argparse.ArgumentParser) -> None:
    _setting(parser, "--impact-warnings", "warn what a valid policy would govern now "
             "(impact: ...)", shown="true", **BOOLEAN)


def _add_state_flags(parser: argparse.ArgumentParser) -> None:
    _setting(parser, "--state", f"'{KUBE_STATE}' for the live cluster, or a directory of "
             "manifests", shown="the bundled samples/cluster")
    _add_kube_flags(parser)


def _add_kube_flags(parser: argparse.ArgumentParser) -> None:
    _setting(parser, "--precedence", "how ties are decided", choices=_choices(Precedence))
    _setting(parser, "--annotation-prefix", "prefix of the stamped annotations")
    _setting(parser, "--kubeconfig", "with --state kube: kubeconfig file", shown="in-cluster",
             type=Path)


def _add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the webhooks over HTTPS")
    _setting(serve, "--host", "address to listen on; empty for every address, IPv4 and IPv6 "
             "(IPv4 only where the machine has no IPv6)", shown="'', every address")
    _setting(serve, "--port", "HTTPS port of the webhooks", type=int)
    _setting(serve, "--tls-cert-file", "serving certificate (PEM), reloaded when it changes",
             shown="a development certificate in --certs-dir", type=Path)
    _setting(serve, "--tls-private-key-file", "its private key", type=Path)
    _setting(serve, "--client-ca-file", "require client certificates signed by this CA",
             type=Path)
    _setting(serve, "--certs-dir", "where development certificates are made when none is "
             "given", type=Path)
    _setting(serve, "--max-body-bytes", "larger bodies get 413", type=int)
    _setting(serve, "--enforcement", "deny: refuse an invalid policy; warn: admit it with "
             "every problem as a warning", choices=_choices(Enforcement))
    for flag, what in (("--health-probe-bind-address", "/healthz and /readyz"),
                       ("--metrics-bind-address", "/metrics")):
        _setting(serve, flag, f"serve {what} over plain HTTP there: {BIND_ADDRESS_FORM}",
                 metavar="ADDRESS")
    _setting(serve, "--logging-format", "log lines as text, or one JSON object a line",
             choices=_choices(LoggingFormat))
    _setting(serve, "--log-level", "least severe level logged", choices=_choices(LogLevel))
    _setting(serve, "--request-read-timeout", "seconds to receive a request's headers and "
             "body", type=float, metavar="SECONDS")
    _setting(serve, "--keep-alive-timeout", "seconds an idle connection is kept open "
             "(longer than the API server's 90 s)", type=float, metavar="SECONDS")
    _setting(serve, "--max-connections", "open connections at most", type=int)
    _setting(serve, "--max-concurrent-requests", "requests handled at once; beyond, 503",
             type=int)
    _setting(serve, "--shutdown-grace-period", "seconds to finish in-flight requests after "
             "SIGTERM", type=float, metavar="SECONDS")
    _setting(serve, "--watch-idle-timeout", "with --state kube: seconds a watch may bring "
             "nothing before it is resumed", type=float, metavar="SECONDS")
    _setting(serve, "--max-staleness", "with --state kube: seconds without news from the API "
             "before mutation answers warn that the cache is stale", type=float,
             metavar="SECONDS")
    _setting(serve, "--coverage-interval", "seconds between two passes over the state for "
             "the coverage metrics and impact warnings, at most (only after a change)",
             type=float, metavar="SECONDS")
    _setting(serve, "--per-policy-metrics", "series per policy (governed and matched VMIs)",
             shown="true", **BOOLEAN)
    _add_state_flags(serve)
    add_policy_flags(serve)
    _add_impact_flag(serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migration-policy-webhook",
        description="Admission webhook for KubeVirt MigrationPolicies and migrations.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve_parser(commands)

    lint = commands.add_parser("lint", help="validate MigrationPolicy manifests offline")
    lint.add_argument("files", nargs="+", type=Path, metavar="FILE|DIR")
    add_policy_flags(lint)
    add_output_flag(lint)

    review = commands.add_parser("review", help="answer an AdmissionReview file, no server")
    review.add_argument("file", type=Path)
    _add_state_flags(review)
    add_policy_flags(review)
    _add_impact_flag(review)

    explain_cmd = commands.add_parser("explain", help="which policy applies to a VMI, and why")
    explain_cmd.add_argument("--vmi", help="VMI name, looked up in --state")
    explain_cmd.add_argument("--namespace", default="default", help="the VMI's namespace")
    explain_cmd.add_argument("--vmi-labels", help="k=v,k=v instead of looking up --vmi")
    explain_cmd.add_argument("--namespace-labels", help="k=v,k=v instead of looking up")
    _add_state_flags(explain_cmd)
    add_output_flag(explain_cmd)

    audit = commands.add_parser("audit", help="validate every MigrationPolicy of the state")
    _add_state_flags(audit)
    add_policy_flags(audit)
    add_output_flag(audit)

    coverage = commands.add_parser("coverage", help="what each policy governs: shadowed, "
                                   "unused, tie-breaks")
    add_coverage_flags(coverage)
    _add_state_flags(coverage)
    add_output_flag(coverage)

    add_certs_parser(commands)
    return parser


def add_coverage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vmis", action="store_true",
                        help="also every VMI: its policy, the runner-up, whether a tie-break "
                        "decided")
    parser.add_argument("--fail-on", default="", metavar="STATE,STATE",
                        help="exit 1 when a policy is in one of these states: "
                        f"{', '.join(FAIL_ON_CHOICES)} (default: none)")


def settings_from(args: argparse.Namespace) -> Settings:
    values = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return Settings(**values)


def guarded(command: Callable[[], int]) -> int:
    """Run a command; a usage mistake is one message on stderr and exit 2, no traceback."""
    try:
        return command()
    except ValidationError as error:
        for problem in error.errors():
            field = "--" + "-".join(str(part) for part in problem["loc"]).replace("_", "-")
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] != "value_error":  # pydantic's words do not quote the value
                message = f"{message[:1].lower()}{message[1:]}, got {problem['input']!r}"
            print(f"{field}: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (StateError, ValueError) as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.command == "certs":
        defaults = Settings()
        configure_logging(defaults.logging_format, defaults.log_level)
        return run_certs(args)
    settings = settings_from(args)
    configure_logging(settings.logging_format,
                      settings.log_level if args.command == "serve" else ONE_SHOT_LOG_LEVEL)
    if args.command == "lint":
        return lint_files(args.files, settings, Output(args.output))
    if args.command == "review":
        return run_review(args.file, settings)
    if args.command == "explain":
        return run_explain(settings, vmi=args.vmi, namespace=args.namespace,
                           vmi_labels=args.vmi_labels, namespace_labels=args.namespace_labels,
                           output=Output(args.output))
    if args.command == "audit":
        return run_audit(settings, Output(args.output))
    if args.command == "coverage":
        return run_coverage(settings, per_vmi=args.vmis, fail_on=parse_fail_on(args.fail_on),
                            output=Output(args.output))
    run_service(settings, open_state(settings, check_stamps=True))
    return 0
