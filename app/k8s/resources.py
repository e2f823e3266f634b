"""Every Kubernetes type this project reads or writes, named once: group, versions, kind and,
for what the API serves as a resource, its plural and where it lives.

Checks, webhook rules, API paths, messages and metric labels are all built from these.
"""

from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass(frozen=True)
class ObjectType:
    """The `apiVersion` and `kind` of an object: group, the versions known, kind."""

    group: str
    """"" for the core group."""
    versions: tuple[str, ...]
    """Every version this project accepts; the first is the one it reads and writes."""
    kind: str
    api_versions: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """`apiVersion` for each version: `group/version`, or `version` in core (computed once:
    validation reads it on every review)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_versions", tuple(
            f"{self.group}/{version}" if self.group else version for version in self.versions))

    @property
    def version(self) -> str:
        return self.versions[0]

    @property
    def api_version(self) -> str:
        """`apiVersion` of the first version."""
        return self.api_versions[0]


@dataclass(frozen=True)
class Resource(ObjectType):
    """An object type as the API serves it: its plural, and whether it is namespaced."""

    plural: str
    namespaced: bool

    @property
    def group_resource(self) -> str:
        """`plural.group`, as `kubectl auth can-i` and CRD names write it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def list_path(self) -> str:
        """Every object of the resource (all namespaces, for a namespaced one)."""
        return f"{self.prefix}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        name = quote(name, safe="")
        if self.namespaced:
            namespace = quote(namespace or "", safe="")
            return f"{self.prefix}/namespaces/{namespace}/{self.plural}/{name}"
        return f"{self.prefix}/{self.plural}/{name}"


MIGRATION_POLICIES = Resource(
    group="migrations.kubevirt.io", versions=("v1alpha1", "v1beta1"), kind="MigrationPolicy",
    plural="migrationpolicies", namespaced=False)
VIRTUAL_MACHINE_INSTANCE_MIGRATIONS = Resource(
    group="kubevirt.io", versions=("v1",), kind="VirtualMachineInstanceMigration",
    plural="virtualmachineinstancemigrations", namespaced=True)
VIRTUAL_MACHINE_INSTANCES = Resource(
    group="kubevirt.io", versions=("v1",), kind="VirtualMachineInstance",
    plural="virtualmachineinstances", namespaced=True)
KUBEVIRTS = Resource(group="kubevirt.io", versions=("v1",), kind="KubeVirt", plural="kubevirts",
                     namespaced=True)
NAMESPACES = Resource(group="", versions=("v1",), kind="Namespace", plural="namespaces",
                      namespaced=False)

ADMISSION_REVIEW = ObjectType("admission.k8s.io", ("v1", "v1beta1"), "AdmissionReview")
VALIDATING_WEBHOOK_CONFIGURATION = ObjectType(
    "admissionregistration.k8s.io", ("v1",), "ValidatingWebhookConfiguration")
MUTATING_WEBHOOK_CONFIGURATION = ObjectType(
    "admissionregistration.k8s.io", ("v1",), "MutatingWebhookConfiguration")
SECRET = ObjectType("", ("v1",), "Secret")
