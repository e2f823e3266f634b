"""What the live cluster state keeps of each kind: labels of VMIs and namespaces, policies.

Each store is written by one reflector thread and read by request handlers in other
threads. Reads and writes are single dict operations (atomic in CPython), and a relist
builds a new dict or index and swaps it in whole, so a reader sees the old set or the new
one, never half of each.
"""

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from app.k8s.labels import interned
from app.k8s.resources import MIGRATION_POLICIES
from app.policy.feature_gates import KNOWN_FEATURE_GATES
from app.policy.model import Policy
from app.policy.precedence import PolicyIndex, Precedence
from app.policy.validation import check_policy

log = logging.getLogger(__name__)

Object = Mapping[str, Any]
K = TypeVar("K")

NO_LABELS: Mapping[str, str] = MappingProxyType({})
DELETED = "DELETED"
SNAPSHOT_CHUNK = 2048
"""Entries a snapshot copies in one step (half a millisecond at most here)."""
SNAPSHOT_ATTEMPTS = 3


def labels_of(obj: Object) -> Mapping[str, str]:
    """An object's labels, interned (`app.k8s.labels.interned`): most of them repeat."""
    labels = (obj.get("metadata") or {}).get("labels")
    if not labels or not isinstance(labels, dict):
        return NO_LABELS
    return interned(labels)


def namespaced_key(obj: Object) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    # Interned: KubeVirt repeats the name in labels (kubevirt.io/domain, vm.kubevirt.io/name).
    return sys.intern(metadata.get("namespace") or ""), sys.intern(metadata.get("name") or "")


def name_key(obj: Object) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


class LabelStore(Generic[K]):
    """The labels of each object, by `key(object)`, as the watch delivers them.

    Objects fetched directly (not yet watched) are remembered apart and briefly, until the
    watch has caught up; a watch event or a relist for the key drops them, so a direct GET
    never outlives what the watch says about the object.
    """

    def __init__(
        self, key: Callable[[Object], K], *, remember_for: float = 30.0,
        remember_limit: int = 10_000,
    ) -> None:
        self._key = key
        self._labels: dict[K, Mapping[str, str]] = {}
        self._remember_for = remember_for
        self._remember_limit = remember_limit
        self._fetched: dict[K, tuple[float, Mapping[str, str]]] = {}
        self._pending: dict[K, object] = {}
        self._fetched_lock = threading.Lock()
        self.changes = 0
        """Bumped when the labels of an object change, or one comes or goes (not for
        updates that leave the labels as they were: VMIs are updated all the time)."""
        self.changed_at: dict[K, float] = {}
        """When a watch event last changed an object's labels (Unix time), for the stamp
        checks' reasons; an object deleted is forgotten."""

    def __len__(self) -> int:
        return len(self._labels)

    def get(self, key: K) -> Mapping[str, str] | None:
        labels = self._labels.get(key)
        if labels is None and self._fetched:
            entry = self._fetched.get(key)
            if entry is not None and entry[0] >= time.monotonic():
                return entry[1]
        return labels

    def begin_lookup(self, key: K) -> object:
        """Mark a direct GET of `key` as started; pass the token to `remember`."""
        token = object()
        with self._fetched_lock:
            self._pending[key] = token
        return token

    def end_lookup(self, key: K, token: object) -> None:
        """Forget the mark of a GET that found nothing to remember."""
        with self._fetched_lock:
            if self._pending.get(key) is token:
                del self._pending[key]

    def remember(self, key: K, labels: Mapping[str, str], token: object) -> None:
        """Keep what a direct GET found, for a little while, unless the watch has said
        anything about the object since the GET began (its answer may then be stale)."""
        now = time.monotonic()
        with self._fetched_lock:
            if self._pending.pop(key, None) is not token:
                return
            fetched = self._fetched
            fetched.pop(key, None)
            fetched[key] = (now + self._remember_for, labels)
            # Insertion order is expiry order: the expired entries are at the front.
            while fetched:
                oldest = next(iter(fetched))
                if fetched[oldest][0] >= now and len(fetched) <= self._remember_limit:
                    break
                del fetched[oldest]

    def snapshot(self) -> dict[K, Mapping[str, str]]:
        """Every watched object's labels, copied SNAPSHOT_CHUNK entries at a time.

        One copy of 100,000 entries is a single C call of 5 ms, all that time holding the
        GIL that the event loop waits for; a chunk's is a fraction of a millisecond, and
        the thread may be switched out between two. A writer that adds or removes an object
        meanwhile may make the iteration raise or miss entries: the copy starts again, and
        after SNAPSHOT_ATTEMPTS it is made in one step."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            changes, labels = self.changes, self._labels
            copied: dict[K, Mapping[str, str]] = {}
            items = iter(labels.items())
            try:
                while True:
                    before = len(copied)
                    copied.update(islice(items, SNAPSHOT_CHUNK))
                    if len(copied) - before < SNAPSHOT_CHUNK:
                        break
            except RuntimeError:  # "dictionary changed size during iteration"
                continue
            if self.changes == changes:
                return copied
        return dict(self._labels)

    def replace(self, objects: Iterable[Object]) -> int:
        key = self._key
        labels = {key(obj): labels_of(obj) for obj in objects}
        self._labels = labels
        self.changes += 1
        with self._fetched_lock:
            self._fetched.clear()
            self._pending.clear()
        return len(labels)

    def apply(self, event_type: str, obj: Object) -> None:
        key = self._key(obj)
        if self._fetched or self._pending:
            with self._fetched_lock:
                self._fetched.pop(key, None)
                self._pending.pop(key, None)
        if event_type == DELETED:
            self.changed_at.pop(key, None)
            if self._labels.pop(key, None) is not None:
                self.changes += 1
        else:
            labels = labels_of(obj)
            if self._labels.get(key) != labels:
                self._labels[key] = labels
                self.changed_at[key] = time.time()
                self.changes += 1


class PolicyStore:
    """The valid MigrationPolicies, indexed for matching. An invalid one is logged and left out.

    KubeVirt's own webhook refuses invalid policies, so one is seen only when it was stored
    without that webhook; it is left out rather than guessed at.
    """

    def __init__(self, precedence: Precedence) -> None:
        self._precedence = precedence
        self.index = PolicyIndex(precedence)
        self.changes = 0
        """Bumped at every relist and event."""
        self.events: dict[str, tuple[float, str]] = {}
        """By policy name: when a watch event last created, changed or deleted it (Unix
        time), and which of the three, for the stamp checks' reasons."""

    def __len__(self) -> int:
        return len(self.index)

    def replace(self, objects: Iterable[Object]) -> int:
        valid = (_valid_policy(obj) for obj in objects)
        index = PolicyIndex(self._precedence, (policy for policy in valid if policy))
        self.index = index
        self.changes += 1
        return len(index)

    def apply(self, event_type: str, obj: Object) -> None:
        self.changes += 1
        self.events[name_key(obj)] = (time.time(), _POLICY_EVENTS.get(event_type, "changed"))
        if event_type == DELETED:
            self.index.remove(name_key(obj))
            return
        policy = _valid_policy(obj)
        if policy is None:  # an update that made it invalid withdraws it
            self.index.remove(name_key(obj))
        else:
            self.index.put(policy)


_POLICY_EVENTS = {"ADDED": "created", "MODIFIED": "changed", DELETED: "deleted"}


def _valid_policy(obj: Object) -> Policy | None:
    findings, policy = check_policy(obj, feature_gates=KNOWN_FEATURE_GATES)
    if policy is None:
        log.warning("%s %r is invalid and is ignored: %s", MIGRATION_POLICIES.kind,
                    name_key(obj), findings.summary())
    return policy
