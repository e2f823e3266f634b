"""`lint FILE...`: validate MigrationPolicy manifests offline, as the webhook would; the
report `audit` prints too."""

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.commands.output import Output, dump
from app.k8s.manifests import Document, ManifestError, manifest_files, read_documents
from app.k8s.resources import MIGRATION_POLICIES
from app.policy.findings import Findings
from app.policy.precedence import PolicyIndex
from app.policy.validation import check_policy
from app.settings import Settings


@dataclass(frozen=True)
class PolicyReport:
    """What validation found in one MigrationPolicy, and where it was."""

    source: str
    """`file.yaml#2`, or "" for a policy read from the cluster."""
    name: str | None
    findings: Findings

    @property
    def label(self) -> str:
        kind = MIGRATION_POLICIES.kind
        what = f"{kind} {self.name!r}" if self.name else kind
        return f"{self.source}: {what}" if self.source else what

    def lines(self) -> list[str]:
        """As a person reads it: the verdict, then each problem and warning indented."""
        if self.findings.valid:
            lines = [f"{self.label} is valid"]
        else:
            lines = [f"{self.label} is invalid:"]
            lines += [f"  * {cause.line()}" for cause in self.findings.causes]
        return lines + [f"  Warning: {warning}" for warning in self.findings.warnings]

    def as_dict(self) -> dict[str, Any]:
        """As `-o json|yaml` prints it; causes as the webhook sends them."""
        document: dict[str, Any] = {"name": self.name}
        if self.source:
            document["source"] = self.source
        document["valid"] = self.findings.valid
        document["causes"] = [
            {"reason": cause.type.value, "field": cause.field, "message": cause.message}
            for cause in self.findings.causes]
        document["warnings"] = list(self.findings.warnings)
        return document


def check_policies(
    documents: Iterable[Document], settings: Settings, *, existing: PolicyIndex | None = None,
) -> list[PolicyReport]:
    """Validate every policy with the webhook's rules and the settings' gates.

    Equal selectors are looked for in `existing` (`audit`: every policy of the state), or,
    without it, among the policies before each one (`lint`: as if applied in that order).
    """
    seen = existing if existing is not None else PolicyIndex(settings.precedence)
    reports = []
    for doc in documents:
        findings, policy = check_policy(
            doc.object,
            feature_gates=settings.feature_gates,
            same_selectors=seen.with_same_selectors,
            deny_duplicate_selectors=settings.deny_duplicate_selectors,
            parse=existing is None,
        )
        if policy is not None:
            seen.put(policy)
        reports.append(PolicyReport(doc.source, _name(doc.object), findings))
    return reports


def _name(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def print_reports(reports: Sequence[PolicyReport], output: Output,
                  extra: dict[str, Any] | None = None) -> None:
    """The reports on stdout: lines of text, or one JSON/YAML document with `extra` first."""
    if output is Output.TEXT:
        for report in reports:
            print("\n".join(report.lines()))
        return
    invalid = sum(not report.findings.valid for report in reports)
    print(dump({**(extra or {}), "policies": [report.as_dict() for report in reports],
                "valid": len(reports) - invalid, "invalid": invalid}, output))


def lint_files(paths: Sequence[Path], settings: Settings, output: Output = Output.TEXT) -> int:
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
    # A note on stdout in text; on stderr when stdout is one JSON or YAML document.
    notes = sys.stdout if output is Output.TEXT else sys.stderr
    kind = MIGRATION_POLICIES.kind
    for doc in documents:
        if doc.kind != kind:
            print(f"{doc.source}: skipped, kind {doc.kind or '(none)'} is not {kind}",
                  file=notes)
    reports = check_policies([doc for doc in documents if doc.kind == kind], settings)
    print_reports(reports, output)
    if not reports and not failed:
        print(f"no {kind} found in " + ", ".join(map(str, paths)), file=sys.stderr)
        failed = True
    return 1 if failed or any(not report.findings.valid for report in reports) else 0


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory stands for its manifest files, as with kubectl -f DIR."""
    return [file for path in paths
            for file in (manifest_files(path) if path.is_dir() else [path])]
