"""The resources the stand-in serves, named as the API server's REST mapping names them,
and the `Status` objects it answers errors with."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Object = dict[str, Any]
JSON = "application/json"
META_API_VERSION = "meta.k8s.io/v1"


@dataclass(frozen=True)
class Resource:
    """A resource the server serves, as the API server's REST mapping names it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def group_resource(self) -> str:
        """`migrationpolicies.migrations.kubevirt.io`, as the API server's messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


MIGRATION_POLICIES = Resource("migrations.kubevirt.io", "v1alpha1", "migrationpolicies",
                              "MigrationPolicy", namespaced=False)
VMIS = Resource("kubevirt.io", "v1", "virtualmachineinstances", "VirtualMachineInstance",
                namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
VMIMS = Resource("kubevirt.io", "v1", "virtualmachineinstancemigrations",
                 "VirtualMachineInstanceMigration", namespaced=True)
"""Watched by `serve` only, for the stamp checks; readiness does not wait for them."""
RESOURCES = (MIGRATION_POLICIES, VMIS, NAMESPACES, VMIMS)

_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "AlreadyExists", 410: "Expired",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}


def status(code: int, message: str, reason: str | None = None,
           details: Mapping[str, Any] | None = None) -> Object:
    """A `Status` object, as the API server answers errors."""
    body: Object = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": reason or _REASONS.get(code, "Unknown")}
    if details is not None:
        body["details"] = dict(details)
    body["code"] = code
    return body


def object_status(code: int, resource: Resource, name: str, message: str) -> Object:
    """A Status about one object, as apimachinery's NewNotFound builds it:
    `<plural>.<group> "<name>" <message>`, details naming it (with the resource as `kind`,
    as the API server does)."""
    details = {"name": name, "group": resource.group, "kind": resource.plural}
    if not resource.group:
        del details["group"]
    return status(code, f'{resource.group_resource} "{name}" {message}', None, details)


@dataclass(frozen=True)
class Call:
    """One request the server answered, for tests to assert on."""

    verb: str  # list, watch or get
    resource: str  # plural
    namespace: str
    name: str
    query: Mapping[str, str]


