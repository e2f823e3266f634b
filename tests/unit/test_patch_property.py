"""The directly built stamp patch against `jsonpatch.make_patch`, the oracle."""

import copy
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.policy.annotations import desired_annotations, stamp_patch
from app.policy.model import SETTINGS, Policy

PREFIXES = ["migrations.kubevirt.io/", "example.com/", "a~b/"]

key_part = st.text(alphabet="ab/~.-_", min_size=0, max_size=6)
values = st.one_of(st.text(max_size=5), st.sampled_from(["true", "false", "23", "217Ki"]),
                   st.integers(), st.none(), st.booleans())


@st.composite
def annotation_maps(draw: st.DrawFn, prefix: str) -> dict[str, Any]:
    """Annotations mixing the user's own keys, stale keys under the prefix, and ones the
    decision may want (so that some are equal, some differ)."""
    wanted = [f"{prefix}policy", *(f"{prefix}{name}" for name in SETTINGS)]
    keys = draw(st.lists(st.one_of(key_part, key_part.map(lambda k: prefix + k),
                                   st.sampled_from(wanted)), max_size=12))
    return {key: draw(values) for key in keys}


@st.composite
def policies(draw: st.DrawFn) -> Policy | None:
    if draw(st.booleans()):
        return None
    chosen = draw(st.lists(st.sampled_from(SETTINGS), unique=True))
    settings_map = {name: draw(st.sampled_from(["true", "false", "23", "217Ki"]))
                    for name in chosen}
    return Policy(name=draw(st.sampled_from(["p", "my-awesome-policy", "a/b"])),
                  settings=settings_map)


@st.composite
def migrations(draw: st.DrawFn, prefix: str) -> dict[str, Any]:
    migration: dict[str, Any] = {"apiVersion": "kubevirt.io/v1", "spec": {"vmiName": "v"}}
    shape = draw(st.sampled_from(["no-metadata", "metadata-null", "metadata-string",
                                  "no-annotations", "annotations-null", "annotations-list",
                                  "annotations"]))
    if shape == "metadata-null":
        migration["metadata"] = None
    elif shape == "metadata-string":
        migration["metadata"] = "x"
    elif shape != "no-metadata":
        metadata: dict[str, Any] = {"name": "m", "labels": {"a": "b"}}
        if shape == "annotations-null":
            metadata["annotations"] = None
        elif shape == "annotations-list":
            metadata["annotations"] = ["a"]
        elif shape == "annotations":
            metadata["annotations"] = draw(annotation_maps(prefix))
        migration["metadata"] = metadata
    return migration


def stamped(migration: dict[str, Any], policy: Policy | None, prefix: str) -> dict[str, Any]:
    """The migration as it should be, written plainly: the oracle's target."""
    desired = desired_annotations(policy, prefix)
    target = copy.deepcopy(migration)
    metadata = target.get("metadata")
    if not isinstance(metadata, dict):
        if desired:
            target["metadata"] = {"annotations": desired}
        return target
    current = metadata.get("annotations")
    if not isinstance(current, dict):
        if desired:
            metadata["annotations"] = desired
        return target
    kept = {key: value for key, value in current.items() if not key.startswith(prefix)}
    metadata["annotations"] = {**kept, **desired}
    return target


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_the_patch_gives_what_make_patch_gives(data: st.DataObject) -> None:
    prefix = data.draw(st.sampled_from(PREFIXES))
    migration = data.draw(migrations(prefix))
    policy = data.draw(policies())
    original = copy.deepcopy(migration)
    patch = stamp_patch(migration, policy, prefix)
    assert migration == original, "the patch must not change the object it reads"
    oracle = jsonpatch.make_patch(migration, stamped(migration, policy, prefix))
    assert jsonpatch.apply_patch(migration, patch) == jsonpatch.apply_patch(migration, oracle)
    if not oracle.patch:
        assert patch == []


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_stamped_migration_gets_no_patch(data: st.DataObject) -> None:
    prefix = data.draw(st.sampled_from(PREFIXES))
    migration = data.draw(migrations(prefix))
    policy = data.draw(policies())
    once = jsonpatch.apply_patch(migration, stamp_patch(migration, policy, prefix))
    assert stamp_patch(once, policy, prefix) == []


def test_keys_are_escaped_as_json_pointer() -> None:
    migration = {"metadata": {"annotations": {"x.io/a~b/c": "1"}}}
    assert stamp_patch(migration, None, "x.io/") == [
        {"op": "remove", "path": "/metadata/annotations/x.io~1a~0b~1c"}]
