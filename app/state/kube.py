"""Cluster state from the Kubernetes API (`--state kube`), kept in memory by list and watch.

Three reflector threads (MigrationPolicies, VirtualMachineInstances, Namespaces) keep the
stores current; a request reads them without calling the API. The state is ready once all
three have listed, and stays ready while a watch reconnects (the last known state is the
best answer a webhook that must not block migrations has).

A VMI (or namespace) that is not in the cache, because it was created a moment ago and its
watch event has not arrived, is fetched once directly with a short timeout. That GET would
block the event loop, so on the event loop thread the lookup raises `WouldBlock` and the
server runs the handler again in a worker thread; cache hits never leave the event loop.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import urllib3

from app.precedence import PolicyIndex, Precedence
from app.settings import Settings
from app.state import LookupFailed, WouldBlock
from app.state.kube_api import (
    MIGRATION_POLICIES,
    NAMESPACES,
    VIRTUAL_MACHINE_INSTANCES,
    ApiError,
    KubeApi,
    Resource,
    TransportErrors,
)
from app.state.reflector import Reflector
from app.state.stores import LabelStore, PolicyStore, labels_of, name_key, namespaced_key

log = logging.getLogger(__name__)

K = TypeVar("K")


class KubeState:
    """A ClusterState that follows the cluster through the Kubernetes API."""

    def __init__(
        self, api: KubeApi, precedence: Precedence, *, lookup_timeout: float = 2.0,
        page_size: int = 500,
    ) -> None:
        self._api = api
        self._lookup_timeout = lookup_timeout
        self._stop = threading.Event()
        self._policies = PolicyStore(precedence)
        self._vmis: LabelStore[tuple[str, str]] = LabelStore(namespaced_key)
        self._namespaces: LabelStore[str] = LabelStore(name_key)
        self._reflectors = [
            Reflector(api, resource, store, self._stop, page_size=page_size)
            for resource, store in ((MIGRATION_POLICIES, self._policies),
                                    (VIRTUAL_MACHINE_INSTANCES, self._vmis),
                                    (NAMESPACES, self._namespaces))
        ]
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> "KubeState":
        """Configured from `--kubeconfig`, or in-cluster; raises KubeConfigError."""
        return cls(KubeApi.from_kubeconfig(settings.kubeconfig), settings.precedence)

    @property
    def policies(self) -> PolicyIndex:
        return self._policies.index

    def is_ready(self) -> bool:
        return all(reflector.synced.is_set() for reflector in self._reflectors)

    def counts(self) -> dict[str, int]:
        """How many objects of each kind the cache holds."""
        return {"migrationpolicies": len(self._policies),
                "virtualmachineinstances": len(self._vmis), "namespaces": len(self._namespaces)}

    def vmi_labels(self, namespace: str, name: str) -> Mapping[str, str] | None:
        key = (namespace, name)
        labels = self._vmis.get(key)
        if labels is None:
            labels = self._look_up(self._vmis, key, VIRTUAL_MACHINE_INSTANCES, name, namespace)
        return labels

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        labels = self._namespaces.get(name)
        if labels is None:
            labels = self._look_up(self._namespaces, name, NAMESPACES, name)
        return labels

    def _look_up(
        self, store: LabelStore[K], key: K, resource: Resource, name: str,
        namespace: str | None = None,
    ) -> Mapping[str, str] | None:
        """One direct GET of an object the cache does not have; None if it is not there."""
        if _on_event_loop():
            raise WouldBlock(f"{resource.plural} {_show(name, namespace)} is not cached")
        path = resource.object_path(name, namespace)
        token = store.begin_lookup(key)
        try:
            obj: Mapping[str, Any] = self._api.get_json(
                path, accept=resource.object_accept,
                timeout=urllib3.Timeout(total=self._lookup_timeout))
        except ApiError as error:
            if error.code == 404:
                return None
            log.warning("GET %s failed: %s", path, error)
            raise LookupFailed(f"the API answered {error.code}") from error
        except TransportErrors as error:
            log.warning("GET %s failed: %s", path, error)
            raise LookupFailed(f"the API did not answer: {type(error).__name__}") from error
        else:
            labels = labels_of(obj)
            store.remember(key, labels, token)
        finally:
            store.end_lookup(key, token)
        log.info("%s %s was not cached yet: fetched directly", resource.plural,
                 _show(name, namespace))
        return labels

    async def start(self) -> None:
        for reflector in self._reflectors:
            thread = threading.Thread(target=reflector.run, name=f"watch-{reflector.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    async def stop(self) -> None:
        self._stop.set()
        for reflector in self._reflectors:
            reflector.close()
        await asyncio.to_thread(self._join)
        self._api.close()

    def _join(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _show(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name
