"""Where the cluster state comes from: one interface, one module per source."""

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client.registry import Collector

from app.policy.impact import ClusterView
from app.policy.precedence import PolicyIndex


class WouldBlock(Exception):
    """A lookup needs I/O and was called on the event loop: call again from a worker thread.

    Lookups answer from memory; a state that must fetch what it has not cached raises this
    instead of blocking the loop, and the server runs the (side-effect free) handler again
    in a thread.
    """


def on_event_loop() -> bool:
    """Whether the caller runs on an asyncio event loop (and must not block it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LookupFailed(Exception):
    """A lookup could not tell whether the object exists (the API failed or timed out)."""


class ClusterState(Protocol):
    """What the webhooks need to know about the cluster, answered from memory."""

    @property
    def policies(self) -> PolicyIndex:
        """The current MigrationPolicies."""
        ...

    def is_ready(self) -> bool:
        """Whether the state has synced once and can be trusted."""
        ...

    def vmi_labels(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The labels of a VMI, or None if there is no such VMI.

        May raise WouldBlock, or LookupFailed when the answer cannot be known.
        """
        ...

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a namespace, or None if there is none (may raise as vmi_labels)."""
        ...

    def all_vmi_labels(self) -> dict[tuple[str, str], Mapping[str, str]]:
        """Every cached VMI's labels by (namespace, name): a copy of one moment, the
        caller's to keep or empty, that later changes do not touch (for `coverage`; direct
        lookups are not in it)."""
        ...

    def all_namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        """Every cached namespace's labels by name, as `all_vmi_labels`."""
        ...

    def migration_configuration(self) -> Mapping[str, Any] | None:
        """`spec.configuration.migrations` of the cluster's KubeVirt CR; None when there is
        no CR. Blocking (for `explain`, not the webhooks); may raise LookupFailed."""
        ...

    def changes(self) -> int:
        """A number that grows whenever a policy, or the labels of a VMI or namespace,
        may have changed: what was computed from the state is out of date."""
        ...

    def staleness_warning(self) -> str | None:
        """A short warning (under 120 characters) while the state may be out of date: its
        source has not confirmed it for longer than `--max-staleness`; None otherwise.

        Called on every mutation: answers from memory, in constant time.
        """
        ...

    def collector(self) -> Collector:
        """The state's own metrics (cache sizes, last sync, ...), read at scrape time."""
        ...

    async def start(self) -> None:
        """Begin loading and following changes."""
        ...

    async def stop(self) -> None:
        """Stop following changes."""
        ...


def view_of(state: ClusterState) -> ClusterView:
    """The state's VMIs and namespaces now, arranged for impact warnings."""
    return ClusterView.build(state.all_vmi_labels().items(), state.all_namespace_labels())
