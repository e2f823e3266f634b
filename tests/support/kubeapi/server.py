"""A stand-in for the Kubernetes API server at its HTTP boundary, for tests and benchmarks.

`KubeApiServer` serves HTTPS on 127.0.0.1 and speaks the real wire protocol for the
resources it is given (by default MigrationPolicies, VirtualMachineInstances, Namespaces):
- LIST `GET <prefix>/<plural>` (and `.../namespaces/<ns>/<plural>`), paginated with `limit`
  and `continue` over a consistent snapshot, with the list's `metadata.resourceVersion`;
- WATCH the same path with `watch=1|true`: a chunked stream of newline-delimited
  ADDED/MODIFIED/DELETED events replayed from a bounded history after `resourceVersion`,
  BOOKMARK events when asked (`allowWatchBookmarks=true`), an ERROR event whose Status has
  code 410 (reason Expired) when that resourceVersion has been compacted away, `504`
  "Too large resource version" (cause ResourceVersionTooLarge) when it is ahead of the
  server, BOOKMARKs every `bookmark_interval` seconds if set (the real server sends one
  about once a minute), and an end of stream after `timeoutSeconds`;
- GET one object; `Accept: ...;as=PartialObjectMetadata[List]` answers metadata only;
- a bearer token is required (401 otherwise), errors are `Status` objects (a 403 worded as
  the API server's RBAC authorizer words it).

Tests change the cluster with `create`/`update`/`delete` and make faults with
`cut_watches`, `silence_watches`, `compact`, `restore`, `fail`, `holding_events`,
`hold_gets`, `stop`/`start`/`restart`; `count` and `max_gets_in_flight` say what the
client asked.
Resource versions are one global counter, as etcd's are.

To extend it: add a `Route` with `add_route`, or a `Resource` to the constructor; route
handlers get a `Request` with the path parameters. `kubeapi_admission.AdmissionFront` adds
what kubectl needs (discovery, OpenAPI, create, apply, replace, delete) for the
MigrationPolicy CRD, and calls validating webhooks on writes as the API server does.
"""

import base64
import contextlib
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import yaml

from app.serving.certificates import KeyType, make_ca, make_serving_certificate, write_private

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
RESOURCES = (MIGRATION_POLICIES, VMIS, NAMESPACES)

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
    """A Status about one object, as apimachinery's NewNotFound, NewAlreadyExists and
    NewConflict build it: `<plural>.<group> "<name>" <message>`, details naming it (with the
    resource as `kind`, as the API server does)."""
    details = {"name": name, "group": resource.group, "kind": resource.plural}
    if not resource.group:
        del details["group"]
    return status(code, f'{resource.group_resource} "{name}" {message}', None, details)


class StaleResourceVersion(Exception):
    """A write that expected another resourceVersion than the stored one (409 Conflict)."""


# Builders for the objects tests use.

def namespace(name: str, labels: Mapping[str, str] | None = None) -> Object:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def vmi(namespace: str, name: str, labels: Mapping[str, str] | None = None) -> Object:
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}}},
        "status": {"phase": "Running"},
    }


def policy(
    name: str, *, namespace_selector: Mapping[str, str] | None = None,
    vmi_selector: Mapping[str, str] | None = None, **spec: Any,
) -> Object:
    selectors: dict[str, Any] = {}
    if namespace_selector is not None:
        selectors["namespaceSelector"] = dict(namespace_selector)
    if vmi_selector is not None:
        selectors["virtualMachineInstanceSelector"] = dict(vmi_selector)
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": name}, "spec": {**spec, "selectors": selectors}}


@dataclass(frozen=True)
class Call:
    """One request the server answered, for tests to assert on."""

    verb: str  # list, watch, get, or the HTTP method for other routes
    resource: str  # plural, or "" for other routes
    namespace: str
    name: str
    query: Mapping[str, str]


@dataclass(frozen=True)
class _Event:
    resource_version: int
    resource: Resource
    type: str
    object: Object


class Request:
    """One HTTP request, and the ways to answer it."""

    def __init__(self, handler: "_Handler", method: str, params: Mapping[str, str]) -> None:
        url = urlsplit(handler.path)
        self._handler = handler
        self.method = method
        self.path = url.path
        self.query = {key: values[-1] for key, values in
                      parse_qs(url.query, keep_blank_values=True).items()}
        self.params = params
        self.headers = handler.headers
        self._body_read = False

    @property
    def metadata_only(self) -> bool:
        return "as=PartialObjectMetadata" in (self.headers.get("Accept") or "")

    def body(self) -> bytes:
        if self._body_read:
            return b""
        self._body_read = True
        length = int(self.headers.get("Content-Length") or 0)
        return self._handler.rfile.read(length) if length else b""

    def send_json(self, code: int, obj: Any, content_type: str = JSON,
                  headers: Sequence[tuple[str, str]] = ()) -> None:
        data = orjson.dumps(obj)
        handler = self._handler
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        for name, value in headers:
            # Header bytes as Go writes them (UTF-8), through http.server's latin-1 encoding.
            handler.send_header(name, value.encode().decode("latin-1"))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def send_status(self, code: int, message: str, reason: str | None = None) -> None:
        self.send_json(code, status(code, message, reason))

    def start_stream(self, content_type: str = JSON) -> None:
        handler = self._handler
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._handler.wfile.write(b"0\r\n\r\n")

    def cut(self, partial: bytes = b'{"type":"MODIFIED","object":{"metadata":{"na') -> None:
        """Drop the connection in the middle of a chunk, as a failing network does."""
        handler = self._handler
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.wfile.write(b"%x\r\n%s" % (len(partial) * 4, partial))
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)


RouteHandler = Callable[[Request], None]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handle: RouteHandler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.server.api._connection_opened(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.api._connection_closed(self.connection)

    def _dispatch(self) -> None:
        try:
            self.server.api._dispatch(self)
        except (OSError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: "KubeApiServer",
                 context: ssl.SSLContext) -> None:
        self.api = api
        self.context = context
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's thread, not in accept().
        # No Nagle delay, as Go's net/http does not have one either.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(request, client_address)
        finally:
            with contextlib.suppress(OSError):
                request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away is not news


class KubeApiServer:
    """An HTTPS server that behaves like the Kubernetes API for a few resources."""

    def __init__(
        self, directory: Path, *, resources: Sequence[Resource] = RESOURCES,
        token: str = "fixture-token", history_limit: int = 10_000,
        user: str = "system:serviceaccount:migration-policy-webhook:migration-policy-webhook",
    ) -> None:
        self.directory = directory
        self.token = token
        self.user = user
        """Who the token is, as 403 messages name it."""
        self.resources = tuple(resources)
        self.history_limit = history_limit
        self.expire_with_http_status = False
        """Answer a too old watch with HTTP 410 instead of a 200 stream with an ERROR event."""
        self.too_large_as_event = False
        """Answer a watch from a resourceVersion ahead of the server with a 200 stream and
        an ERROR event instead of HTTP 504."""
        self.bookmark_interval: float | None = None
        """Seconds between the BOOKMARKs sent to every watch that asked for them."""
        self.port = 0
        self._cond = threading.Condition()
        self._rv = 1
        self._objects: dict[Resource, dict[tuple[str, str], Object]] = {
            resource: {} for resource in self.resources}
        self._history: list[_Event] = []
        self._compacted_rv = 1  # watching from an older resourceVersion is 410 Gone
        self._snapshots: dict[int, tuple[int, list[Object]]] = {}
        self._snapshot_ids = iter(range(1, 1 << 62))
        self._cut_generation = 0
        self._bookmark_generation = 0
        self._silence_generation = 0
        self._held = False
        self._epoch = 0  # one per start; 0 while stopped
        self._epochs = iter(range(1, 1 << 62))
        self._faults: dict[tuple[str, str], int] = {}
        self._gets_open = threading.Event()
        self._gets_open.set()
        self._calls: list[Call] = []
        self._connections: set[socket.socket] = set()
        self.bookmarks_sent = 0
        self.active_watches = 0
        self.gets_in_flight = 0
        self.max_gets_in_flight = 0
        """The most GETs of single objects answered at the same time."""
        self.routes: list[Route] = []
        for resource in self.resources:
            self._add_resource_routes(resource)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._context = self._make_tls()

    # --- lifecycle ---------------------------------------------------------------------

    def _make_tls(self) -> ssl.SSLContext:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = make_ca("kubeapi fixture CA", days=2, key_type=KeyType.ECDSA)
        serving = make_serving_certificate(ca, ["localhost"], ip_addresses=["127.0.0.1"],
                                           days=2, key_type=KeyType.ECDSA)
        self.ca_file = self.directory / "kubeapi-ca.crt"
        self.ca_file.write_bytes(ca.certificate_pem())
        cert_file = self.directory / "kubeapi.crt"
        key_file = self.directory / "kubeapi.key"
        cert_file.write_bytes(serving.certificate_pem())
        write_private(key_file, serving.key_pem())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "KubeApiServer":
        """Serve (on the same port as before, after a stop)."""
        server = _Server(("127.0.0.1", self.port), self, self._context)
        self.port = server.server_address[1]
        with self._cond:
            self._epoch = next(self._epochs)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, name="kubeapi-fixture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection, as a crashed API server does."""
        with self._cond:
            self._epoch = 0
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def restart(self, *, compact: bool = False) -> None:
        """Stop and start again on the same port; `compact` loses the watch history too."""
        self.stop()
        if compact:
            self.compact()
        self.start()

    def __enter__(self) -> "KubeApiServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """A kubeconfig for this server: its CA as certificate-authority-data, a token."""
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fixture", "cluster": {
                "server": self.url, "certificate-authority-data": ca_data}}],
            "users": [{"name": "fixture", "user": {"token": token or self.token}}],
            "contexts": [{"name": "fixture", "context": {"cluster": "fixture",
                                                         "user": "fixture"}}],
            "current-context": "fixture",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- the cluster -------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def create(self, resource: Resource, obj: Mapping[str, Any]) -> Object:
        return self.load(resource, [obj])[0]

    def load(self, resource: Resource, objects: Iterable[Mapping[str, Any]]) -> list[Object]:
        """Create many objects at once (one ADDED event each)."""
        created = []
        with self._cond:
            for obj in objects:
                key = self._key(resource, obj)
                if key in self._objects[resource]:
                    raise ValueError(f"{resource.plural} {key} already exists")
                stored = self._store(resource, key, obj, "ADDED", new=True)
                created.append(stored)
            self._cond.notify_all()
        return created

    def update(self, resource: Resource, obj: Mapping[str, Any]) -> Object:
        with self._cond:
            key = self._key(resource, obj)
            old = self._objects[resource].get(key)
            if old is None:
                raise KeyError(f"{resource.plural} {key} not found")
            stored = self._store(resource, key, obj, "MODIFIED", old=old)
            self._cond.notify_all()
        return stored

    def delete(self, resource: Resource, name: str, namespace: str = "") -> Object:
        with self._cond:
            key = (namespace if resource.namespaced else "", name)
            old = self._objects[resource].pop(key)
            self._rv += 1
            gone = _with_metadata(old, resourceVersion=str(self._rv))
            self._record(resource, "DELETED", gone)
            self._cond.notify_all()
        return gone

    def get(self, resource: Resource, name: str, namespace: str = "") -> Object | None:
        return self._objects[resource].get((namespace if resource.namespaced else "", name))

    def snapshot(self, resource: Resource) -> tuple[int, list[Object]]:
        """The current resourceVersion and every object of `resource`, by namespace and name."""
        with self._cond:
            return self._rv, self._matching(resource, None)

    def write(self, resource: Resource, obj: Mapping[str, Any], *, create: bool,
              resource_version: str | None = None) -> Object:
        """Store `obj` as the API server's registry does after admission: with the uid,
        creationTimestamp and generation the caller has set in its metadata (the ones the
        admission webhooks saw), a new resourceVersion, and one ADDED or MODIFIED event.

        Raises ValueError if `create` and it exists, KeyError if not `create` and it does
        not, StaleResourceVersion if `resource_version` is not the stored one's.
        """
        with self._cond:
            key = self._key(resource, obj)
            old = self._objects[resource].get(key)
            if create and old is not None:
                raise ValueError(f"{resource.plural} {key} already exists")
            if not create and old is None:
                raise KeyError(f"{resource.plural} {key} not found")
            if (old is not None and resource_version is not None
                    and old["metadata"]["resourceVersion"] != resource_version):
                raise StaleResourceVersion(key)
            stored = self._store(resource, key, obj, "ADDED" if create else "MODIFIED",
                                 new=create, old=old, system_fields=True)
            self._cond.notify_all()
        return stored

    def _key(self, resource: Resource, obj: Mapping[str, Any]) -> tuple[str, str]:
        metadata = obj.get("metadata") or {}
        ns = (metadata.get("namespace") or "default") if resource.namespaced else ""
        return ns, metadata["name"]

    def _store(self, resource: Resource, key: tuple[str, str], obj: Mapping[str, Any],
               event_type: str, *, new: bool = False, old: Object | None = None,
               system_fields: bool = False) -> Object:
        self._rv += 1
        stored: Object = orjson.loads(orjson.dumps(obj))  # a private copy
        stored.setdefault("apiVersion", resource.api_version)
        stored.setdefault("kind", resource.kind)
        metadata = stored.setdefault("metadata", {})
        if resource.namespaced:
            metadata["namespace"] = key[0]
        metadata["resourceVersion"] = str(self._rv)
        previous = (old or {}).get("metadata", {})
        if not system_fields:
            metadata["uid"] = previous.get("uid") or str(uuid.uuid4())
            metadata["creationTimestamp"] = previous.get("creationTimestamp") or _now()
            metadata["generation"] = 1 if new else previous.get("generation", 1) + 1
        self._objects[resource][key] = stored
        self._record(resource, event_type, stored)
        return stored

    def _record(self, resource: Resource, event_type: str, obj: Object) -> None:
        self._history.append(_Event(self._rv, resource, event_type, obj))
        excess = len(self._history) - self.history_limit
        if excess > 0:
            drop = max(excess, self.history_limit // 10)
            del self._history[:drop]
            self._compacted_rv += drop

    # --- faults ------------------------------------------------------------------------

    def compact(self) -> None:
        """Forget the watch history and list snapshots, as etcd compaction does."""
        with self._cond:
            self._history.clear()
            self._compacted_rv = self._rv
            self._snapshots.clear()
            self._cond.notify_all()

    def cut_watches(self) -> None:
        """Drop every open watch connection in the middle of a chunk."""
        with self._cond:
            self._cut_generation += 1
            self._cond.notify_all()

    def silence_watches(self) -> None:
        """Every open watch stays open but sends nothing more, not even its end: a stuck
        API server, or a connection half-open behind a load balancer. New watches work."""
        with self._cond:
            self._silence_generation += 1
            self._cond.notify_all()

    def restore(self, revisions: int) -> None:
        """The API server comes back from an etcd backup `revisions` writes older (or the
        client now reaches a replica that far behind): resourceVersions go back, so clients
        that saw newer ones are ahead of the server (504 "Too large resource version");
        the history is lost and open watches are cut. Objects keep their content."""
        with self._cond:
            self._rv = max(1, self._rv - revisions)
            for objects in self._objects.values():
                for key, obj in objects.items():
                    if int(obj["metadata"]["resourceVersion"]) > self._rv:
                        objects[key] = _with_metadata(obj, resourceVersion=str(self._rv))
            self._history.clear()
            self._compacted_rv = self._rv
            self._snapshots.clear()
            self._cut_generation += 1
            self._cond.notify_all()

    def send_bookmark(self) -> None:
        """Send a BOOKMARK at the current resourceVersion to every watch that asked."""
        with self._cond:
            self._bookmark_generation += 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def holding_events(self) -> Iterator[None]:
        """Changes made meanwhile reach lists and GETs, but not watches, until the end."""
        with self._cond:
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    def hold_gets(self) -> None:
        """GETs of single objects wait until `release_gets`."""
        self._gets_open.clear()

    def release_gets(self) -> None:
        self._gets_open.set()

    def fail(self, verb: str, resource: Resource, code: int = 503) -> None:
        """Answer every `verb` (list, watch, get) of `resource` with this error status."""
        self._faults[(verb, resource.plural)] = code

    def client_addresses(self) -> list[tuple[str, int]]:
        """The (address, port) of every client connection open now."""
        with self._cond:
            connections = list(self._connections)
        addresses = []
        for connection in connections:
            with contextlib.suppress(OSError):
                addresses.append(connection.getpeername()[:2])
        return addresses

    def count(self, verb: str | None = None, resource: Resource | None = None) -> int:
        """How many requests of `verb` (list, watch, get) of `resource` were answered."""
        return len(self.calls(verb, resource))

    def heal(self) -> None:
        self._faults.clear()

    def calls(self, verb: str | None = None, resource: Resource | None = None) -> list[Call]:
        with self._cond:
            return [call for call in self._calls
                    if (verb is None or call.verb == verb)
                    and (resource is None or call.resource == resource.plural)]

    # --- HTTP --------------------------------------------------------------------------

    def add_route(self, method: str, pattern: str, handle: RouteHandler) -> None:
        """Serve `method` on paths matching `pattern` (named groups become `params`)."""
        self.routes.append(Route(method, re.compile(pattern), handle))

    def _add_resource_routes(self, resource: Resource) -> None:
        prefix = re.escape(resource.prefix)
        plural = re.escape(resource.plural)
        collection = self._collection_handler(resource)
        single = self._object_handler(resource)
        self.add_route("GET", f"^{prefix}/{plural}$", collection)
        if resource.namespaced:
            self.add_route("GET", f"^{prefix}/namespaces/(?P<namespace>[^/]+)/{plural}$",
                           collection)
            self.add_route("GET", f"^{prefix}/namespaces/(?P<namespace>[^/]+)/{plural}/"
                                  "(?P<name>[^/]+)$", single)
        else:
            self.add_route("GET", f"^{prefix}/{plural}/(?P<name>[^/]+)$", single)

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._cond:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._cond:
            self._connections.discard(connection)

    def _dispatch(self, handler: _Handler) -> None:
        method = handler.command
        path = urlsplit(handler.path).path
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            request = Request(handler, method, {})
            request.body()  # a body left unread would be taken for the next request
            request.send_status(401, "Unauthorized")
            return
        for route in self.routes:
            if route.method != method:
                continue
            match = route.pattern.match(path)
            if match:
                params = {key: unquote(value) for key, value in match.groupdict().items()
                          if value is not None}
                request = Request(handler, method, params)
                route.handle(request)
                request.body()  # drained if the route did not read it (DELETE's options)
                return
        request = Request(handler, method, {})
        request.body()
        request.send_status(
            404, f"the server could not find the requested resource ({method} {path})")

    def _note(self, verb: str, resource: Resource, request: Request) -> int | None:
        """Record the call; the injected error status for it, if any."""
        with self._cond:
            self._calls.append(Call(verb, resource.plural, request.params.get("namespace", ""),
                                    request.params.get("name", ""), dict(request.query)))
        return self._faults.get((verb, resource.plural))

    def _collection_handler(self, resource: Resource) -> RouteHandler:
        def handle(request: Request) -> None:
            watch = request.query.get("watch") in ("1", "true")
            verb = "watch" if watch else "list"
            fault = self._note(verb, resource, request)
            if fault:
                self._send_fault(request, fault, verb, resource)
            elif watch:
                self._watch(request, resource)
            else:
                self._list(request, resource)
        return handle

    def _object_handler(self, resource: Resource) -> RouteHandler:
        def handle(request: Request) -> None:
            fault = self._note("get", resource, request)
            with self._cond:
                self.gets_in_flight += 1
                self.max_gets_in_flight = max(self.max_gets_in_flight, self.gets_in_flight)
            try:
                self._gets_open.wait(30)
                if fault:
                    self._send_fault(request, fault, "get", resource)
                else:
                    self._get(request, resource)
            finally:
                with self._cond:
                    self.gets_in_flight -= 1
        return handle

    def _send_fault(self, request: Request, code: int, verb: str, resource: Resource) -> None:
        if code != 403:
            request.send_status(code, f"injected fault: {resource.plural} unavailable")
            return
        scope = (f'in the namespace "{request.params["namespace"]}"'
                 if "namespace" in request.params else "at the cluster scope")
        message = (f'{resource.group_resource} is forbidden: User "{self.user}" cannot {verb} '
                   f'resource "{resource.plural}" in API group "{resource.group}" {scope}')
        details = {"group": resource.group, "kind": resource.plural}
        if "name" in request.params:
            details["name"] = request.params["name"]
        request.send_json(403, status(403, message, "Forbidden", details))

    def _get(self, request: Request, resource: Resource) -> None:
        name = request.params["name"]
        obj = self.get(resource, name, request.params.get("namespace", ""))
        if obj is None:
            request.send_json(404, object_status(404, resource, name, "not found"))
        elif request.metadata_only:
            request.send_json(200, _partial(obj), _partial_type("PartialObjectMetadata"))
        else:
            request.send_json(200, obj)

    def _matching(self, resource: Resource, namespace: str | None) -> list[Object]:
        objects = self._objects[resource]
        keys = sorted(key for key in objects if namespace is None or key[0] == namespace)
        return [objects[key] for key in keys]

    def _list(self, request: Request, resource: Resource) -> None:
        namespace = request.params.get("namespace")
        limit = int(request.query.get("limit") or 0)
        token = request.query.get("continue")
        with self._cond:
            if token:
                snapshot_id, offset = _decode_token(token)
                snapshot = self._snapshots.get(snapshot_id)
                if snapshot is None:
                    request.send_status(
                        410, "The provided continue parameter is too old to display a "
                             "consistent list result. You can start a new list without the "
                             "continue parameter.", "Expired")
                    return
                version, items = snapshot
            else:
                version, items, offset = self._rv, self._matching(resource, namespace), 0
                snapshot_id = next(self._snapshot_ids)
                if limit and len(items) > limit:
                    self._snapshots[snapshot_id] = (version, items)
                    while len(self._snapshots) > 8:
                        del self._snapshots[next(iter(self._snapshots))]
        end = offset + limit if limit else len(items)
        page = items[offset:end]
        metadata: Object = {"resourceVersion": str(version)}
        if end < len(items):
            metadata["continue"] = _encode_token(snapshot_id, end)
            metadata["remainingItemCount"] = len(items) - end
        if request.metadata_only:
            body = {"apiVersion": META_API_VERSION, "kind": "PartialObjectMetadataList",
                    "metadata": metadata, "items": [_partial(obj) for obj in page]}
            request.send_json(200, body, _partial_type("PartialObjectMetadataList"))
        else:
            body = {"apiVersion": resource.api_version, "kind": f"{resource.kind}List",
                    "metadata": metadata, "items": page}
            request.send_json(200, body)

    def _watch(self, request: Request, resource: Resource) -> None:
        namespace = request.params.get("namespace")
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
        deadline = time.monotonic() + float(request.query.get("timeoutSeconds") or 1800)
        since = request.query.get("resourceVersion") or ""

        def encode(event_type: str, obj: Object) -> bytes:
            shown = _partial(obj) if request.metadata_only and event_type != "ERROR" else obj
            return orjson.dumps({"type": event_type, "object": shown}) + b"\n"

        initial: list[bytes] = []
        with self._cond:
            epoch = self._epoch
            cut_generation = self._cut_generation
            bookmark_generation = self._bookmark_generation
            silence_generation = self._silence_generation
            if since in ("", "0"):  # "any": the current objects, then changes
                initial = [encode("ADDED", obj) for obj in self._matching(resource, namespace)]
                cursor = self._rv
            elif not since.isdigit():
                request.send_status(400, f"invalid resourceVersion {since!r}")
                return
            else:
                cursor = int(since)
            refusal: Object | None = None
            if cursor > self._rv:
                # The real server first waits up to 3 s for its watch cache to catch up.
                refusal = status(
                    504, f"Too large resource version: {cursor}, current: {self._rv}",
                    "Timeout", {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}],
                                "retryAfterSeconds": 1})
            elif cursor < self._compacted_rv:
                refusal = status(
                    410, f"too old resource version: {since} ({self._compacted_rv})", "Expired")
        as_event = (self.too_large_as_event if refusal and refusal["code"] == 504
                    else not self.expire_with_http_status)
        if refusal is not None and not as_event:
            request.send_json(refusal["code"], refusal)
            return
        content_type = (_partial_type("PartialObjectMetadata") if request.metadata_only
                        else JSON)
        request.start_stream(content_type)
        if refusal is not None:
            request.write_chunk(encode("ERROR", refusal))
            request.end_stream()
            return
        for data in initial:
            request.write_chunk(data)
        with self._cond:
            self.active_watches += 1
        try:
            self._stream(request, resource, namespace, cursor, encode, deadline,
                         (epoch, cut_generation, silence_generation),
                         bookmark_generation if bookmarks else None)
        finally:
            with self._cond:
                self.active_watches -= 1

    def _stream(self, request: Request, resource: Resource, namespace: str | None,
                cursor: int, encode: Callable[[str, Object], bytes], deadline: float,
                generation: tuple[int, int, int], bookmark_generation: int | None) -> None:
        interval = self.bookmark_interval if bookmark_generation is not None else None
        next_bookmark = time.monotonic() + interval if interval else None
        while True:
            chunks: list[bytes] = []
            with self._cond:
                while True:
                    now = time.monotonic()
                    wake = deadline if next_bookmark is None else min(deadline, next_bookmark)
                    if (self._epoch, self._cut_generation) != generation[:2]:
                        action = "cut"
                    elif self._silence_generation != generation[2]:
                        self._cond.wait()  # silent until cut (or the server stops)
                        continue
                    elif cursor < self._compacted_rv:  # fell behind compacted history
                        action = "expired"
                    elif not self._held and self._rv > cursor:
                        action = "events"
                    elif ((bookmark_generation is not None
                           and bookmark_generation != self._bookmark_generation)
                          or (next_bookmark is not None and now >= next_bookmark)):
                        action = "bookmark"
                    elif now >= deadline:
                        action = "timeout"
                    else:
                        self._cond.wait(max(0.0, wake - now))
                        continue
                    break
                if action == "events":
                    start = cursor - self._compacted_rv
                    for event in self._history[start:]:
                        if event.resource == resource and (
                                namespace is None
                                or event.object["metadata"].get("namespace") == namespace):
                            chunks.append(encode(event.type, event.object))
                    cursor = self._rv
                elif action == "bookmark":
                    bookmark_generation = self._bookmark_generation
                    if next_bookmark is not None and interval:
                        next_bookmark = time.monotonic() + interval
                    chunks.append(encode("BOOKMARK", {
                        "kind": resource.kind, "apiVersion": resource.api_version,
                        "metadata": {"resourceVersion": str(cursor)}}))
                    self.bookmarks_sent += 1
                elif action == "expired":
                    chunks.append(encode("ERROR", status(
                        410, f"too old resource version: {cursor} ({self._compacted_rv})",
                        "Expired")))
            if action == "cut":
                request.cut()
                return
            for chunk in chunks:
                request.write_chunk(chunk)
            if action in ("expired", "timeout"):
                request.end_stream()
                return


def _partial(obj: Object) -> Object:
    return {"apiVersion": META_API_VERSION, "kind": "PartialObjectMetadata",
            "metadata": obj.get("metadata", {})}


def _partial_type(kind: str) -> str:
    return f"application/json;as={kind};g=meta.k8s.io;v=v1"


def _encode_token(snapshot_id: int, offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([snapshot_id, offset])).decode()


def _decode_token(token: str) -> tuple[int, int]:
    try:
        snapshot_id, offset = orjson.loads(base64.urlsafe_b64decode(token))
        return int(snapshot_id), int(offset)
    except (ValueError, TypeError):
        return -1, 0


def _with_metadata(obj: Object, **metadata: Any) -> Object:
    return {**obj, "metadata": {**obj.get("metadata", {}), **metadata}}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
