"""The list and watch protocol of the stand-in, as client-go's reflectors use it."""

import base64
import time
from collections.abc import Callable, Iterator

import orjson

from tests.support.kubeapi.faults import Faults
from tests.support.kubeapi.http_server import Request
from tests.support.kubeapi.resources import JSON, META_API_VERSION, Object, Resource, status


class ListWatch(Faults):
    """LIST (paginated over a consistent snapshot) and WATCH (replayed from the history,
    with BOOKMARKs, expiry and the faults of `Faults`) of one resource."""

    expire_with_http_status: bool
    too_large_as_event: bool
    bookmark_interval: float | None
    bookmarks_sent: int
    active_watches: int
    _epoch: int
    _snapshot_ids: Iterator[int]

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
                    "metadata": metadata, "items": [partial(obj) for obj in page]}
            request.send_json(200, body, partial_type("PartialObjectMetadataList"))
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
            shown = partial(obj) if request.metadata_only and event_type != "ERROR" else obj
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
        content_type = (partial_type("PartialObjectMetadata") if request.metadata_only
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


def partial(obj: Object) -> Object:
    return {"apiVersion": META_API_VERSION, "kind": "PartialObjectMetadata",
            "metadata": obj.get("metadata", {})}


def partial_type(kind: str) -> str:
    return f"application/json;as={kind};g=meta.k8s.io;v=v1"


def _encode_token(snapshot_id: int, offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([snapshot_id, offset])).decode()


def _decode_token(token: str) -> tuple[int, int]:
    try:
        snapshot_id, offset = orjson.loads(base64.urlsafe_b64decode(token))
        return int(snapshot_id), int(offset)
    except (ValueError, TypeError):
        return -1, 0
