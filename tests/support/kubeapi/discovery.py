"""What kubectl asks before it writes: discovery and the OpenAPI v3 documents."""

import hashlib
from collections.abc import Sequence

import orjson

from tests.support.kubeapi import KubeApiServer, Object, Request, Resource
from tests.support.kubeapi.crd import CustomResource

CUSTOM_RESOURCE_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create",
                         "update", "watch"]
BUILTIN_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                 "watch"]
KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4",
                      "gitCommit": "0000000000000000000000000000000000000000",
                      "gitTreeState": "clean", "buildDate": "2025-04-22T00:00:00Z",
                      "goVersion": "go1.23.8", "compiler": "gc", "platform": "linux/amd64"}


class Discovery:
    """Discovery (`/api`, `/apis`, groups, resource lists) and OpenAPI v3 for the CRD and
    the resources the KubeApiServer serves."""

    api: KubeApiServer
    crd: CustomResource


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
