"""Cluster state from a directory of manifests (`--state DIR`), reloaded when files change.

The directory is read whole into a new snapshot which then replaces the old one, so a
request never sees half a reload. A broken file, or an invalid MigrationPolicy, is logged
and the last good snapshot stays in force.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.k8s.labels import interned
from app.k8s.manifests import Document, ManifestError, manifest_files, read_documents
from app.k8s.resources import (
    KUBEVIRTS,
    MIGRATION_POLICIES,
    NAMESPACES,
    VIRTUAL_MACHINE_INSTANCES,
)
from app.policy.feature_gates import KNOWN_FEATURE_GATES
from app.policy.model import Policy
from app.policy.precedence import PolicyIndex, Precedence
from app.policy.validation import check_policy
from app.state.metrics import StateCollector, StateFigures

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"


class StateError(ValueError):
    """The directory does not hold a consistent cluster state; says every problem."""


@dataclass(frozen=True)
class Snapshot:
    policies: PolicyIndex
    vmis: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    migration_configuration: Mapping[str, Any] | None = None
    """`spec.configuration.migrations` of a KubeVirt manifest, if the directory has one."""


def load_snapshot(directory: Path, precedence: Precedence) -> Snapshot:
    """Read every manifest under `directory`; raise StateError listing what is wrong."""
    if not directory.exists():
        raise StateError(f"--state {directory}: no such directory (give a directory of "
                         "manifests, or kube for the live cluster)")
    if not directory.is_dir():
        raise StateError(f"--state {directory}: not a directory of manifests")
    problems: list[str] = []
    documents: list[Document] = []
    for path in manifest_files(directory):
        try:
            documents.extend(read_documents(path))
        except ManifestError as error:
            problems.append(str(error))
    policies: list[Policy] = []
    vmis: dict[tuple[str, str], Mapping[str, str]] = {}
    namespaces: dict[str, Mapping[str, str]] = {}
    kubevirts: list[Document] = []
    for document in documents:
        obj = document.object
        found = obj.get("metadata")
        metadata: dict[str, Any] = found if isinstance(found, dict) else {}
        labels = _labels(metadata)
        if document.kind == MIGRATION_POLICIES.kind:
            findings, policy = check_policy(obj, feature_gates=KNOWN_FEATURE_GATES)
            if policy is not None:
                policies.append(policy)
            else:
                problems.append(f"{document.source}: invalid {MIGRATION_POLICIES.kind}: "
                                f"{findings.summary()}")
        elif document.kind == VIRTUAL_MACHINE_INSTANCES.kind and labels is not None:
            namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
            vmis[(namespace, metadata.get("name", ""))] = labels
        elif document.kind == NAMESPACES.kind and labels is not None:
            namespaces[metadata.get("name", "")] = labels
        elif document.kind == KUBEVIRTS.kind:
            kubevirts.append(document)
        elif document.kind in (VIRTUAL_MACHINE_INSTANCES.kind, NAMESPACES.kind):
            problems.append(f"{document.source}: metadata.labels must map strings to strings")
    migrations = _migration_configuration(kubevirts, problems)
    if problems:
        raise StateError("; ".join(problems))
    return Snapshot(PolicyIndex(precedence, policies), vmis, namespaces, migrations)


def _migration_configuration(kubevirts: list[Document],
                             problems: list[str]) -> Mapping[str, Any] | None:
    """`spec.configuration.migrations` of the one KubeVirt manifest (KubeVirt runs one CR)."""
    if len(kubevirts) > 1:
        problems.append(f"{len(kubevirts)} {KUBEVIRTS.kind} manifests "
                        f"({', '.join(doc.source for doc in kubevirts)}): a cluster has one")
        return None
    if not kubevirts:
        return None
    found: Any = kubevirts[0].object
    for key in ("spec", "configuration", "migrations"):
        found = found.get(key) if isinstance(found, dict) else None
    if found is not None and not isinstance(found, dict):
        problems.append(f"{kubevirts[0].source}: spec.configuration.migrations must be an "
                        f"object, got {type(found).__name__}")
        return None
    return found or {}


def _labels(metadata: Mapping[str, object]) -> dict[str, str] | None:
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in labels.items()
    ):
        return None
    return interned(labels)


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a manifest file is added, removed or written."""
    entries = []
    for path in manifest_files(directory):
        with contextlib.suppress(OSError):
            stat = path.stat()
            entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class DirectoryState:
    """A ClusterState read from manifests and polled for changes."""

    def __init__(
        self, directory: Path, precedence: Precedence, poll_interval: float = 0.5
    ) -> None:
        self.directory = directory
        self._precedence = precedence
        self._poll_interval = poll_interval
        self._fingerprint = _fingerprint(directory)
        self._snapshot = load_snapshot(directory, precedence)
        self._loads = 1
        self._loaded_at = time.time()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def policies(self) -> PolicyIndex:
        return self._snapshot.policies

    def is_ready(self) -> bool:
        return True

    def vmi_labels(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self._snapshot.vmis.get((namespace, name))

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        return self._snapshot.namespaces.get(name)

    def changes(self) -> int:
        return self._loads

    def migration_configuration(self) -> Mapping[str, Any] | None:
        return self._snapshot.migration_configuration

    def all_vmi_labels(self) -> dict[tuple[str, str], Mapping[str, str]]:
        return dict(self._snapshot.vmis)

    def all_namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        return self._snapshot.namespaces

    def staleness_warning(self) -> str | None:
        """The files are the truth: they cannot be stale."""
        return None

    def collector(self) -> StateCollector:
        return StateCollector(self._figures)

    def _figures(self) -> StateFigures:
        snapshot = self._snapshot
        objects = {MIGRATION_POLICIES.plural: len(snapshot.policies),
                   VIRTUAL_MACHINE_INSTANCES.plural: len(snapshot.vmis),
                   NAMESPACES.plural: len(snapshot.namespaces)}
        return StateFigures(objects, dict.fromkeys(objects, self._loaded_at))

    def reload_if_changed(self) -> bool:
        """Reload if any file changed; True if a new snapshot is in force."""
        fingerprint = _fingerprint(self.directory)
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            snapshot = load_snapshot(self.directory, self._precedence)
        except StateError as error:
            self.last_error = str(error)
            log.error("state %s not reloaded, keeping the last good state: %s",
                      self.directory, error)
            return False
        self._snapshot = snapshot
        self._loads += 1
        self._loaded_at = time.time()
        self.last_error = None
        log.info("state %s reloaded: %d policies, %d VMIs, %d namespaces", self.directory,
                 len(snapshot.policies), len(snapshot.vmis), len(snapshot.namespaces))
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="state-directory-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            await asyncio.to_thread(self.reload_if_changed)
