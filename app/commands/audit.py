"""`audit`: validate every MigrationPolicy already in the state with the webhook's rules.

What a cluster holds was admitted by other rules (KubeVirt's webhook, no webhook, other
feature gates): `audit` shows what this webhook would refuse, before it enforces anything.
The policies are read as stored, not through the cluster state, which leaves invalid ones
out.
"""

import sys
from pathlib import Path

import urllib3

from app.commands.lint import check_policies, print_reports
from app.commands.output import Output
from app.k8s.manifests import Document, ManifestError, manifest_files, read_documents
from app.k8s.resources import MIGRATION_POLICIES
from app.policy.precedence import PolicyIndex
from app.policy.validation import check_policy
from app.settings import KUBE_STATE, Settings
from app.state.files import StateError
from app.state.kube_api import ApiError, KubeApi, TransportErrors

PAGE_SIZE = 500
TIMEOUT = urllib3.Timeout(connect=5.0, read=30.0)

EXIT_INVALID = 1


class AuditError(ValueError):
    """The policies could not be read: says where, and why."""


def cluster_policies(settings: Settings) -> list[Document]:
    """Every MigrationPolicy the API server stores, listed page by page."""
    api = KubeApi.from_kubeconfig(settings.kubeconfig, settings.kube_context)
    documents: list[Document] = []
    query = [("limit", str(PAGE_SIZE))]
    try:
        while True:
            page = api.get_json(MIGRATION_POLICIES.list_path, query, timeout=TIMEOUT)
            items = page.get("items") or []
            documents += [Document("", item) for item in items if isinstance(item, dict)]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return documents
            query = [("limit", str(PAGE_SIZE)), ("continue", token)]
    except ApiError as error:
        if error.code in (401, 403):
            resource = MIGRATION_POLICIES.group_resource
            raise AuditError(f"the API server at {api.host} refused to list {resource}: "
                             f"{error}: the user needs the list permission on them (check: "
                             f"kubectl auth can-i list {resource})") from None
        raise AuditError(f"listing {MIGRATION_POLICIES.plural} at {api.host} failed: "
                         f"{error}") from None
    except TransportErrors as error:
        raise AuditError(f"cannot reach the API server at {api.host}: {error}") from None
    finally:
        api.close()


def directory_policies(directory: Path) -> tuple[list[Document], list[str]]:
    """The MigrationPolicies of a state directory, and the files that could not be read."""
    if not directory.is_dir():
        raise StateError(f"--state {directory}: no such directory (give a directory of "
                         f"manifests, or {KUBE_STATE} for the live cluster)")
    documents: list[Document] = []
    problems: list[str] = []
    kind = MIGRATION_POLICIES.kind
    for path in manifest_files(directory):
        try:
            documents += [doc for doc in read_documents(path) if doc.kind == kind]
        except ManifestError as error:
            problems.append(str(error))
    return documents, problems


def run_audit(settings: Settings, output: Output) -> int:
    """Print every policy's problems; 1 if any is invalid (or a file unreadable), else 0."""
    problems: list[str] = []
    if settings.state == KUBE_STATE:
        documents = cluster_policies(settings)
    else:
        documents, problems = directory_policies(Path(settings.state))
    for problem in problems:
        print(problem, file=sys.stderr)
    reports = check_policies(documents, settings, existing=_valid_policies(documents, settings))
    invalid = sum(not report.findings.valid for report in reports)
    print_reports(reports, output, {"state": settings.state})
    if output is Output.TEXT:
        noun = MIGRATION_POLICIES.kind if len(reports) == 1 else "MigrationPolicies"
        print(f"{len(reports)} {noun} in {settings.state}: {len(reports) - invalid} valid, "
              f"{invalid} invalid")
    return EXIT_INVALID if invalid or problems else 0


def _valid_policies(documents: list[Document], settings: Settings) -> PolicyIndex:
    """The policies the webhook would accept, to find equal selectors among them."""
    checked = (check_policy(doc.object, feature_gates=settings.feature_gates)
               for doc in documents)
    return PolicyIndex(settings.precedence,
                       [policy for _, policy in checked if policy is not None])
