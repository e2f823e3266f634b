"""The write path of the custom resource, as the API server's REST handlers run it."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import orjson

from tests.support.kubeapi import Object, Request, StaleResourceVersion, object_status, status
from tests.support.kubeapi.webhook_calls import Denied, Warnings, WebhookCalls

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_CONFLICT_RETRIES = 5


_Write = Callable[[Request, str, Warnings], tuple[int, Object]]


class Writes(WebhookCalls):
    """GET, list, create, replace, patch and delete of the custom resource in every served
    version, admitted by the webhooks before anything is stored."""

    def _served(self, request: Request) -> str | None:
        version = request.params["version"]
        if version not in self.crd.versions:
            request.send_status(404, "the server could not find the requested resource")
            return None
        return version


    def _get(self, request: Request) -> None:
        version = self._served(request)
        if version is None:
            return
        name = request.params["name"]
        obj = self.api.get(self.crd.storage, name)
        if obj is None:
            request.send_json(404, object_status(404, self.crd.storage, name, "not found"))
            return
        request.send_json(200, self.crd.in_version(obj, version))

    def _list(self, request: Request) -> None:
        version = self._served(request)
        if version is None:
            return
        if request.query.get("watch") in ("1", "true"):
            request.send_status(405, f"watch is served in {self.crd.storage_version} only "
                                     "by this fixture", "MethodNotAllowed")
            return
        resource_version, objects = self.api.snapshot(self.crd.storage)
        request.send_json(200, {"apiVersion": f"{self.crd.group}/{version}",
                                "kind": self.crd.list_kind,
                                "metadata": {"resourceVersion": str(resource_version)},
                                "items": [self.crd.in_version(obj, version)
                                          for obj in objects]})

    # --- writes ------------------------------------------------------------------------

    def _read_body(self, request: Request) -> Any:
        try:
            return orjson.loads(request.body() or b"null")
        except orjson.JSONDecodeError as error:
            raise Denied(400, status(400, f"the body of the request could not be decoded: "
                                           f"{error}", "BadRequest")) from error

    def _check_kind(self, obj: Any, version: str) -> None:
        if not isinstance(obj, dict):
            raise Denied(400, status(400, "the body of the request is not a JSON object",
                                      "BadRequest"))
        expected = f"{self.crd.group}/{version}"
        if obj.get("apiVersion") != expected:
            raise Denied(400, status(400, f"the API version in the data "
                                           f"({obj.get('apiVersion')}) does not match the "
                                           f"expected API version ({expected})", "BadRequest"))
        if obj.get("kind") != self.crd.kind:
            raise Denied(400, status(400, f"the kind in the data ({obj.get('kind')}) does "
                                           f"not match the expected kind ({self.crd.kind})",
                                      "BadRequest"))

    def _invalid(self, name: str, field_path: str, detail: str) -> Denied:
        message = f'{self.crd.kind}.{self.crd.group} "{name}" is invalid: {field_path}: {detail}'
        return Denied(422, status(422, message, "Invalid", {
            "name": name, "group": self.crd.group, "kind": self.crd.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail,
                        "field": field_path}]}))

    def _options(self, kind: str, request: Request) -> Object:
        options: Object = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
        if request.query.get("dryRun"):
            options["dryRun"] = [request.query["dryRun"]]
        for name in ("fieldManager", "fieldValidation"):
            if request.query.get(name):
                options[name] = request.query[name]
        return options

    def _write(self, request: Request, run: _Write) -> None:
        """Run one write; a Denied becomes its Status; warnings go with either answer."""
        warnings = Warnings()
        version = self._served(request)
        if version is None:
            return
        try:
            code, body = run(request, version, warnings)
        except Denied as denied:
            code, body = denied.code, denied.body
        request.send_json(code, body, headers=warnings.headers())

    def _create(self, request: Request) -> None:
        self._write(request, self._do_create)

    def _replace(self, request: Request) -> None:
        self._write(request, self._do_replace)

    def _patch(self, request: Request) -> None:
        self._write(request, self._do_patch)

    def _delete(self, request: Request) -> None:
        self._write(request, self._do_delete)

    def _do_create(self, request: Request, version: str,
                   warnings: Warnings) -> tuple[int, Object]:
        obj = self._read_body(request)
        self._check_kind(obj, version)
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name")
        if not name:
            raise self._invalid("", "metadata.name",
                                "Required value: name or generateName is required")
        for key in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp",
                    "generation", "managedFields"):
            metadata.pop(key, None)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        dry_run = bool(request.query.get("dryRun"))
        self._admit("CREATE", version, name, obj, None,
                    self._options("CreateOptions", request), dry_run, warnings)
        if dry_run:
            return 201, obj
        try:
            stored = self.api.write(self.crd.storage, self.crd.in_version(
                obj, self.crd.storage_version), create=True)
        except ValueError:
            raise Denied(409, object_status(409, self.crd.storage, name,
                                             "already exists")) from None
        return 201, self.crd.in_version(stored, version)

    def _update(self, request: Request, version: str, warnings: Warnings, name: str,
                new: Object, current: Object, options: Object) -> tuple[int, Object]:
        """Admit and store `new` over `current` (both in `version`)."""
        old_metadata = current["metadata"]
        metadata = new.setdefault("metadata", {})
        if metadata.get("name") != name:
            raise Denied(400, status(400, f"the name of the object ({metadata.get('name')}) "
                                           f"does not match the name on the URL ({name})",
                                      "BadRequest"))
        expected = metadata.get("resourceVersion")
        if expected and expected != old_metadata["resourceVersion"]:
            raise Denied(409, self._conflict(name))
        metadata.update(uid=old_metadata["uid"],
                        creationTimestamp=old_metadata["creationTimestamp"],
                        resourceVersion=old_metadata["resourceVersion"],
                        generation=old_metadata.get("generation", 1)
                        + (1 if _spec_changed(current, new) else 0))
        dry_run = bool(request.query.get("dryRun"))
        self._admit("UPDATE", version, name, new, current, options, dry_run, warnings)
        if dry_run:
            return 200, new
        stored = self.api.write(self.crd.storage,
                                self.crd.in_version(new, self.crd.storage_version),
                                create=False, resource_version=old_metadata["resourceVersion"])
        return 200, self.crd.in_version(stored, version)

    def _current(self, name: str, version: str) -> Object:
        current = self.api.get(self.crd.storage, name)
        if current is None:
            raise Denied(404, object_status(404, self.crd.storage, name, "not found"))
        return self.crd.in_version(current, version)

    def _conflict(self, name: str) -> Object:
        """apimachinery's NewConflict for a stale resourceVersion."""
        body = object_status(409, self.crd.storage, name, "")
        body["reason"] = "Conflict"
        body["message"] = (f'Operation cannot be fulfilled on {self.crd.storage.group_resource} '
                           f'"{name}": the object has been modified; please apply your changes '
                           "to the latest version and try again")
        return body

    def _do_replace(self, request: Request, version: str,
                    warnings: Warnings) -> tuple[int, Object]:
        name = request.params["name"]
        obj = self._read_body(request)
        self._check_kind(obj, version)
        if not (obj.get("metadata") or {}).get("resourceVersion"):
            raise self._invalid(name, "metadata.resourceVersion",
                                "Invalid value: 0x0: must be specified for an update")
        current = self._current(name, version)
        try:
            return self._update(request, version, warnings, name, obj, current,
                                self._options("UpdateOptions", request))
        except StaleResourceVersion:
            raise Denied(409, self._conflict(name)) from None

    def _do_patch(self, request: Request, version: str,
                  warnings: Warnings) -> tuple[int, Object]:
        name = request.params["name"]
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type not in (MERGE_PATCH, JSON_PATCH):
            raise Denied(415, status(
                415, f"the body of the request was in an unknown format - accepted media "
                     f"types include: {JSON_PATCH}, {MERGE_PATCH}", "UnsupportedMediaType"))
        patch = self._read_body(request)
        options = self._options("UpdateOptions", request)  # a patch is admitted as an update
        for _ in range(_CONFLICT_RETRIES):
            current = self._current(name, version)
            try:
                if content_type == MERGE_PATCH:
                    patched = merge_patch(current, patch)
                else:
                    patched = jsonpatch.apply_patch(current, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
                    TypeError, ValueError) as error:
                raise Denied(422, status(422, f"the patch could not be applied: {error}",
                                          "Invalid")) from error
            if not isinstance(patched, dict):
                raise Denied(400, status(400, "the patch made the object not an object",
                                          "BadRequest"))
            self._check_kind(patched, version)
            try:
                return self._update(request, version, warnings, name, patched, current,
                                    options)
            except StaleResourceVersion:
                continue  # written meanwhile: the API server applies the patch again
        raise Denied(409, self._conflict(name))

    def _do_delete(self, request: Request, version: str,
                   warnings: Warnings) -> tuple[int, Object]:
        name = request.params["name"]
        sent = self._read_body(request)  # DeleteOptions, such as kubectl's propagationPolicy
        options: Object = {**(sent if isinstance(sent, dict) else {}),
                           "kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        current = self._current(name, version)
        dry_run = bool(request.query.get("dryRun"))
        self._admit("DELETE", version, name, None, current, options, dry_run, warnings)
        if dry_run:
            return 200, current
        try:
            gone = self.api.delete(self.crd.storage, name)
        except KeyError:
            raise Denied(404, object_status(404, self.crd.storage, name,
                                             "not found")) from None
        return 200, self.crd.in_version(gone, version)



def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _spec_changed(old: Object, new: Object) -> bool:
    """The CRD strategy raises generation when anything but metadata and status changes."""
    def body(obj: Object) -> Object:
        return {key: value for key, value in obj.items()
                if key not in ("metadata", "status", "apiVersion", "kind")}
    return body(old) != body(new)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
