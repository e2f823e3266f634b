"""`kubectl migration-policy lint|explain|audit|coverage`: the commands as a kubectl plugin.

kubectl runs the console script `kubectl-migration_policy` with the words after
`migration-policy`. The flags are kubectl's: `-n/--namespace` (default: the context's
namespace), `--context`, `--kubeconfig` (default: $KUBECONFIG, else ~/.kube/config), `-o
yaml|json`. `explain`, `audit` and `coverage` read the cluster of that kubeconfig unless
`--state DIR` names a directory of manifests.
"""

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from kubernetes.config import ConfigException, list_kube_config_contexts

from app.commands.audit import run_audit
from app.commands.cli import (
    ONE_SHOT_LOG_LEVEL,
    add_coverage_flags,
    add_policy_flags,
    guarded,
    settings_from,
)
from app.commands.coverage import parse_fail_on, run_coverage
from app.commands.explain import run_explain
from app.commands.lint import lint_files
from app.commands.output import Output
from app.policy.precedence import Precedence
from app.serving.logs import configure_logging
from app.settings import KUBE_STATE, Settings, default

DEFAULT_KUBECONFIG = "~/.kube/config"
DEFAULT_NAMESPACE = "default"


class KubeconfigError(ValueError):
    """The kubeconfig or its context cannot be used: says which, and what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl migration-policy",
        description="Check KubeVirt MigrationPolicies with the webhook's rules.")
    commands = parser.add_subparsers(dest="command", required=True)

    lint = commands.add_parser("lint", help="validate MigrationPolicy manifests offline",
                               parents=[_output_flags()])
    lint.add_argument("files", nargs="*", type=Path, metavar="FILE|DIR")
    lint.add_argument("-f", "--filename", action="append", type=Path, default=[],
                      dest="filenames", metavar="FILE|DIR", help="as kubectl apply -f")
    add_policy_flags(lint)

    explain = commands.add_parser("explain", help="which policy applies to a VMI, and why",
                                  parents=[_output_flags(), _cluster_flags()])
    explain.add_argument("vmi", nargs="?", metavar="VMI", help="the VMI's name")
    explain.add_argument("--vmi-labels", metavar="K=V,...", help="labels instead of a VMI")
    explain.add_argument("--namespace-labels", metavar="K=V,...",
                         help="namespace labels instead of the VMI's namespace's")
    _add_precedence_flag(explain)

    audit = commands.add_parser("audit", help="validate every MigrationPolicy in the cluster",
                                parents=[_output_flags(), _cluster_flags()])
    add_policy_flags(audit)

    coverage = commands.add_parser("coverage", help="what each policy in the cluster governs",
                                   parents=[_output_flags(), _cluster_flags()])
    add_coverage_flags(coverage)
    _add_precedence_flag(coverage)
    return parser


def _add_precedence_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precedence", choices=[mode.value for mode in Precedence],
                        default=default("precedence"), help="how ties are decided")


def _output_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-o", "--output", choices=[Output.YAML.value, Output.JSON.value],
                       default=Output.TEXT.value,
                       help="yaml or json for a program (default: text for a person)")
    return flags


def _cluster_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--kubeconfig", type=Path,
                       help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    flags.add_argument("--context", dest="kube_context", metavar="CONTEXT",
                       help="the kubeconfig context to use (default: its current context)")
    flags.add_argument("-n", "--namespace",
                       help="the VMI's namespace (default: the context's, else default)")
    flags.add_argument("--state", default=KUBE_STATE,
                       help="a directory of manifests instead of the cluster")
    return flags


def user_kubeconfig(given: Path | None) -> Path:
    """The kubeconfig kubectl would use: --kubeconfig, else $KUBECONFIG (which may list
    several files, merged), else ~/.kube/config."""
    if given is not None:
        return given
    return Path(os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG).expanduser()


def context_namespace(kubeconfig: Path, context: str | None) -> str:
    """The namespace of `context` (the current context when None), as kubectl -n defaults."""
    try:
        contexts, current = list_kube_config_contexts(config_file=str(kubeconfig))
    except (ConfigException, OSError, ValueError) as error:
        raise KubeconfigError(f"kubeconfig {kubeconfig}: cannot be used: {error} (give "
                              "--kubeconfig FILE, or --state DIR for manifests)") from None
    wanted = context or (current or {}).get("name")
    for entry in contexts:
        if entry.get("name") == wanted:
            return (entry.get("context") or {}).get("namespace") or DEFAULT_NAMESPACE
    known = ", ".join(sorted(str(entry.get("name")) for entry in contexts)) or "none"
    raise KubeconfigError(f"--context {wanted}: no such context in kubeconfig {kubeconfig} "
                          f"(its contexts: {known})")


def _settings(args: argparse.Namespace) -> Settings:
    if args.command != "lint":
        args.kubeconfig = user_kubeconfig(args.kubeconfig)
        if args.namespace is None:
            args.namespace = (context_namespace(args.kubeconfig, args.kube_context)
                              if args.state == KUBE_STATE or args.kube_context
                              else _namespace_or_default(args.kubeconfig))
    return settings_from(args)


def _namespace_or_default(kubeconfig: Path) -> str:
    """With manifests for the state a kubeconfig is not needed; its namespace is used if
    there is one."""
    try:
        return context_namespace(kubeconfig, None)
    except KubeconfigError:
        return DEFAULT_NAMESPACE


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.logging_format, ONE_SHOT_LOG_LEVEL)
    output = Output(args.output)
    if args.command == "lint":
        files = [*args.filenames, *args.files]
        if not files:
            raise ValueError("lint needs manifests: kubectl migration-policy lint -f FILE|DIR")
        return lint_files(files, settings, output)
    if args.command == "explain":
        if args.vmi is None and args.vmi_labels is None and args.namespace_labels is None:
            raise ValueError("explain needs a VMI name (kubectl migration-policy explain VMI "
                             "-n NAMESPACE), or --vmi-labels and/or --namespace-labels")
        return run_explain(settings, vmi=args.vmi, namespace=args.namespace,
                           vmi_labels=args.vmi_labels, namespace_labels=args.namespace_labels,
                           output=output)
    if args.command == "coverage":
        return run_coverage(settings, per_vmi=args.vmis, fail_on=parse_fail_on(args.fail_on),
                            output=output)
    return run_audit(settings, output)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: _run(args))
