"""`lint FILE...`: validate MigrationPolicy manifests offline, as the webhook would."""

import sys
from collections.abc import Sequence
from pathlib import Path

from app.manifests import Document, ManifestError, manifest_files, read_documents
from app.policy import policy_from_object
from app.policy_validation import KIND as POLICY_KIND
from app.policy_validation import validate_policy
from app.precedence import PolicyIndex
from app.settings import Settings


def lint_files(paths: Sequence[Path], settings: Settings) -> int:
    """Print every problem of every policy; 1 if any file or policy is invalid, or none is
    found, else 0."""
    failed = False
    documents: list[Document] = []
    for path in _expand(paths):
        try:
            documents.extend(read_documents(path))
        except ManifestError as error:
            print(f"{error}", file=sys.stderr)
            failed = True
    policies = [doc for doc in documents if doc.kind == POLICY_KIND]
    for doc in documents:
        if doc.kind != POLICY_KIND:
            print(f"{doc.source}: skipped, kind {doc.kind or '(none)'} is not {POLICY_KIND}")
    # Policies seen so far, so that two files with the same selectors are caught too.
    seen = PolicyIndex(settings.precedence)

    for doc in policies:
        findings = validate_policy(
            doc.object,
            feature_gates=settings.feature_gates,
            same_selectors=seen.with_same_selectors,
            deny_duplicate_selectors=settings.deny_duplicate_selectors,
        )
        metadata = doc.object.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        label = f"{doc.source}: {POLICY_KIND} {name!r}" if name else f"{doc.source}: {POLICY_KIND}"
        if findings.valid:
            print(f"{label} is valid")
            seen.put(policy_from_object(doc.object))
        else:
            failed = True
            print(f"{label} is invalid:")
            for cause in findings.causes:
                print(f"  * {cause.line()}")
        for warning in findings.warnings:
            print(f"  Warning: {warning}")
    if not policies and not failed:
        print("no MigrationPolicy found in " + ", ".join(map(str, paths)), file=sys.stderr)
        failed = True
    return 1 if failed else 0


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory stands for its manifest files, as with kubectl -f DIR."""
    return [file for path in paths
            for file in (manifest_files(path) if path.is_dir() else [path])]
