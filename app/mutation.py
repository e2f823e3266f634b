"""Stamping a VirtualMachineInstanceMigration with the parameters of its policy.

The patch is the difference between the migration as sent and as it should be, computed by
`jsonpatch`: annotations under the prefix that the decision does not produce are removed,
the user's other annotations are kept, and nothing is sent when nothing changes.
"""

from collections.abc import Mapping
from typing import Any

import jsonpatch

from app.policy import Policy

POLICY_ANNOTATION = "policy"


def desired_annotations(policy: Policy | None, prefix: str) -> dict[str, str]:
    """The annotations, under `prefix`, that say what the policy decides."""
    if policy is None:
        return {}
    stamped = {f"{prefix}{POLICY_ANNOTATION}": policy.name}
    stamped.update({f"{prefix}{name}": value for name, value in policy.settings.items()})
    return stamped


def stamp_patch(
    migration: Mapping[str, Any], policy: Policy | None, prefix: str
) -> list[dict[str, Any]]:
    """JSONPatch operations that make the migration's annotations tell the decision."""
    metadata = migration.get("metadata")
    current = metadata.get("annotations") if isinstance(metadata, dict) else None
    current = current if isinstance(current, dict) else None
    annotations = {
        key: value for key, value in (current or {}).items() if not key.startswith(prefix)
    }
    annotations.update(desired_annotations(policy, prefix))
    before = _metadata_view(metadata, current)
    after = _metadata_view(metadata, annotations if annotations or current is not None else None)
    return jsonpatch.make_patch(before, after).patch


def _metadata_view(metadata: Any, annotations: dict[str, str] | None) -> dict[str, Any]:
    """The part of the object the patch may touch, rooted like the object itself."""
    if not isinstance(metadata, dict):
        return {} if annotations is None else {"metadata": {"annotations": annotations}}
    return {"metadata": {} if annotations is None else {"annotations": annotations}}
