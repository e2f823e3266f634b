"""A stand-in for the Kubernetes API server at its HTTP boundary, for tests and benchmarks.

`KubeApiServer` (server.py) is built from one module per concern: the object store with its
resourceVersions and watch history (store.py), the faults tests inject (faults.py), the
list/watch protocol (watch.py), the HTTPS server and its requests (http_server.py); the
resources and Status objects are in resources.py, the objects tests create in objects.py.
It serves reads only (LIST, WATCH, GET), what the service's `--state kube` makes: for the
faults a real API server cannot be made to show on demand, and for the benchmarks. kubectl,
writes and admission are tested against the real API server (tests/cluster/).
"""

from tests.support.kubeapi.http_server import Request, Route, RouteHandler
from tests.support.kubeapi.objects import migration, namespace, policy, vmi
from tests.support.kubeapi.resources import (
    MIGRATION_POLICIES,
    NAMESPACES,
    RESOURCES,
    VMIMS,
    VMIS,
    Call,
    Object,
    Resource,
)
from tests.support.kubeapi.server import KubeApiServer

__all__ = ["MIGRATION_POLICIES", "NAMESPACES", "RESOURCES", "VMIMS", "VMIS", "Call",
           "KubeApiServer", "Object", "Request", "Resource", "Route", "RouteHandler", "migration",
           "namespace", "policy", "vmi"]
