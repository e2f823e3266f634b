"""A stand-in for the Kubernetes API server at its HTTP boundary, for tests and benchmarks.

`KubeApiServer` serves HTTPS on 127.0.0.1 and speaks the real wire protocol for the
resources it is given (by default MigrationPolicies, VirtualMachineInstances, Namespaces,
VirtualMachineInstanceMigrations):
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
handlers get a `Request` with the path parameters. It has no write path, discovery or
admission: kubectl and the webhooks are tested against the real API server (tests/cluster/).
"""

import base64
import contextlib
import re
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from tests.support.kubeapi.http_server import (
    Handler,
    Request,
    Route,
    RouteHandler,
    Server,
    serving_context,
)
from tests.support.kubeapi.resources import RESOURCES, Call, Object, Resource, object_status, status
from tests.support.kubeapi.store import Event
from tests.support.kubeapi.watch import ListWatch, partial, partial_type


class KubeApiServer(ListWatch):
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
        self._history: list[Event] = []
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
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.ca_file, self._context = serving_context(self.directory)


    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "KubeApiServer":
        """Serve (on the same port as before, after a stop)."""
        server = Server(("127.0.0.1", self.port), self, self._context)
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

    def _dispatch(self, handler: Handler) -> None:
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
                request.body()  # drained if the route did not read it
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
            request.send_json(200, partial(obj), partial_type("PartialObjectMetadata"))
        else:
            request.send_json(200, obj)
