"""The MigrationPolicy CustomResourceDefinition the project ships, as the stand-in serves it."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.kubeapi import Object, Resource

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "manifests" / "crd.yaml"



def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes' kube-aware version order: v2 > v1 > v1beta2 > v1beta1 >
    v1alpha1 > anything not kube-like (alphabetically)."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if match is None:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), "")


@dataclass(frozen=True)
class CustomResource:
    """A CustomResourceDefinition, as discovery, storage and admission need it."""

    group: str
    plural: str
    singular: str
    kind: str
    list_kind: str
    namespaced: bool
    versions: tuple[str, ...]
    """Served versions, in the CRD's order."""
    storage_version: str
    categories: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    schemas: Mapping[str, Object] = field(default_factory=dict)

    @classmethod
    def from_crd(cls, crd: Mapping[str, Any]) -> "CustomResource":
        spec = crd["spec"]
        names = spec["names"]
        served = [version for version in spec["versions"] if version.get("served")]
        [storage] = [version["name"] for version in spec["versions"] if version.get("storage")]
        return cls(
            group=spec["group"], plural=names["plural"],
            singular=names.get("singular", names["kind"].lower()), kind=names["kind"],
            list_kind=names.get("listKind", names["kind"] + "List"),
            namespaced=spec["scope"] == "Namespaced",
            versions=tuple(version["name"] for version in served), storage_version=storage,
            categories=tuple(names.get("categories", ())),
            short_names=tuple(names.get("shortNames", ())),
            schemas={version["name"]: version.get("schema", {}).get("openAPIV3Schema", {})
                     for version in served})

    @classmethod
    def from_file(cls, path: Path = CRD_FILE) -> "CustomResource":
        [crd] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        return cls.from_crd(crd)

    @property
    def discovery_versions(self) -> list[str]:
        """Served versions as the API server lists them: the preferred (highest) first."""
        return sorted(self.versions, key=version_priority)

    def resource(self, version: str) -> Resource:
        return Resource(self.group, version, self.plural, self.kind, self.namespaced)

    @property
    def storage(self) -> Resource:
        return self.resource(self.storage_version)

    def in_version(self, obj: Mapping[str, Any], version: str) -> Object:
        """The object in another version (the CRD's conversion strategy is None)."""
        converted: Object = orjson.loads(orjson.dumps(obj))
        converted["apiVersion"] = f"{self.group}/{version}"
        return converted
