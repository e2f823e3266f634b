"""The stand-in's cluster: objects, resourceVersions and the watch history."""

import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.support.kubeapi.resources import Object, Resource


@dataclass(frozen=True)
class Event:
    resource_version: int
    resource: Resource
    type: str
    object: Object



class ObjectStore:
    """The objects of each resource, resourceVersions from one global counter (as etcd's
    are), and the history of events that watches replay (bounded by `history_limit`)."""

    history_limit: int
    _cond: threading.Condition
    _rv: int
    _objects: dict[Resource, dict[tuple[str, str], Object]]
    _history: list[Event]
    _compacted_rv: int
    """Watching from an older resourceVersion is 410 Gone."""

    @property
    def resource_version(self) -> int:
        return self._rv

    def create(self, resource: Resource, obj: Mapping[str, Any]) -> Object:
        return self.load(resource, [obj])[0]

    def load(self, resource: Resource, objects: Iterable[Mapping[str, Any]]) -> list[Object]:
        """Create many objects at once (one ADDED event each)."""
        created = []
        with self._cond:
            for obj in objects:
                key = self._key(resource, obj)
                if key in self._objects[resource]:
                    raise ValueError(f"{resource.plural} {key} already exists")
                stored = self._store(resource, key, obj, "ADDED", new=True)
                created.append(stored)
            self._cond.notify_all()
        return created

    def update(self, resource: Resource, obj: Mapping[str, Any]) -> Object:
        with self._cond:
            key = self._key(resource, obj)
            old = self._objects[resource].get(key)
            if old is None:
                raise KeyError(f"{resource.plural} {key} not found")
            stored = self._store(resource, key, obj, "MODIFIED", old=old)
            self._cond.notify_all()
        return stored

    def delete(self, resource: Resource, name: str, namespace: str = "") -> Object:
        with self._cond:
            key = (namespace if resource.namespaced else "", name)
            old = self._objects[resource].pop(key)
            self._rv += 1
            gone = with_metadata(old, resourceVersion=str(self._rv))
            self._record(resource, "DELETED", gone)
            self._cond.notify_all()
        return gone

    def get(self, resource: Resource, name: str, namespace: str = "") -> Object | None:
        return self._objects[resource].get((namespace if resource.namespaced else "", name))

    def snapshot(self, resource: Resource) -> tuple[int, list[Object]]:
        """The current resourceVersion and every object of `resource`, by namespace and name."""
        with self._cond:
            return self._rv, self._matching(resource, None)

    def _key(self, resource: Resource, obj: Mapping[str, Any]) -> tuple[str, str]:
        metadata = obj.get("metadata") or {}
        ns = (metadata.get("namespace") or "default") if resource.namespaced else ""
        return ns, metadata["name"]

    def _store(self, resource: Resource, key: tuple[str, str], obj: Mapping[str, Any],
               event_type: str, *, new: bool = False, old: Object | None = None) -> Object:
        self._rv += 1
        stored: Object = orjson.loads(orjson.dumps(obj))  # a private copy
        stored.setdefault("apiVersion", resource.api_version)
        stored.setdefault("kind", resource.kind)
        metadata = stored.setdefault("metadata", {})
        if resource.namespaced:
            metadata["namespace"] = key[0]
        metadata["resourceVersion"] = str(self._rv)
        previous = (old or {}).get("metadata", {})
        metadata["uid"] = previous.get("uid") or str(uuid.uuid4())
        metadata["creationTimestamp"] = previous.get("creationTimestamp") or now()
        metadata["generation"] = 1 if new else previous.get("generation", 1) + 1
        self._objects[resource][key] = stored
        self._record(resource, event_type, stored)
        return stored

    def _record(self, resource: Resource, event_type: str, obj: Object) -> None:
        self._history.append(Event(self._rv, resource, event_type, obj))
        excess = len(self._history) - self.history_limit
        if excess > 0:
            drop = max(excess, self.history_limit // 10)
            del self._history[:drop]
            self._compacted_rv += drop


    def _matching(self, resource: Resource, namespace: str | None) -> list[Object]:
        objects = self._objects[resource]
        keys = sorted(key for key in objects if namespace is None or key[0] == namespace)
        return [objects[key] for key in keys]


def with_metadata(obj: Object, **metadata: Any) -> Object:
    return {**obj, "metadata": {**obj.get("metadata", {}), **metadata}}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
