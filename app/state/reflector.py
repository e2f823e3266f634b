"""List then watch one kind of object, keeping a store current; in its own thread.

The Kubernetes list/watch protocol, as client-go's reflector speaks it:
- list in pages (`limit`, `continue`), always from an empty resourceVersion (a consistent
  read); the list's `metadata.resourceVersion` is where the watch starts;
- watch with `allowWatchBookmarks=true` and a `timeoutSeconds` drawn from [5 min, 10 min),
  so that replicas do not all reconnect at once; resume from the last resourceVersion seen,
  bookmarks included, so a reconnect replays only what was missed;
- `410 Gone` (an ERROR event whose Status has code 410, or the HTTP status) means that
  resourceVersion is no longer in the server's history, and `504` "Too large resource
  version" that it is ahead of the server (an etcd restore, a lagging replica): list again
  at once, and replace the store;
- a watch that brings neither an event nor a bookmark for `idle_timeout` seconds is taken
  for dead (the API server bookmarks about once a minute) and resumed at once;
- any other failure (a refused connection, an API error, an unreadable event) is retried
  after a jittered exponential backoff, reset by every successful list and every event.
  A stream that was open and broke is resumed at once, a few times in a row at most.
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

from app.k8s.resources import Resource
from app.state.kube_api import (
    ApiError,
    KubeApi,
    TransportErrors,
    list_accept,
    object_accept,
    refusal,
)

log = logging.getLogger(__name__)

Object = Mapping[str, Any]

EXPIRED = "expired"
TOO_LARGE = "too_large_resource_version"
IDLE = "idle"
CLOSED = "closed"
ERROR = "error"
RESTART_REASONS = (EXPIRED, TOO_LARGE, IDLE, CLOSED, ERROR)
"""Why a watch ended, as `migration_policy_webhook_watch_restarts_total` counts it."""

MIN_WATCH_SECONDS = 300
"""client-go's minimum watch timeout; each watch asks for between this and twice this."""

AT_ONCE_LIMIT = 3
"""Retries without a pause in a row, before the backoff applies (no hot loop against a
server that keeps answering 410, or closing streams as soon as they open)."""

STEADY_WATCH_SECONDS = 1.0
"""A watch open this long before it ended starts the count of retries at once anew: a
server without bookmarks has idle watches end every idle timeout, and that is no loop."""


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


class Relist(Exception):
    """The resourceVersion to resume from cannot be used (410, or too large): list again."""

    def __init__(self, reason: str, error: ApiError) -> None:
        super().__init__(str(error))
        self.reason = reason
        self.error = error


class WatchIdle(Exception):
    """The watch brought neither an event nor a bookmark for the idle timeout."""


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


def _relist_or_raise(error: ApiError) -> Relist | ApiError:
    if error.expired:
        return Relist(EXPIRED, error)
    if error.too_large_resource_version:
        return Relist(TOO_LARGE, error)
    return error


class Reflector:
    """Keeps `store` equal to the server's objects of `resource`; `run` is the thread body.

    Its figures (`restarts`, `last_list_at`, `last_event_at`) are written by its own thread
    only and read by others (metrics, staleness) as plain attribute reads.
    """

    def __init__(
        self, api: KubeApi, resource: Resource, store: Store, stop: threading.Event, *,
        page_size: int = 500, backoff: Backoff | None = None,
        min_watch_seconds: int = MIN_WATCH_SECONDS, idle_timeout: float = 90.0,
    ) -> None:
        self.api = api
        self.resource = resource
        self.store = store
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        self.min_watch_seconds = min_watch_seconds
        self.idle_timeout = idle_timeout
        self.synced = threading.Event()
        """Set once the first list has been stored; stays set."""
        self.resource_version: str | None = None
        self.restarts: dict[str, int] = dict.fromkeys(RESTART_REASONS, 0)
        """Watches ended, by reason."""
        self.last_list_at: float | None = None
        """`time.monotonic()` of the last successful list."""
        self.last_event_at: float | None = None
        """`time.monotonic()` of the last watch event or bookmark."""
        self._stop = stop
        self._response: urllib3.BaseHTTPResponse | None = None
        self._at_once = 0
        self._streaming = False
        self._opened_at = 0.0

    @property
    def name(self) -> str:
        return self.resource.plural

    @property
    def confirmed_at(self) -> float | None:
        """When the server last confirmed the store (a list, an event or a bookmark)."""
        if self.last_event_at is None or self.last_list_at is None:
            return self.last_list_at
        return max(self.last_list_at, self.last_event_at)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None and not self._list_once():
                    continue
                self._watch_once()
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

    def _list_once(self) -> bool:
        """List into the store; False (after the pause it calls for) if that failed."""
        try:
            self._list()
        except Relist as relist:  # the continue token expired: start the list again
            self._retry(logging.INFO, f"the list expired ({relist.error}); listing again",
                        at_once=True)
            return False
        except (ApiError, *TransportErrors) as error:
            self._pause(self._describe(error, "list"))
            return False
        return True

    def _watch_once(self) -> None:
        """Watch until the stream ends; count why it ended and wait as that calls for."""
        at_once = True
        try:
            self._watch()
        except Relist as relist:
            self.resource_version = None
            reason = relist.reason
            level = logging.INFO if reason == EXPIRED else logging.WARNING
            why = f"cannot resume the watch ({relist.error}); listing again"
        except WatchIdle:
            reason, level = IDLE, logging.WARNING
            why = (f"the watch brought no event or bookmark for {self.idle_timeout:g} s: "
                   f"closed, resuming from resourceVersion {self.resource_version}")
        except (ApiError, *TransportErrors) as error:
            reason, level, why = ERROR, logging.WARNING, self._describe(error, "watch")
            at_once = self._streaming  # a refused watch backs off; a broken stream not
        else:
            reason, level, why = CLOSED, logging.DEBUG, "the server ended the watch; resuming"
        if self._stop.is_set():
            return
        self.restarts[reason] += 1
        if self._streaming and time.monotonic() - self._opened_at >= STEADY_WATCH_SECONDS:
            self._at_once = 0  # a watch that ran a while is no hot loop
        self._retry(level, why, at_once=at_once)

    def _describe(self, error: ApiError | Exception, verb: str) -> str:
        if isinstance(error, ApiError) and error.refused:
            return refusal(error, verb, self.resource)
        return f"{verb} failed: {error!r}"

    def _progress(self) -> None:
        """A list or an event arrived: failures start over from the shortest delay."""
        self.backoff.reset()
        self._at_once = 0

    def _retry(self, level: int, why: str, *, at_once: bool) -> None:
        if self._stop.is_set():
            return
        if at_once and self._at_once < AT_ONCE_LIMIT:
            self._at_once += 1
            log.log(level, "%s: %s; retrying at once", self.name, why)
            return
        self._pause(why)

    def _pause(self, why: str) -> None:
        if self._stop.is_set():
            return
        delay = self.backoff.next()
        log.warning("%s: %s; retrying in %.1fs", self.name, why, delay)
        self._stop.wait(delay)

    def _list(self) -> None:
        started = time.monotonic()
        pages = _Pages(self)
        count = self.store.replace(pages)
        self.resource_version = pages.resource_version
        self.last_list_at = time.monotonic()
        self._progress()
        first = not self.synced.is_set()
        self.synced.set()
        log.info("%s: %slisted %d in %.2fs at resourceVersion %s", self.name,
                 "" if first else "re", count, self.last_list_at - started,
                 self.resource_version)

    def _watch(self) -> None:
        """One watch, until its stream ends; `_streaming` once the server has accepted it."""
        self._streaming = False
        seconds = int(self.min_watch_seconds * (random.random() + 1.0))
        query = [("watch", "true"), ("resourceVersion", self.resource_version or ""),
                 ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(seconds))]
        try:
            # The read timeout is the idle timeout: no byte for that long, and it is dead.
            response = self.api.open(
                self.resource.list_path, query, accept=object_accept(self.resource),
                timeout=urllib3.Timeout(connect=10, read=self.idle_timeout),
            )
        except ApiError as error:
            raise _relist_or_raise(error) from None
        self._response = response
        self._streaming = True
        self._opened_at = time.monotonic()
        try:
            for line in _lines(response):
                if self._stop.is_set():
                    return
                self._handle(orjson.loads(line))
        except urllib3.exceptions.ReadTimeoutError as error:
            raise WatchIdle from error
        finally:
            response.release_conn()

    def _handle(self, event: Mapping[str, Any]) -> None:
        event_type = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise ApiError(0, "BadEvent", f"watch event {event_type!r} without an object")
        if event_type == "ERROR":
            raise _relist_or_raise(ApiError.from_status(obj))
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self.store.apply(event_type, obj)
        elif event_type != "BOOKMARK":
            log.warning("%s: ignoring watch event of type %r", self.name, event_type)
            return
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        self.last_event_at = time.monotonic()
        self._progress()


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
                                              accept=list_accept(resource),
                                              timeout=urllib3.Timeout(connect=10, read=60))
            except ApiError as error:
                raise _relist_or_raise(error) from None
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
