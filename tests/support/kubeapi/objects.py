"""Builders of the objects tests put in the stand-in's cluster."""

from collections.abc import Mapping
from typing import Any

from tests.support.kubeapi.resources import Object


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Object:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def vmi(namespace: str, name: str, labels: Mapping[str, str] | None = None) -> Object:
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}}},
        "status": {"phase": "Running"},
    }


def policy(
    name: str, *, namespace_selector: Mapping[str, str] | None = None,
    vmi_selector: Mapping[str, str] | None = None, **spec: Any,
) -> Object:
    selectors: dict[str, Any] = {}
    if namespace_selector is not None:
        selectors["namespaceSelector"] = dict(namespace_selector)
    if vmi_selector is not None:
        selectors["virtualMachineInstanceSelector"] = dict(vmi_selector)
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": name}, "spec": {**spec, "selectors": selectors}}


def migration(namespace: str, name: str, vmi_name: str, *, stamp: str | None = None,
              phase: str | None = None, state: Mapping[str, Any] | None = None) -> Object:
    """A VirtualMachineInstanceMigration of `vmi_name`: stamped with the policy `stamp` (the
    webhook's annotation), and its status as KubeVirt writes it (`phase`,
    `migrationState`)."""
    metadata: Object = {"name": name, "namespace": namespace}
    if stamp is not None:
        metadata["annotations"] = {"migrations.kubevirt.io/policy": stamp}
    status: Object = {}
    if phase is not None:
        status["phase"] = phase
    if state is not None:
        status["migrationState"] = dict(state)
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": metadata, "spec": {"vmiName": vmi_name}, "status": status}
