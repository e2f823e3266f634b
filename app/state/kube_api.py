"""The Kubernetes API as the cluster state needs it: raw GETs, decoded with orjson.

The official `kubernetes` client supplies the configuration (in-cluster or a kubeconfig:
server, CA, client certificate, token and its refresh, proxy) and its urllib3 connection
pool. Requests are made on that pool directly and answered as raw responses, because the
client's generated models are slow to build for many objects and because the generated
`call_api` changed its signature between client versions.
"""

import logging
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException, load_incluster_config, load_kube_config

from app.k8s.resources import NAMESPACES, VIRTUAL_MACHINE_INSTANCES, Resource

log = logging.getLogger(__name__)

JSON = "application/json"
# Ask for metadata only (labels are all that matters of VMIs and namespaces); a server that
# cannot answer so sends the whole object, which is read the same way.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

USER_AGENT = "migration-policy-webhook"

# TCP keepalive on every API connection, so a peer that vanished (a node or load balancer
# gone without a reset) is noticed by the kernel: probed after 30 s idle, dropped after
# 3 unanswered probes 10 s apart. Kept with urllib3's default (no Nagle delay).
KEEPALIVE_IDLE_SECONDS = 30
KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_PROBES = 3

# What a failed request can raise besides ApiError: transport errors, and a body that is
# not JSON.
TransportErrors = (urllib3.exceptions.HTTPError, OSError, orjson.JSONDecodeError)


class KubeConfigError(ValueError):
    """No usable configuration for the Kubernetes API."""


LABELS_ONLY = frozenset({VIRTUAL_MACHINE_INSTANCES, NAMESPACES})
"""The resources of which only labels are needed: asked for as PartialObjectMetadata."""


def list_accept(resource: Resource) -> str:
    """The Accept header of a list (or watch) of `resource`."""
    return METADATA_LIST if resource in LABELS_ONLY else JSON


def object_accept(resource: Resource) -> str:
    """The Accept header of a GET of one object of `resource`."""
    return METADATA_OBJECT if resource in LABELS_ONLY else JSON


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, code: int, reason: str, message: str,
                 causes: Sequence[str] = ()) -> None:
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = tuple(causes)
        """The `reason` of each of the Status's `details.causes`."""

    @property
    def expired(self) -> bool:
        """410 Gone: the resourceVersion or continue token is too old; list again."""
        return self.code == 410 or self.reason in ("Expired", "Gone")

    @property
    def too_large_resource_version(self) -> bool:
        """The resourceVersion asked for is ahead of the server (an etcd restore, a lagging
        API server replica): 504 with cause ResourceVersionTooLarge; list from scratch."""
        return ("ResourceVersionTooLarge" in self.causes
                or "too large resource version" in self.message.lower())

    @property
    def refused(self) -> bool:
        """401 or 403: the credentials or the RBAC permissions are wrong."""
        return self.code in (401, 403)

    @classmethod
    def from_status(cls, status: Mapping[str, Any], http_code: int = 0) -> "ApiError":
        """From a `Status` object (an error body, or the object of a watch ERROR event)."""
        code = status.get("code")
        details = status.get("details")
        causes = details.get("causes") if isinstance(details, dict) else None
        return cls(code if isinstance(code, int) else http_code,
                   str(status.get("reason") or ""), str(status.get("message") or ""),
                   [str(cause.get("reason") or "") for cause in causes or ()
                    if isinstance(cause, dict)])

    @classmethod
    def from_response(cls, code: int, reason: str, body: bytes) -> "ApiError":
        try:
            status = orjson.loads(body)
        except orjson.JSONDecodeError:
            status = None
        if isinstance(status, dict) and status.get("kind") == "Status":
            error = cls.from_status(status, code)
            error.code = code
            return error
        return cls(code, reason, body[:200].decode(errors="replace"))


def refusal(error: ApiError, verb: str, resource: Resource) -> str:
    """What a 401 or 403 means for the operator: the credentials, or the RBAC rule missing."""
    if error.code == 401:
        return (f"the API server does not accept the webhook's credentials ({error}): check "
                "the service account token, or the user of --kubeconfig")
    group = f'API group "{resource.group}"' if resource.group else 'the core API group ("")'
    scope = "in every namespace" if resource.namespaced else "(cluster-scoped)"
    return (f"permission missing: verb {verb!r} on resource {resource.plural!r} in {group} "
            f"{scope}: grant the webhook's service account a ClusterRole with verbs get, "
            f"list, watch on it; the API server said: {error.message or error}")


def keepalive_socket_options() -> list[tuple[int, int, int]]:
    """urllib3 socket options: its defaults plus TCP keepalive (where the platform has it)."""
    options = list(urllib3.connection.HTTPConnection.default_socket_options)
    options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
                        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
                        ("TCP_KEEPCNT", KEEPALIVE_PROBES)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


class KubeApi:
    """GET requests to the API server with the official client's configuration and pool."""

    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client
        self._configuration: Configuration = api_client.configuration
        self._pool: urllib3.PoolManager = api_client.rest_client.pool_manager
        # Set on the pool manager itself (before its first connection): older clients have
        # no Configuration.socket_options.
        self._pool.connection_pool_kw["socket_options"] = keepalive_socket_options()
        self.host = self._configuration.host.rstrip("/")

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | None, context: str | None = None) -> "KubeApi":
        """In-cluster configuration when `kubeconfig` is None, else that file's `context`
        (its current context when None); `context` needs a kubeconfig."""
        configuration = Configuration()
        try:
            if kubeconfig is None:
                load_incluster_config(client_configuration=configuration)
            else:
                load_kube_config(config_file=str(kubeconfig), context=context,
                                 client_configuration=configuration, persist_config=False)
        except (ConfigException, OSError, ValueError) as error:
            if kubeconfig is not None and context is not None:
                raise KubeConfigError(f"--context {context}: cannot use it from kubeconfig "
                                      f"{kubeconfig}: {error}") from error
            where = (f"kubeconfig {kubeconfig}" if kubeconfig is not None else
                     "in-cluster configuration (not running in a pod? use --kubeconfig FILE)")
            raise KubeConfigError(f"--state kube: cannot use {where}: {error}") from error
        # The pool must hold the three watches and the direct lookups at once.
        configuration.connection_pool_maxsize = max(
            configuration.connection_pool_maxsize or 0, 8)
        return cls(ApiClient(configuration))

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        # auth_settings() calls the client's token refresh hook (in-cluster token rotation,
        # kubeconfig exec plugins), so the header is current on every request.
        settings: Any = self._configuration.auth_settings()
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def open(
        self, path: str, query: Sequence[tuple[str, str]] = (), *, accept: str = JSON,
        timeout: urllib3.Timeout,
    ) -> urllib3.BaseHTTPResponse:
        """GET `path` and return the unread response; raise ApiError for an error status."""
        url = self.host + path + (f"?{urlencode(query)}" if query else "")
        response = self._pool.request(
            "GET", url, headers=self._headers(accept), timeout=timeout, retries=False,
            redirect=False, preload_content=False,
        )
        if not 200 <= response.status < 300:
            try:
                body = response.read()
            finally:
                response.release_conn()
            raise ApiError.from_response(response.status, response.reason or "", body)
        return response

    def get_json(
        self, path: str, query: Sequence[tuple[str, str]] = (), *, accept: str = JSON,
        timeout: urllib3.Timeout,
    ) -> dict[str, Any]:
        """GET `path` and decode the JSON object it answers."""
        response = self.open(path, query, accept=accept, timeout=timeout)
        try:
            body = orjson.loads(response.read())
        finally:
            response.release_conn()
        if not isinstance(body, dict):
            raise ApiError(response.status, "BadResponse", "the body is not a JSON object")
        return body

    def close(self) -> None:
        self._client.close()
