"""ASGI middleware for what is per request, on every path of a listener.

- requests in progress (`--max-concurrent-requests`), from the end of their headers to the
  end of their answer, body reception included: beyond, 503, not queued;
- the memory of bodies being received, all the listener's requests together: a request
  reserves its Content-Length (the body limit when it comes in chunks) before it is read;
  beyond the budget, 503;
- a declared Content-Length over `--max-body-bytes`: 413 at once, the body unread (a
  chunked body is counted as it arrives by whoever reads it: app/serving/review_endpoint.py);
- an exception that escapes the app: one ERROR line with its traceback, and a 500 that
  says so, not an answer that blames the client;
- every answer carries `date`, and `connection: close` once the listener is draining.

It tells the request's connection (app/serving/edge.py) when the app is done with it.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import NamedTuple

import orjson

from app.serving.asgi import ASGIApp, Message, Receive, Scope, Send
from app.serving.edge import CONNECTION, EdgeConnection
from app.serving.review_endpoint import body_too_large

log = logging.getLogger(__name__)

BODY_BUDGET_BYTES = 32 * 1024 * 1024
"""Request bodies being received at once, on one listener (at least one body of the
largest size --max-body-bytes allows): beyond, a request is answered 503."""
CLOSE = (b"connection", b"close")


@dataclass
class BodyBudget:
    """Bytes of request bodies that may be held at once."""

    limit: int
    in_use: int = 0

    def reserve(self, size: int) -> bool:
        if size and self.in_use + size > self.limit:
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size


class HttpDate:
    """The `date` header's value, made once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


class Refusal(NamedTuple):
    """A JSON error answer, made once; it closes the connection."""

    status: int
    message: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @classmethod
    def of(cls, status: int, message: str, *extra: tuple[bytes, bytes]) -> "Refusal":
        body = orjson.dumps({"error": message})
        return cls(status, message, [(b"content-type", b"application/json"),
                                     (b"content-length", str(len(body)).encode()),
                                     *extra, CLOSE], body)


class RequestLimits:
    """Wraps one listener's app with the per-request limits; the counters are this
    listener's own. `refused(path, status)` is told of each 413 and 503."""

    def __init__(self, app: ASGIApp, *, max_concurrent_requests: int, max_body_bytes: int,
                 body_budget_bytes: int = BODY_BUDGET_BYTES,
                 draining: Callable[[], bool] = lambda: False,
                 refused: Callable[[str, int], None] = lambda _path, _status: None) -> None:
        self.app = app
        self.max_concurrent_requests = max_concurrent_requests
        self.max_body_bytes = max_body_bytes
        self.budget = BodyBudget(max(body_budget_bytes, max_body_bytes))
        self.in_progress = 0
        self.draining = draining
        self.refused = refused
        self.date = HttpDate()
        retry = (b"retry-after", b"1")
        self.too_many_requests = Refusal.of(
            503, f"more than {max_concurrent_requests} requests in progress "
            "(--max-concurrent-requests): retry later", retry)
        self.bodies_too_large = Refusal.of(
            503, "request bodies being received would take more than the "
            f"{self.budget.limit} bytes they may hold at once: retry later", retry)
        self.body_too_large = Refusal.of(
            413, body_too_large(max_body_bytes))
        self.failed = Refusal.of(
            500, "an internal error in migration-policy-webhook, logged by it; "
            "try again or report it")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.get("state")
        connection: EdgeConnection | None = state.get(CONNECTION) if state else None
        size = self._body_size(scope["headers"])
        refusal = None
        if size > self.max_body_bytes:
            refusal = self.body_too_large
        elif self.in_progress >= self.max_concurrent_requests:
            refusal = self.too_many_requests
        elif not self.budget.reserve(size):
            refusal = self.bodies_too_large
        if refusal is not None:
            try:
                await self._refuse(scope, send, refusal)
            finally:
                if connection is not None:
                    connection.request_finished()
            return
        self.in_progress += 1
        answer = _Answer(send, self.date.now(), self.draining)
        try:
            await self.app(scope, receive, answer.send)
        except Exception:
            log.exception("answering %s %s failed", scope["method"], scope["path"])
            if not answer.started:
                await self._answer(send, self.failed)
        finally:
            self.in_progress -= 1
            self.budget.release(size)
            if connection is not None:
                connection.request_finished()

    async def _refuse(self, scope: Scope, send: Send, refusal: Refusal) -> None:
        if refusal.status == 503:
            log.warning("answered 503 to %s: %s", _peer(scope), refusal.message)
        self.refused(scope["path"], refusal.status)
        await self._answer(send, refusal)

    async def _answer(self, send: Send, refusal: Refusal) -> None:
        await send({"type": "http.response.start", "status": refusal.status,
                    "headers": [(b"date", self.date.now()), *refusal.headers]})
        await send({"type": "http.response.body", "body": refusal.body})

    def _body_size(self, headers: list[tuple[bytes, bytes]]) -> int:
        """The bytes this request's body may take: its Content-Length, or the body limit
        when it comes in chunks of unknown total."""
        chunked = False
        for name, value in headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
            if name == b"transfer-encoding":
                chunked = True
        return self.max_body_bytes if chunked else 0


class _Answer:
    """The app's `send`, with the date (and `connection: close` once the listener is
    draining) added.

    `send` returns the awaitable of the server's own `send` rather than awaiting it in a
    coroutine of its own: one frame less on every message of every answer."""

    __slots__ = ("_date", "_draining", "_send", "started")

    def __init__(self, send: Send, date: bytes, draining: Callable[[], bool]) -> None:
        self._send = send
        self._date = date
        self._draining = draining
        self.started = False

    def send(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.started = True
            headers = [(b"date", self._date), *message.get("headers", ())]
            if self._draining():
                headers.append(CLOSE)
            message = {**message, "headers": headers}
        return self._send(message)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"
