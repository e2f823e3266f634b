"""The command line: `migration-policy-webhook serve | lint | review | explain | certs`."""

import argparse
import asyncio
import base64
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from pydantic import ValidationError

from app.admission import ReviewError, parse_review
from app.certs_command import add_certs_parser, run_certs
from app.explain import explain, format_labels, format_verdicts
from app.lint import lint_files
from app.manifests import ManifestError, read_documents
from app.precedence import Precedence
from app.serve import serve
from app.settings import KUBE_STATE, SAMPLE_STATE, Settings, parse_feature_gates
from app.state import ClusterState
from app.state.files import DirectoryState, StateError
from app.webhooks import build_handlers, handler_for_resource

EXIT_INVALID = 1
EXIT_USAGE = 2


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feature-gates", default="", metavar="GATE,GATE",
                        help="enabled KubeVirt feature gates: MigrationStallDetection, "
                             "MigrationDowntimeTuning")
    parser.add_argument("--deny-duplicate-selectors", action="store_true",
                        help="refuse a policy whose selectors equal another's (default: warn)")


def _add_state_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", default=str(SAMPLE_STATE),
                        help=f"'{KUBE_STATE}' for the live cluster, or a directory of manifests "
                             "(default: the bundled samples/cluster)")
    parser.add_argument("--precedence", choices=[mode.value for mode in Precedence],
                        default=Precedence.DOCUMENTED.value,
                        help="how ties are decided (default: documented)")
    parser.add_argument("--annotation-prefix", default="migrations.kubevirt.io/")
    parser.add_argument("--kubeconfig", type=Path,
                        help="with --state kube: kubeconfig file (default: in-cluster)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migration-policy-webhook",
        description="Admission webhook for KubeVirt MigrationPolicies and migrations.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the webhooks over HTTPS")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--tls-cert-file", type=Path)
    serve.add_argument("--tls-private-key-file", type=Path)
    serve.add_argument("--client-ca-file", type=Path,
                       help="require client certificates signed by this CA")
    serve.add_argument("--certs-dir", type=Path, default=Path("certs"),
                       help="where development certificates are made when none is given")
    serve.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024)
    _add_state_flags(serve)
    _add_policy_flags(serve)

    lint = commands.add_parser("lint", help="validate MigrationPolicy manifests offline")
    lint.add_argument("files", nargs="+", type=Path)
    _add_policy_flags(lint)

    review = commands.add_parser("review", help="answer an AdmissionReview file, no server")
    review.add_argument("file", type=Path)
    _add_state_flags(review)
    _add_policy_flags(review)

    explain_cmd = commands.add_parser("explain", help="which policy applies to a VMI, and why")
    explain_cmd.add_argument("--vmi", help="VMI name, looked up in --state")
    explain_cmd.add_argument("--namespace", default="default", help="the VMI's namespace")
    explain_cmd.add_argument("--vmi-labels", help="k=v,k=v instead of looking up --vmi")
    explain_cmd.add_argument("--namespace-labels", help="k=v,k=v instead of looking up")
    _add_state_flags(explain_cmd)

    add_certs_parser(commands)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    values = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    values["feature_gates"] = parse_feature_gates(getattr(args, "feature_gates", ""))
    return Settings(**values)


def open_state(settings: Settings) -> ClusterState:
    if settings.state == KUBE_STATE:
        from app.state.kube import KubeState

        return KubeState.from_settings(settings)
    return DirectoryState(Path(settings.state), settings.precedence)


SYNC_TIMEOUT_SECONDS = 30.0


def synced_state(settings: Settings) -> ClusterState:
    """The cluster state, loaded once for a one-shot command (`review`, `explain`)."""
    state = open_state(settings)
    if settings.state == KUBE_STATE:
        asyncio.run(_wait_until_ready(state))
    return state


async def _wait_until_ready(state: ClusterState) -> None:
    await state.start()
    deadline = time.monotonic() + SYNC_TIMEOUT_SECONDS
    while not state.is_ready():
        if time.monotonic() > deadline:
            raise StateError(f"the cluster state did not sync within {SYNC_TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(0.05)


def _parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"label {pair!r} is not key=value")
        labels[key] = value
    return labels


def run_review(args: argparse.Namespace, settings: Settings) -> int:
    try:
        documents = read_documents(args.file)
    except ManifestError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    if len(documents) != 1:
        print(f"{args.file}: expected one AdmissionReview, found {len(documents)} documents",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        request = parse_review(orjson.dumps(documents[0].object))
        state = synced_state(settings)
        handler = handler_for_resource(build_handlers(settings, state), request)
        response = handler(request)
    except (ReviewError, StateError) as error:
        print(f"{args.file}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except orjson.JSONEncodeError as error:  # YAML can hold what JSON cannot
        print(f"{args.file}: cannot be sent as JSON: {error}", file=sys.stderr)
        return EXIT_USAGE
    review = {"apiVersion": request.api_version, "kind": "AdmissionReview", "response": response}
    print(orjson.dumps(review, option=orjson.OPT_INDENT_2).decode())
    if "patch" in response:
        patch = orjson.loads(base64.b64decode(response["patch"]))
        print("decoded patch:")
        print(orjson.dumps(patch, option=orjson.OPT_INDENT_2).decode())
    return 0 if response["allowed"] else EXIT_INVALID


def run_explain(args: argparse.Namespace, settings: Settings) -> int:
    state = synced_state(settings)
    if args.vmi_labels is not None or args.namespace_labels is not None:
        vmi_labels = _parse_labels(args.vmi_labels or "")
        ns_labels = _parse_labels(args.namespace_labels or "")
        title = "VMI with the given labels"
    elif args.vmi:
        found = state.vmi_labels(args.namespace, args.vmi)
        if found is None:
            print(f"VMI {args.vmi!r} not found in namespace {args.namespace!r} in "
                  f"{settings.state}", file=sys.stderr)
            return EXIT_INVALID
        vmi_labels = dict(found)
        ns_labels = dict(state.namespace_labels(args.namespace) or {})
        title = f"VMI {args.namespace}/{args.vmi}"
    else:
        print("explain needs --vmi NAME, or --vmi-labels and/or --namespace-labels",
              file=sys.stderr)
        return EXIT_USAGE
    print(f"{title}\n  VMI labels:       {format_labels(vmi_labels)}\n"
          f"  namespace labels: {format_labels(ns_labels)}\n"
          f"  precedence:       {settings.precedence.value}\n")
    verdicts = explain(state.policies, vmi_labels, ns_labels, settings.precedence)
    print(format_verdicts(verdicts) if verdicts else "no policies in the cluster state")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    if args.command == "certs":
        return run_certs(args)
    try:
        settings = settings_from(args)
        if args.command == "lint":
            return lint_files(args.files, settings)
        if args.command == "review":
            return run_review(args, settings)
        if args.command == "explain":
            return run_explain(args, settings)
        state = open_state(settings)
        asyncio.run(serve(settings, state))
    except ValidationError as error:
        for problem in error.errors():
            field = "--" + "-".join(str(part) for part in problem["loc"]).replace("_", "-")
            message = problem["msg"].removeprefix("Value error, ")
            print(f"{field}: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (StateError, ValueError) as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0
