"""List then watch one kind of object, keeping a store current; in its own thread.

The Kubernetes list/watch protocol, as client-go's reflector speaks it:
- list in pages (`limit`, `continue`); the list's `metadata.resourceVersion` is where the
  watch starts;
- watch with `allowWatchBookmarks=true` and resume from the last resourceVersion seen,
  bookmarks included, so a reconnect replays only what was missed;
- `410 Gone` (an ERROR event whose Status has code 410, or the HTTP status) means that
  resourceVersion is no longer in the server's history: list again, and replace the store;
- any other failure (a dropped connection, an API error, an unreadable event) is retried
  after a jittered exponential backoff.
"""

import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import orjson
import urllib3

from app.state.kube_api import ApiError, KubeApi, Resource, TransportErrors

log = logging.getLogger(__name__)

Object = Mapping[str, Any]


class Store(Protocol):
    """Where a reflector keeps what it needs of each object."""

    def replace(self, objects: Iterable[Object]) -> int:
        """Replace everything with `objects` (consumed lazily); return how many were kept.

        If iterating `objects` raises, the store must be left as it was.
        """
        ...

    def apply(self, event_type: str, obj: Object) -> None:
        """Apply one watch event: ADDED, MODIFIED or DELETED."""
        ...


class Expired(Exception):
    """The resourceVersion to resume from is too old: the server answered 410 Gone."""


class Backoff:
    """Capped exponential delays with jitter: each delay is drawn from [d/2, d]."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, factor: float = 2.0) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._next = self.initial


class Reflector:
    """Keeps `store` equal to the server's objects of `resource`; `run` is the thread body."""

    def __init__(
        self, api: KubeApi, resource: Resource, store: Store, stop: threading.Event, *,
        page_size: int = 500, backoff: Backoff | None = None,
        watch_seconds: tuple[int, int] = (240, 360),
    ) -> None:
        self.api = api
        self.resource = resource
        self.store = store
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        self.watch_seconds = watch_seconds
        self.synced = threading.Event()
        """Set once the first list has been stored; stays set."""
        self.resource_version: str | None = None
        self._stop = stop
        self._response: urllib3.BaseHTTPResponse | None = None

    @property
    def name(self) -> str:
        return self.resource.plural

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                self._watch()
            except Expired:
                log.info("%s: resourceVersion %s is too old, listing again", self.name,
                         self.resource_version)
                self.resource_version = None
                self._pause("410 Gone")
            except (ApiError, *TransportErrors) as error:
                self._pause(error)
            except Exception:
                log.exception("%s: unexpected failure", self.name)
                self._pause("unexpected failure")
            finally:
                self._response = None

    def close(self) -> None:
        """Unblock a read in progress (call after setting the stop event)."""
        response = self._response
        if response is not None:
            shutdown = getattr(response, "shutdown", None)  # urllib3 >= 2.3
            with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: already released
                (shutdown or response.close)()

    def _pause(self, why: object) -> None:
        if self._stop.is_set():
            return
        delay = self.backoff.next()
        log.warning("%s: %r; retrying in %.1fs", self.name, why, delay)
        self._stop.wait(delay)

    def _list(self) -> None:
        started = time.monotonic()
        pages = _Pages(self)
        count = self.store.replace(pages)
        self.resource_version = pages.resource_version
        first = not self.synced.is_set()
        self.synced.set()
        log.info("%s: %slisted %d in %.2fs at resourceVersion %s", self.name,
                 "" if first else "re", count, time.monotonic() - started,
                 self.resource_version)

    def _watch(self) -> None:
        seconds = random.randint(*self.watch_seconds)
        query = [("watch", "true"), ("resourceVersion", self.resource_version or ""),
                 ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(seconds))]
        try:
            response = self.api.open(
                self.resource.list_path, query, accept=self.resource.object_accept,
                timeout=urllib3.Timeout(connect=10, read=seconds + 30),
            )
        except ApiError as error:
            if error.expired:
                raise Expired from error
            raise
        self._response = response
        try:
            for line in _lines(response):
                if self._stop.is_set():
                    return
                self._handle(orjson.loads(line))
        finally:
            response.release_conn()
        # The server ended the watch (its timeout): a healthy stream, resume at once.
        self.backoff.reset()

    def _handle(self, event: Mapping[str, Any]) -> None:
        event_type = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise ApiError(0, "BadEvent", f"watch event {event_type!r} without an object")
        if event_type == "ERROR":
            error = ApiError.from_status(obj)
            if error.expired:
                raise Expired from error
            raise error
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self.store.apply(event_type, obj)
        elif event_type != "BOOKMARK":
            log.warning("%s: ignoring watch event of type %r", self.name, event_type)
            return
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        self.backoff.reset()


class _Pages:
    """The objects of a paginated list, fetched page by page as they are consumed."""

    def __init__(self, reflector: Reflector) -> None:
        self._reflector = reflector
        self.resource_version: str | None = None

    def __iter__(self) -> Iterator[Object]:
        reflector = self._reflector
        resource = reflector.resource
        token = ""
        while True:
            query = [("limit", str(reflector.page_size))]
            if token:
                query.append(("continue", token))
            try:
                page = reflector.api.get_json(resource.list_path, query,
                                              accept=resource.list_accept,
                                              timeout=urllib3.Timeout(connect=10, read=60))
            except ApiError as error:
                if error.expired:  # the continue token expired: start the list again
                    raise Expired from error
                raise
            metadata = page.get("metadata") or {}
            if self.resource_version is None:
                self.resource_version = metadata.get("resourceVersion") or ""
            yield from page.get("items") or ()
            token = metadata.get("continue") or ""
            if not token:
                return


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The newline-delimited events of a watch, each as soon as its chunk arrives."""
    buffer = b""
    for chunk in response.stream(65536):
        buffer += chunk
        if b"\n" not in buffer:
            continue
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
