"""A stand-in for the Kubernetes API server at its HTTP boundary (see `server`), and the
write path with admission that kubectl needs (`admission`)."""

from tests.support.kubeapi.server import (
    JSON,
    MIGRATION_POLICIES,
    NAMESPACES,
    RESOURCES,
    VMIS,
    Call,
    KubeApiServer,
    Object,
    Request,
    Resource,
    StaleResourceVersion,
    namespace,
    object_status,
    policy,
    status,
    vmi,
)

__all__ = ["JSON", "MIGRATION_POLICIES", "NAMESPACES", "RESOURCES", "VMIS", "Call",
           "KubeApiServer", "Object", "Request", "Resource", "StaleResourceVersion",
           "namespace", "object_status", "policy", "status", "vmi"]
