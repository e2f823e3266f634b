"""Where the cluster state comes from: one interface, one module per source."""

from collections.abc import Mapping
from typing import Protocol

from app.precedence import PolicyIndex


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
        """The labels of a VMI, or None if there is no such VMI."""
        ...

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of a namespace, or None if there is no such namespace."""
        ...

    async def start(self) -> None:
        """Begin loading and following changes."""
        ...

    async def stop(self) -> None:
        """Stop following changes."""
        ...
