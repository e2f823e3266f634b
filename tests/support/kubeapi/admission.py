"""The API server's write path for a custom resource, for the real kubectl.

`AdmissionFront` adds routes to a `kubeapi.KubeApiServer` so that `kubectl create -f`,
`kubectl apply -f`, `kubectl get` and `kubectl delete` work against it for the
MigrationPolicy CRD the project ships (`manifests/crd.yaml`), and calls the validating
webhooks of a ValidatingWebhookConfiguration over TLS, as the API server does:

- discovery: `/api`, `/apis` (an `APIGroupList`, also when kubectl asks for aggregated
  discovery: the plain content type makes it fall back), `/apis/<group>[/<version>]`, with
  the CRD's versions in the API server's order (the highest kube-aware version first and
  preferred: v1beta1 before v1alpha1), names, categories and verbs;
- `/openapi/v3` and one document per group version whose PATCH operations take
  `fieldValidation`, so kubectl leaves validation to the server (`?fieldValidation=Strict`)
  and needs no `--validate=false`;
- POST (create), PUT (replace: resourceVersion required, as for every custom resource),
  PATCH (`application/merge-patch+json`, what client-side `kubectl apply` sends for a custom
  resource, and `application/json-patch+json`; retried on a conflicting write, as the
  API server's patch handler does), DELETE, and GET/list in every served version, stored in
  the storage version (conversion `None`: only `apiVersion` changes);
- admission: before storing, each webhook whose rules match (operation, group, version,
  resource, scope; `matchPolicy: Equivalent` tries the other served versions) gets an
  `AdmissionReview` (the first of its `admissionReviewVersions` that is v1 or v1beta1) with a
  fresh uuid4 `uid`, kind/resource, requestKind/requestResource, name, operation, userInfo,
  the object as it will be stored (uid, creationTimestamp, generation set) and the old one
  on UPDATE, dryRun and the operation's options, POSTed to its URL with `?timeout=<n>s`,
  trusting only its `caBundle`. The response must be an AdmissionReview of the same version
  whose `response.uid` is the request's. `response.warnings` become `Warning: 299 - "..."`
  headers (deduplicated, truncated past 4096 runes, as the API server's warning recorder
  does), which kubectl prints as `Warning: ...`. A denial becomes the Status of
  k8s.io/apiserver's `webhook/errors.ToStatusErr` (Kubernetes 1.29 to 1.33): the webhook's
  Status with `status.code` raised to at least 400, `status` Failure, and its message
  prefixed `admission webhook "<name>" denied the request: `. A webhook that cannot be
  called or answers wrongly fails the request under `failurePolicy: Fail` with
  apimachinery's `NewInternalError` (500, `Internal error occurred: failed calling webhook
  "<name>": ...`) and is skipped under `Ignore`.

What it does not do: check the CRD's OpenAPI schema or strict field validation (the API
server does both before validating webhooks, so its messages come first for type mistakes
and unknown fields: tests/test_crd_schema.py keeps the schema and the webhook in step), run
mutating webhooks, keep managedFields, or server-side apply. Go's transport error texts
(connection refused, certificate errors) are reproduced closely, not byte for byte.
"""

import base64
import hashlib
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonpatch
import orjson
import yaml

from tests.support.kubeapi import (
    JSON,
    KubeApiServer,
    Object,
    Request,
    Resource,
    StaleResourceVersion,
    object_status,
    status,
)

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "manifests" / "crd.yaml"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

CUSTOM_RESOURCE_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create",
                         "update", "watch"]
BUILTIN_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                 "watch"]
KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4",
                      "gitCommit": "0000000000000000000000000000000000000000",
                      "gitTreeState": "clean", "buildDate": "2025-04-22T00:00:00Z",
                      "goVersion": "go1.23.8", "compiler": "gc", "platform": "linux/amd64"}
ADMIN = {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins",
                                                     "system:authenticated"]}
"""The user the fixture's bearer token authenticates, as kubeadm's admin.conf user."""

_CONFLICT_RETRIES = 5
# The API server's warning recorder (k8s.io/apiserver/pkg/endpoints/filters/warning.go).
_WARNING_TOTAL_RUNES = 4 * 1024
_WARNING_ITEM_RUNES = 256


# --- the custom resource -------------------------------------------------------------------

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


# --- the webhooks --------------------------------------------------------------------------

@dataclass(frozen=True)
class Webhook:
    """One validating webhook of a ValidatingWebhookConfiguration, reached by URL."""

    name: str
    url: str
    ca_bundle: bytes
    rules: tuple[Mapping[str, Any], ...]
    failure_policy: str = "Fail"
    match_policy: str = "Equivalent"
    timeout_seconds: int = 10
    side_effects: str = "None"
    review_versions: tuple[str, ...] = ("v1",)

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any],
                           base_url: str) -> list["Webhook"]:
        """The configuration's webhooks; a `service` reference is reached at
        `base_url` + its path (where a test runs the service), trusting its `caBundle`."""
        hooks = []
        for hook in configuration["webhooks"]:
            client = hook["clientConfig"]
            url = client.get("url") or base_url + client["service"].get("path", "")
            hooks.append(cls(
                name=hook["name"], url=url, ca_bundle=base64.b64decode(client["caBundle"]),
                rules=tuple(hook.get("rules", ())),
                failure_policy=hook.get("failurePolicy", "Fail"),
                match_policy=hook.get("matchPolicy", "Equivalent"),
                timeout_seconds=hook.get("timeoutSeconds", 10),
                side_effects=hook.get("sideEffects", "None"),
                review_versions=tuple(hook.get("admissionReviewVersions", ("v1",)))))
        return hooks

    def matches(self, operation: str, group: str, version: str, resource: str,
                namespaced: bool) -> bool:
        return any(_rule_matches(rule, operation, group, version, resource, namespaced)
                   for rule in self.rules)


def _rule_matches(rule: Mapping[str, Any], operation: str, group: str, version: str,
                  resource: str, namespaced: bool) -> bool:
    def among(values: Sequence[str], value: str) -> bool:
        return "*" in values or value in values

    scope = rule.get("scope", "*")
    return (among(rule.get("operations", ()), operation)
            and among(rule.get("apiGroups", ()), group)
            and among(rule.get("apiVersions", ()), version)
            and among(rule.get("resources", ()), resource)
            and (scope == "*" or scope == ("Namespaced" if namespaced else "Cluster")))


@dataclass(frozen=True)
class ReviewCall:
    """One AdmissionReview the fixture sent, and what came back (None if the call failed)."""

    webhook: str
    review: Object
    response: Object | None


class _Denied(Exception):
    def __init__(self, code: int, body: Object) -> None:
        super().__init__(body.get("message"))
        self.code = code
        self.body = body


def as_go_status(result: Any) -> Object:
    """The webhook's `response.status` as the API server holds it after decoding it into a
    metav1.Status: fields it does not have are dropped (a StatusCause's type is the JSON key
    `reason`; a `type` key is lost), the rest in Go's field order."""
    def pick(source: Any, keys: Sequence[str]) -> Object:
        if not isinstance(source, dict):
            return {}
        return {key: source[key] for key in keys if source.get(key) not in (None, "", 0)}

    decoded = pick(result, ("status", "message", "reason", "details", "code"))
    if "details" in decoded:
        details = pick(decoded["details"], ("name", "group", "kind", "uid", "causes",
                                            "retryAfterSeconds"))
        if "causes" in details:
            details["causes"] = [pick(cause, ("reason", "message", "field"))
                                 for cause in details["causes"] or []]
        decoded["details"] = details
    return decoded


def to_status_err(webhook_name: str, result: Any) -> Object:
    """k8s.io/apiserver webhook/errors.ToStatusErr (1.29 to 1.33): the Status the API server
    answers when a webhook denies a request."""
    denied_by = f'admission webhook "{webhook_name}" denied the request'
    decoded = as_go_status(result) if result is not None else {"status": "Failure"}
    code = int(decoded.get("code") or 0)
    if code < 400:
        code = 400
    if decoded.get("status") in (None, "Success"):
        decoded["status"] = "Failure"
    if decoded.get("message"):
        decoded["message"] = f"{denied_by}: {decoded['message']}"
    elif decoded.get("reason"):
        decoded["message"] = f"{denied_by}: {decoded['reason']}"
    else:
        decoded["message"] = f"{denied_by} without explanation"
    body: Object = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    for key in ("status", "message", "reason", "details"):
        if key in decoded:
            body[key] = decoded[key]
    body["code"] = code
    return body


def internal_error(message: str) -> Object:
    """apimachinery's NewInternalError."""
    return status(500, f"Internal error occurred: {message}", "InternalError",
                  {"causes": [{"message": message}]})


class _Warnings:
    """The API server's per-request warning recorder: deduplicated, then `299 - "text"`."""

    def __init__(self) -> None:
        self._texts: list[str] = []

    def add(self, text: str) -> None:
        if text and text not in self._texts:
            self._texts.append(text)

    def headers(self) -> list[tuple[str, str]]:
        texts = [text for text in self._texts if text.isprintable()]
        if sum(len(text) for text in texts) > _WARNING_TOTAL_RUNES:
            texts = [text[:_WARNING_ITEM_RUNES] for text in texts]
            kept, total = [], 0
            for text in texts:
                if total >= _WARNING_TOTAL_RUNES:
                    break
                kept.append(text)
                total += len(text)
            texts = kept
        return [("Warning", f"299 - {_go_quote(text)}") for text in texts]


def _go_quote(text: str) -> str:
    """strconv.Quote for printable text: backslashes and double quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the front -----------------------------------------------------------------------------

_Write = Callable[[Request, str, _Warnings], tuple[int, Object]]

class AdmissionFront:
    """Serves `crd` on `api` for kubectl, calling `webhooks` on every write."""

    def __init__(self, api: KubeApiServer, webhooks: Sequence[Webhook] = (), *,
                 crd: CustomResource | None = None,
                 user: Mapping[str, Any] = ADMIN) -> None:
        self.api = api
        self.crd = crd or CustomResource.from_file()
        if self.crd.storage not in api.resources:
            raise ValueError(f"the KubeApiServer does not store {self.crd.storage}")
        self.webhooks = list(webhooks)
        self.user = dict(user)
        self._lock = threading.Lock()
        self._reviews: list[ReviewCall] = []
        self._add_routes()

    def reviews(self, webhook: str | None = None) -> list[ReviewCall]:
        """Every AdmissionReview sent so far, in order."""
        with self._lock:
            return [call for call in self._reviews if webhook in (None, call.webhook)]

    # --- routes ------------------------------------------------------------------------

    def _add_routes(self) -> None:
        api = self.api
        group = self.crd.group.replace(".", r"\.")
        plural = self.crd.plural
        api.add_route("GET", r"^/version/?$", lambda r: r.send_json(200, KUBERNETES_VERSION))
        api.add_route("GET", r"^/api/?$", self._core_versions)
        api.add_route("GET", r"^/apis/?$", self._group_list)
        api.add_route("GET", r"^/api/(?P<version>[^/]+)/?$", self._resource_list)
        api.add_route("GET", r"^/apis/(?P<group>[^/]+)/?$", self._group)
        api.add_route("GET", r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/?$",
                      self._resource_list)
        api.add_route("GET", r"^/openapi/v3/?$", self._openapi_paths)
        api.add_route("GET", r"^/openapi/v3/apis/(?P<group>[^/]+)/(?P<version>[^/]+)$",
                      self._openapi_document)
        collection = rf"^/apis/{group}/(?P<version>[^/]+)/{plural}$"
        single = rf"^/apis/{group}/(?P<version>[^/]+)/{plural}/(?P<name>[^/]+)$"
        # GET and list of the storage version are KubeApiServer's own routes (added first).
        api.add_route("GET", collection, self._list)
        api.add_route("GET", single, self._get)
        api.add_route("POST", collection, self._create)
        api.add_route("PUT", single, self._replace)
        api.add_route("PATCH", single, self._patch)
        api.add_route("DELETE", single, self._delete)

    def _served(self, request: Request) -> str | None:
        version = request.params["version"]
        if version not in self.crd.versions:
            request.send_status(404, "the server could not find the requested resource")
            return None
        return version

    # --- discovery ---------------------------------------------------------------------

    def _builtin_groups(self) -> dict[str, list[Resource]]:
        groups: dict[str, list[Resource]] = {}
        for resource in self.api.resources:
            if resource.group != self.crd.group:
                groups.setdefault(resource.api_version, []).append(resource)
        return groups

    def _core_versions(self, request: Request) -> None:
        request.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                "serverAddressByClientCIDRs": [{
                                    "clientCIDR": "0.0.0.0/0",
                                    "serverAddress": f"127.0.0.1:{self.api.port}"}]})

    def _api_groups(self) -> list[Object]:
        groups = []
        for api_version in sorted(self._builtin_groups()):
            if "/" in api_version:
                name, version = api_version.split("/")
                entry = {"groupVersion": api_version, "version": version}
                groups.append({"name": name, "versions": [entry], "preferredVersion": entry})
        versions = [{"groupVersion": f"{self.crd.group}/{version}", "version": version}
                    for version in self.crd.discovery_versions]
        groups.append({"name": self.crd.group, "versions": versions,
                       "preferredVersion": versions[0]})
        return groups

    def _group_list(self, request: Request) -> None:
        # Asked for aggregated discovery (apidiscovery.k8s.io v2), it answers the legacy
        # document with its plain content type, as an API server without it does: kubectl
        # then falls back to one request per group version.
        request.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                "groups": self._api_groups()})

    def _group(self, request: Request) -> None:
        for group in self._api_groups():
            if group["name"] == request.params["group"]:
                request.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", **group})
                return
        request.send_status(404, "the server could not find the requested resource")

    def _resource_list(self, request: Request) -> None:
        group = request.params.get("group", "")
        version = request.params["version"]
        api_version = f"{group}/{version}" if group else version
        resources: list[Object] = []
        if group == self.crd.group and version in self.crd.versions:
            entry: Object = {"name": self.crd.plural, "singularName": self.crd.singular,
                             "namespaced": self.crd.namespaced, "kind": self.crd.kind,
                             "verbs": CUSTOM_RESOURCE_VERBS}
            if self.crd.short_names:
                entry["shortNames"] = list(self.crd.short_names)
            if self.crd.categories:
                entry["categories"] = list(self.crd.categories)
            resources.append(entry)
        else:
            for resource in self._builtin_groups().get(api_version, []):
                resources.append({"name": resource.plural,
                                  "singularName": resource.kind.lower(),
                                  "namespaced": resource.namespaced, "kind": resource.kind,
                                  "verbs": BUILTIN_VERBS})
        if not resources:
            request.send_status(404, "the server could not find the requested resource")
            return
        request.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                "groupVersion": api_version, "resources": resources})

    # --- OpenAPI v3 --------------------------------------------------------------------

    def _openapi_doc(self, version: str) -> Object:
        gvk = {"group": self.crd.group, "version": version, "kind": self.crd.kind}
        schema_name = ".".join([*reversed(self.crd.group.split(".")), version, self.crd.kind])
        ref = {"$ref": f"#/components/schemas/{schema_name}"}
        content = {"application/json": {"schema": ref}}

        def query(name: str, description: str) -> Object:
            return {"name": name, "in": "query", "description": description,
                    "schema": {"type": "string", "uniqueItems": True}}

        write_params = [query("dryRun", "When present, do not persist."),
                        query("fieldManager", "The name of the actor making the change."),
                        query("fieldValidation", "Ignore, Warn or Strict.")]

        def operation(action: str, *, params: Sequence[Object] = (),
                      body: bool = False) -> Object:
            op: Object = {
                "operationId": f"{action}{self.crd.kind}",
                "parameters": list(params),
                "responses": {"200": {"description": "OK", "content": content}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            }
            if body:
                op["requestBody"] = {"content": content, "required": True}
            return op

        prefix = f"/apis/{self.crd.group}/{version}/{self.crd.plural}"
        name_param = {"name": "name", "in": "path", "required": True,
                      "schema": {"type": "string", "uniqueItems": True}}
        patch_params = [*write_params, query("force", "Force apply.")]
        schema = dict(self.crd.schemas.get(version) or {"type": "object"})
        schema["x-kubernetes-group-version-kind"] = [gvk]
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
            "paths": {
                prefix: {
                    "get": operation("list"),
                    "post": operation("post", params=write_params, body=True),
                },
                f"{prefix}/{{name}}": {
                    "get": operation("get"),
                    "put": operation("put", params=write_params, body=True),
                    "patch": operation("patch", params=patch_params, body=True),
                    "delete": operation("delete"),
                    "parameters": [name_param],
                },
            },
            "components": {"schemas": {schema_name: schema}},
        }

    def _openapi_paths(self, request: Request) -> None:
        paths = {}
        for version in self.crd.versions:
            digest = hashlib.sha512(orjson.dumps(self._openapi_doc(version))).hexdigest()
            path = f"apis/{self.crd.group}/{version}"
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
        request.send_json(200, {"paths": paths})

    def _openapi_document(self, request: Request) -> None:
        version = request.params["version"]
        if request.params["group"] != self.crd.group or version not in self.crd.versions:
            request.send_status(404, "the server could not find the requested resource")
            return
        request.send_json(200, self._openapi_doc(version))

    # --- reads -------------------------------------------------------------------------

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
            raise _Denied(400, status(400, f"the body of the request could not be decoded: "
                                           f"{error}", "BadRequest")) from error

    def _check_kind(self, obj: Any, version: str) -> None:
        if not isinstance(obj, dict):
            raise _Denied(400, status(400, "the body of the request is not a JSON object",
                                      "BadRequest"))
        expected = f"{self.crd.group}/{version}"
        if obj.get("apiVersion") != expected:
            raise _Denied(400, status(400, f"the API version in the data "
                                           f"({obj.get('apiVersion')}) does not match the "
                                           f"expected API version ({expected})", "BadRequest"))
        if obj.get("kind") != self.crd.kind:
            raise _Denied(400, status(400, f"the kind in the data ({obj.get('kind')}) does "
                                           f"not match the expected kind ({self.crd.kind})",
                                      "BadRequest"))

    def _invalid(self, name: str, field_path: str, detail: str) -> _Denied:
        message = f'{self.crd.kind}.{self.crd.group} "{name}" is invalid: {field_path}: {detail}'
        return _Denied(422, status(422, message, "Invalid", {
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
        """Run one write; a _Denied becomes its Status; warnings go with either answer."""
        warnings = _Warnings()
        version = self._served(request)
        if version is None:
            return
        try:
            code, body = run(request, version, warnings)
        except _Denied as denied:
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
                   warnings: _Warnings) -> tuple[int, Object]:
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
            raise _Denied(409, object_status(409, self.crd.storage, name,
                                             "already exists")) from None
        return 201, self.crd.in_version(stored, version)

    def _update(self, request: Request, version: str, warnings: _Warnings, name: str,
                new: Object, current: Object, options: Object) -> tuple[int, Object]:
        """Admit and store `new` over `current` (both in `version`)."""
        old_metadata = current["metadata"]
        metadata = new.setdefault("metadata", {})
        if metadata.get("name") != name:
            raise _Denied(400, status(400, f"the name of the object ({metadata.get('name')}) "
                                           f"does not match the name on the URL ({name})",
                                      "BadRequest"))
        expected = metadata.get("resourceVersion")
        if expected and expected != old_metadata["resourceVersion"]:
            raise _Denied(409, self._conflict(name))
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
            raise _Denied(404, object_status(404, self.crd.storage, name, "not found"))
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
                    warnings: _Warnings) -> tuple[int, Object]:
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
            raise _Denied(409, self._conflict(name)) from None

    def _do_patch(self, request: Request, version: str,
                  warnings: _Warnings) -> tuple[int, Object]:
        name = request.params["name"]
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type not in (MERGE_PATCH, JSON_PATCH):
            raise _Denied(415, status(
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
                raise _Denied(422, status(422, f"the patch could not be applied: {error}",
                                          "Invalid")) from error
            if not isinstance(patched, dict):
                raise _Denied(400, status(400, "the patch made the object not an object",
                                          "BadRequest"))
            self._check_kind(patched, version)
            try:
                return self._update(request, version, warnings, name, patched, current,
                                    options)
            except StaleResourceVersion:
                continue  # written meanwhile: the API server applies the patch again
        raise _Denied(409, self._conflict(name))

    def _do_delete(self, request: Request, version: str,
                   warnings: _Warnings) -> tuple[int, Object]:
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
            raise _Denied(404, object_status(404, self.crd.storage, name,
                                             "not found")) from None
        return 200, self.crd.in_version(gone, version)

    # --- admission ---------------------------------------------------------------------

    def _admit(self, operation: str, version: str, name: str, obj: Object | None,
               old: Object | None, options: Object, dry_run: bool,
               warnings: _Warnings) -> None:
        """Call every matching validating webhook; raise _Denied as the API server would."""
        for hook in self.webhooks:
            hook_version = self._matching_version(hook, operation, version)
            if hook_version is None:
                continue
            if dry_run and hook.side_effects not in ("None", "NoneOnDryRun"):
                raise _Denied(400, status(400, f'admission webhook "{hook.name}" does not '
                                               "support dry run", "BadRequest"))
            review = self._review(hook, operation, version, hook_version, name, obj, old,
                                  options, dry_run)
            try:
                response = self._call(hook, review)
            except _CallFailed as failure:
                with self._lock:
                    self._reviews.append(ReviewCall(hook.name, review, None))
                if hook.failure_policy == "Ignore":
                    continue
                raise _Denied(500, internal_error(
                    f'failed calling webhook "{hook.name}": {failure}')) from None
            with self._lock:
                self._reviews.append(ReviewCall(hook.name, review, response))
            for text in response.get("warnings") or []:
                warnings.add(text)
            if not response.get("allowed"):
                body = to_status_err(hook.name, response.get("status"))
                raise _Denied(int(body["code"]), body)

    def _matching_version(self, hook: Webhook, operation: str, version: str) -> str | None:
        """The version the webhook is called with: the request's, or under
        matchPolicy Equivalent another served version its rules name."""
        candidates = [version]
        if hook.match_policy == "Equivalent":
            candidates += [other for other in self.crd.versions if other != version]
        for candidate in candidates:
            if hook.matches(operation, self.crd.group, candidate, self.crd.plural,
                            self.crd.namespaced):
                return candidate
        return None

    def _review(self, hook: Webhook, operation: str, version: str, hook_version: str,
                name: str, obj: Object | None, old: Object | None, options: Object,
                dry_run: bool) -> Object:
        review_version = next((v for v in hook.review_versions if v in ("v1", "v1beta1")),
                              "v1")

        def gvk(v: str) -> Object:
            return {"group": self.crd.group, "version": v, "kind": self.crd.kind}

        def gvr(v: str) -> Object:
            return {"group": self.crd.group, "version": v, "resource": self.crd.plural}

        def versioned(o: Object | None) -> Object | None:
            return None if o is None else self.crd.in_version(o, hook_version)

        return {
            "kind": "AdmissionReview",
            "apiVersion": f"admission.k8s.io/{review_version}",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": gvk(hook_version),
                "resource": gvr(hook_version),
                "requestKind": gvk(version),
                "requestResource": gvr(version),
                "name": name,
                "operation": operation,
                "userInfo": self.user,
                "object": versioned(obj),
                "oldObject": versioned(old),
                "dryRun": dry_run,
                "options": options,
            },
        }

    def _call(self, hook: Webhook, review: Object) -> Object:
        """POST the review; the verified `response`, or _CallFailed with the API server's
        words for what went wrong."""
        url = f"{hook.url}{'&' if '?' in hook.url else '?'}timeout={hook.timeout_seconds}s"
        context = ssl.create_default_context(cadata=hook.ca_bundle.decode())
        try:
            with httpx.Client(verify=context, timeout=hook.timeout_seconds) as client:
                answer = client.post(url, content=orjson.dumps(review), headers={
                    "Content-Type": JSON, "Accept": f"{JSON}, */*"})
        except httpx.HTTPError as error:
            raise _CallFailed(f'failed to call webhook: Post "{url}": '
                              f"{_transport_error(url, error)}") from error
        if answer.status_code != 200:
            raise _CallFailed(f"failed to call webhook: the server responded with the status "
                              f"code {answer.status_code} but did not return more information")
        try:
            body = orjson.loads(answer.content)
        except orjson.JSONDecodeError as error:
            raise _CallFailed(f"failed to call webhook: {error}") from error
        uid = review["request"]["uid"]
        response = body.get("response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise _CallFailed("received invalid webhook response: webhook response was absent")
        if response.get("uid") != uid:
            raise _CallFailed(f"received invalid webhook response: expected response.uid="
                              f'"{uid}", got "{response.get("uid", "")}"')
        expected_gvk = f"{review['apiVersion']}, Kind=AdmissionReview"
        got_gvk = f"{body.get('apiVersion', '')}, Kind={body.get('kind', '')}"
        if got_gvk != expected_gvk:
            raise _CallFailed(f"received invalid webhook response: expected webhook response "
                              f"of {expected_gvk}, got {got_gvk}")
        if response.get("patch") is not None or response.get("patchType") is not None:
            raise _CallFailed("received invalid webhook response: validating webhook may not "
                              "return a patch or patchType")
        return response


class _CallFailed(Exception):
    pass


def _transport_error(url: str, error: httpx.HTTPError) -> str:
    """Go's words for a failed call, as far as Python's exception tells them."""
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or 443}"
    text = str(error)
    if isinstance(error, httpx.TimeoutException):
        return "context deadline exceeded"
    if isinstance(error, httpx.ConnectError):
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "tls: failed to verify certificate: x509: certificate signed by unknown " \
                   "authority"
        if "refused" in text.lower():
            return f"dial tcp {address}: connect: connection refused"
    return text


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
