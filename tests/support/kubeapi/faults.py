"""The faults tests inject into the stand-in, as a failing API server or network makes them."""

import contextlib
import threading
from collections.abc import Iterator

from tests.support.kubeapi.resources import Object, Resource
from tests.support.kubeapi.store import ObjectStore, with_metadata


class Faults(ObjectStore):
    """What tests break under a client: compaction, cut or silent watches, a restore from
    an older backup, held events and GETs, injected error statuses."""

    _snapshots: dict[int, tuple[int, list[Object]]]
    _cut_generation: int
    _bookmark_generation: int
    _silence_generation: int
    _held: bool
    _faults: dict[tuple[str, str], int]
    _gets_open: threading.Event

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
                        objects[key] = with_metadata(obj, resourceVersion=str(self._rv))
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


    def heal(self) -> None:
        self._faults.clear()
