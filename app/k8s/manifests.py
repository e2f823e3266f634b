"""Reading Kubernetes manifests: YAML or JSON, multi-document files and List kinds."""

import base64
import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A file that cannot be read as manifests, with where and why."""


@dataclass(frozen=True, slots=True)
class Document:
    """One object from a file, and where it came from (`file.yaml#2` for the 2nd)."""

    source: str
    object: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.object.get("kind", ""))


def read_documents(path: Path) -> list[Document]:
    """Every object in one file, List items flattened; raise ManifestError if broken."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot read: {error}") from None
    try:
        loaded = [_as_sent(doc, {}) for doc in yaml.load_all(text, Loader=_Loader)
                  if doc is not None]
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML or JSON: {error}") from None
    documents: list[Document] = []
    for number, doc in enumerate(loaded, start=1):
        source = f"{path}#{number}" if len(loaded) > 1 else str(path)
        documents.extend(_flatten(source, doc))
    return documents


def _as_sent(value: Any, seen: dict[int, Any]) -> Any:
    """`value` as kubectl sends it: JSON, so YAML's other keys (`1:`, `true:`), dates and
    !!binary become strings. A node that YAML aliases stays one node, converted once."""
    if isinstance(value, dict | set):
        if id(value) not in seen:
            mapping: dict[str, Any] = {}
            seen[id(value)] = mapping
            items = value.items() if isinstance(value, dict) else ((key, None) for key in value)
            mapping.update((_key(key), _as_sent(item, seen)) for key, item in items)
        return seen[id(value)]
    if isinstance(value, list):
        if id(value) not in seen:
            sequence: list[Any] = []
            seen[id(value)] = sequence
            sequence.extend(_as_sent(item, seen) for item in value)
        return seen[id(value)]
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _key(key: Any) -> str:
    """A mapping key as JSON has it: true, false, null and numbers spelled out."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    converted = _as_sent(key, {})
    return converted if isinstance(converted, str) else str(converted)


def _flatten(source: str, doc: Any) -> Iterator[Document]:
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: a manifest must be a mapping, got {type(doc).__name__}")
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        for number, item in enumerate(doc["items"]):
            yield from _flatten(f"{source} items[{number}]", item)
        return
    yield Document(source, doc)


def manifest_files(directory: Path) -> list[Path]:
    """The manifest files under `directory`, in a stable order."""
    return sorted(
        path for path in directory.rglob("*")
        if path.suffix in MANIFEST_SUFFIXES and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )
