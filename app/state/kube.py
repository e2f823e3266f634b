"""Cluster state from the Kubernetes API (`--state kube`), kept in memory by list and watch.

Three reflector threads (MigrationPolicies, VirtualMachineInstances, Namespaces) keep the
stores current; a request reads them without calling the API. The state is ready once all
three have listed, and stays ready while a watch reconnects (the last known state is the
best answer a webhook that must not block migrations has). When the API has not confirmed
a kind for longer than `max_staleness` (no list, event or bookmark), mutation answers say
so in a warning, and the log says so once per episode.

A VMI (or namespace) that is not in the cache, because it was created a moment ago and its
watch event has not arrived, is fetched directly, within the bounds of `DirectLookups`
(single flight, negative cache, rate and concurrency limits, a 1 s deadline). That GET
would block the event loop, so on the event loop thread the lookup raises `WouldBlock` and
the server runs the handler again in a worker thread; cache hits never leave the loop.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import urllib3
from prometheus_client.registry import Collector

from app.k8s.resources import (
    KUBEVIRTS,
    MIGRATION_POLICIES,
    NAMESPACES,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    VIRTUAL_MACHINE_INSTANCES,
    Resource,
)
from app.policy.precedence import PolicyIndex, Precedence
from app.settings import Settings
from app.state import LookupFailed, on_event_loop
from app.state.kube_api import ApiError, KubeApi, TransportErrors, object_accept, refusal
from app.state.lookups import DirectLookups, LookupLimits
from app.state.metrics import StateCollector, StateFigures, unix_time
from app.state.reflector import Reflector
from app.state.stamp_checks import Reasons, StampChecks
from app.state.stores import LabelStore, PolicyStore, labels_of, name_key, namespaced_key

log = logging.getLogger(__name__)

K = TypeVar("K")

FRESHNESS_CHECK_SECONDS = 1.0
"""How often the freshness of the cache is checked (and its warning made)."""


class KubeState:
    """A ClusterState that follows the cluster through the Kubernetes API."""

    def __init__(
        self, api: KubeApi, precedence: Precedence, *, page_size: int = 500,
        watch_idle_timeout: float = 90.0, max_staleness: float = 300.0,
        lookup_limits: LookupLimits | None = None, stamp_prefix: str | None = None,
    ) -> None:
        """`stamp_prefix`: check migrations stamped with this annotation prefix against
        KubeVirt's choice (the service does; the one-shot commands do not)."""
        self._api = api
        self._max_staleness = max_staleness
        self._stop = threading.Event()
        self._policies = PolicyStore(precedence)
        self._vmis: LabelStore[tuple[str, str]] = LabelStore(namespaced_key)
        self._namespaces: LabelStore[str] = LabelStore(name_key)
        self._reflectors = [
            Reflector(api, resource, store, self._stop, page_size=page_size,
                      idle_timeout=watch_idle_timeout)
            for resource, store in ((MIGRATION_POLICIES, self._policies),
                                    (VIRTUAL_MACHINE_INSTANCES, self._vmis),
                                    (NAMESPACES, self._namespaces))
        ]
        self._lookups = DirectLookups((VIRTUAL_MACHINE_INSTANCES.plural, NAMESPACES.plural),
                                      lookup_limits)
        self.stamp_checks: StampChecks | None = None
        self._followers: list[Reflector] = []
        """Reflectors that neither readiness nor freshness waits for."""
        if stamp_prefix is not None:
            self.stamp_checks = StampChecks(
                prefix=stamp_prefix, fetch_vmi_status=self._vmi_status,
                explain=Reasons(self._vmis, self._namespaces, self._policies, precedence))
            self._followers.append(Reflector(
                api, VIRTUAL_MACHINE_INSTANCE_MIGRATIONS, self.stamp_checks, self._stop,
                page_size=page_size, idle_timeout=watch_idle_timeout))
        self._threads: list[threading.Thread] = []
        self._started_at = time.monotonic()
        self._stale: str | None = None
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, *, check_stamps: bool = False) -> "KubeState":
        """Configured from `--kubeconfig`, or in-cluster; raises KubeConfigError."""
        return cls(KubeApi.from_kubeconfig(settings.kubeconfig, settings.kube_context),
                   settings.precedence,
                   watch_idle_timeout=settings.watch_idle_timeout,
                   max_staleness=settings.max_staleness,
                   stamp_prefix=settings.annotation_prefix if check_stamps else None)

    @property
    def policies(self) -> PolicyIndex:
        return self._policies.index

    def is_ready(self) -> bool:
        """Whether every kind has listed once; it stays so (the last known state serves)."""
        if not self._ready:
            self._ready = all(reflector.synced.is_set() for reflector in self._reflectors)
        return self._ready

    def staleness_warning(self) -> str | None:
        """Set by the freshness check, so a request pays one attribute read."""
        return self._stale

    def counts(self) -> dict[str, int]:
        """How many objects of each kind the cache holds."""
        counts = {MIGRATION_POLICIES.plural: len(self._policies),
                  VIRTUAL_MACHINE_INSTANCES.plural: len(self._vmis),
                  NAMESPACES.plural: len(self._namespaces)}
        if self.stamp_checks is not None:  # the migrations in flight
            counts[VIRTUAL_MACHINE_INSTANCE_MIGRATIONS.plural] = len(self.stamp_checks)
        return counts

    def collector(self) -> Collector:
        return StateCollector(self._figures)

    def _figures(self) -> StateFigures:
        reflectors = [*self._reflectors, *self._followers]
        return StateFigures(
            objects=self.counts(),
            last_sync={reflector.name: unix_time(reflector.confirmed_at)
                       for reflector in reflectors},
            watch_restarts={(reflector.name, reason): count for reflector in reflectors
                            for reason, count in reflector.restarts.items()},
            direct_gets=self._lookups.counts(),
            stamp_checks=(dict(self.stamp_checks.counts) if self.stamp_checks is not None
                          else None),
        )

    def vmi_labels(self, namespace: str, name: str) -> Mapping[str, str] | None:
        key = (namespace, name)
        labels = self._vmis.get(key)
        if labels is None:
            labels = self._look_up(self._vmis, key, VIRTUAL_MACHINE_INSTANCES, name, namespace)
        return labels

    def _vmi_status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A VMI's status, by a bounded direct GET (the cache keeps labels only)."""
        path = VIRTUAL_MACHINE_INSTANCES.object_path(name, namespace)

        def get(timeout: float) -> Mapping[str, Any] | None:
            try:
                vmi = self._api.get_json(path, timeout=urllib3.Timeout(total=timeout))
            except ApiError as error:
                if error.code == 404:
                    return None
                raise LookupFailed(refusal(error, "get", VIRTUAL_MACHINE_INSTANCES)
                                   if error.refused else str(error)) from error
            except TransportErrors as error:
                raise LookupFailed(_why(error, timeout)) from error
            status = vmi.get("status")
            return status if isinstance(status, dict) else {}

        return self._lookups.look_up(VIRTUAL_MACHINE_INSTANCES.plural,
                                     ("status", namespace, name), get, on_loop=False,
                                     what=f"the status of VMI {namespace}/{name}")

    def migration_configuration(self) -> Mapping[str, Any] | None:
        """One LIST of the KubeVirt CRs (there is one; none, or no such resource, where
        KubeVirt is not installed)."""
        try:
            found = self._api.get_json(KUBEVIRTS.list_path, timeout=urllib3.Timeout(total=10.0))
        except ApiError as error:
            if error.code == 404:
                return None
            resource = KUBEVIRTS.group_resource
            hint = (f": the user needs the list permission on {resource} (check: kubectl auth "
                    f"can-i list {resource} -A)" if error.refused else "")
            raise LookupFailed(f"listing {resource} failed: {error}{hint}") from error
        except TransportErrors as error:
            raise LookupFailed(f"listing {KUBEVIRTS.plural} failed: {error}") from error
        items = sorted((item for item in found.get("items") or [] if isinstance(item, dict)),
                       key=namespaced_key)
        if not items:
            return None
        migrations = (((items[0].get("spec") or {}).get("configuration") or {})
                      .get("migrations"))
        return migrations if isinstance(migrations, dict) else {}

    def changes(self) -> int:
        return self._policies.changes + self._vmis.changes + self._namespaces.changes

    def all_vmi_labels(self) -> dict[tuple[str, str], Mapping[str, str]]:
        return self._vmis.snapshot()

    def all_namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        return self._namespaces.snapshot()

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        labels = self._namespaces.get(name)
        if labels is None:
            labels = self._look_up(self._namespaces, name, NAMESPACES, name)
        return labels

    def _look_up(
        self, store: LabelStore[K], key: K, resource: Resource, name: str,
        namespace: str | None = None,
    ) -> Mapping[str, str] | None:
        """A bounded direct GET of an object the cache does not have; None if it is not there."""
        return self._lookups.look_up(
            resource.plural, key,
            lambda timeout: self._get(store, key, resource, name, namespace, timeout),
            on_loop=on_event_loop(), what=f"{resource.plural} {_show(name, namespace)}")

    def _get(
        self, store: LabelStore[K], key: K, resource: Resource, name: str,
        namespace: str | None, timeout: float,
    ) -> Mapping[str, str] | None:
        """One GET; what it finds is remembered by the store until the watch catches up."""
        path = resource.object_path(name, namespace)
        token = store.begin_lookup(key)
        try:
            obj: Mapping[str, Any] = self._api.get_json(
                path, accept=object_accept(resource), timeout=urllib3.Timeout(total=timeout))
        except ApiError as error:
            if error.code == 404:
                return None
            log.warning("GET %s failed: %s", path,
                        refusal(error, "get", resource) if error.refused else error)
            raise LookupFailed(f"the API answered {error.code}") from error
        except TransportErrors as error:
            log.warning("GET %s failed: %s", path, error)
            raise LookupFailed(f"the API did not answer {_why(error, timeout)}") from error
        else:
            labels = labels_of(obj)
            store.remember(key, labels, token)
        finally:
            store.end_lookup(key, token)
        log.info("%s %s was not cached yet: fetched directly", resource.plural,
                 _show(name, namespace))
        return labels

    def check_freshness(self) -> None:
        """Make the staleness warning current; log when an episode begins and ends."""
        now = time.monotonic()
        ages = {reflector.name: now - (reflector.confirmed_at or self._started_at)
                for reflector in self._reflectors}
        stale = sorted(name for name, age in ages.items() if age > self._max_staleness)
        if not stale:
            if self._stale is not None:
                log.info("cluster state fresh again: the API has confirmed every kind within "
                         "the last %g s", self._max_staleness)
                self._stale = None
            return
        oldest = max(ages[name] for name in stale)
        warning = (f"cluster state may be stale: no news from the API for {oldest:.0f} s "
                   f"({', '.join(stale)})")
        if self._stale is None:
            log.warning("%s; the limit is %g s (--max-staleness): decisions use the last "
                        "known policies and labels", warning, self._max_staleness)
        self._stale = warning

    def _watch_freshness(self) -> None:
        while not self._stop.wait(FRESHNESS_CHECK_SECONDS):
            self.check_freshness()

    async def start(self) -> None:
        self._started_at = time.monotonic()
        bodies = [(reflector.run, f"watch-{reflector.name}")
                  for reflector in (*self._reflectors, *self._followers)]
        bodies.append((self._watch_freshness, "state-freshness"))
        for body, name in bodies:
            thread = threading.Thread(target=body, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    async def stop(self) -> None:
        self._stop.set()
        for reflector in (*self._reflectors, *self._followers):
            reflector.close()
        await asyncio.to_thread(self._join)
        self._api.close()

    def _join(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _why(error: Exception, timeout: float) -> str:
    timed_out = (isinstance(error, urllib3.exceptions.TimeoutError)
                 and not isinstance(error, urllib3.exceptions.NewConnectionError))
    return f"within {timeout:g} s" if timed_out else f"({type(error).__name__})"


def _show(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name
