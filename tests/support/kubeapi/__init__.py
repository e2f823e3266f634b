"""A stand-in for the Kubernetes API server at its HTTP boundary, for tests and benchmarks.

`KubeApiServer` (server.py) is built from one module per concern: the object store with its
resourceVersions and watch history (store.py), the faults tests inject (faults.py), the
list/watch protocol (watch.py), the HTTPS server and its requests (http_server.py); the
resources and Status objects are in resources.py, the objects tests create in objects.py.
`admission.AdmissionFront` adds the write path kubectl needs, calling validating webhooks.
"""

from tests.support.kubeapi.http_server import Request, Route, RouteHandler
from tests.support.kubeapi.objects import namespace, policy, vmi
from tests.support.kubeapi.resources import (
    JSON,
    MIGRATION_POLICIES,
    NAMESPACES,
    RESOURCES,
    VMIS,
    Call,
    Object,
    Resource,
    StaleResourceVersion,
    object_status,
    status,
)
from tests.support.kubeapi.server import KubeApiServer

__all__ = ["JSON", "MIGRATION_POLICIES", "NAMESPACES", "RESOURCES", "VMIS", "Call",
           "KubeApiServer", "Object", "Request", "Resource", "Route", "RouteHandler",
           "StaleResourceVersion", "namespace", "object_status", "policy", "status", "vmi"]
