"""The limits of one connection, in uvicorn's httptools protocol.

uvicorn gives a keep-alive timeout, read flow control (a connection stops being read once
64 KiB of its body wait for the app) and one `limit_concurrency` that counts connections
and requests together. What a webhook on the API server's write path also needs is added
here, in the protocol, where the bytes arrive:

- a read deadline: a request's headers and whole body within `--request-read-timeout` of
  its first byte (of the connection's opening, for its first request), else the connection
  is closed; the TLS handshake has the same deadline (given to `create_server`);
- the deadlines, the read one and uvicorn's keep-alive, as times that the listener checks
  every second (`check_deadlines`), to the second: a timer armed and cancelled twice per
  request cost about 4 µs of it over TLS;
- caps answered with 503 rather than queued: open connections (`--max-connections`),
  requests in progress (`--max-concurrent-requests`), and the memory of request bodies
  being received (`BodyBudget`);
- 414 for a URL longer than `MAX_URL_BYTES`, 431 for a header section larger than
  `MAX_HEADER_BYTES` or with more than `MAX_HEADERS` fields; httptools itself has no limit.
"""

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

MAX_URL_BYTES = 8 * 1024
"""The request target, path and query (nginx's default buffer is 8 KiB as well)."""
MAX_HEADER_BYTES = 64 * 1024
"""The request line and every header field together."""
MAX_HEADERS = 100
"""Header fields in one request (Apache's LimitRequestFields)."""
BODY_BUDGET_BYTES = 32 * 1024 * 1024
"""Request bodies being received at once, all connections together (at least one body of
the largest size --max-body-bytes allows): beyond, a request is answered 503."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


@dataclass
class BodyBudget:
    """Bytes of request bodies that may be held at once; a request reserves its
    Content-Length (or the body limit, when the length is not given) before it is read."""

    limit: int
    in_use: int = 0

    def reserve(self, size: int) -> bool:
        if size and self.in_use + size > self.limit:
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size


@dataclass
class Receiving:
    """Requests whose body is arriving outside an ASGI task (app/serving/inline_reviews.py):
    in progress as much as a task is, for --max-concurrent-requests."""

    count: int = 0


class Unavailable:
    """An app that answers 503 with `message`, and closes the connection."""

    def __init__(self, message: str) -> None:
        self.message = message
        body = orjson.dumps({"error": message})
        self._start = {"type": "http.response.start", "status": 503,
                       "headers": [(b"content-type", b"application/json"),
                                   (b"content-length", str(len(body)).encode()),
                                   (b"retry-after", b"1"), (b"connection", b"close")]}
        self._body = {"type": "http.response.body", "body": body}

    async def __call__(self, _scope: Scope, _receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        await send(self._start)
        await send(self._body)


@dataclass(frozen=True)
class Limits:
    """What every connection of one listener is held to."""

    request_read_timeout: float
    max_connections: int
    max_concurrent_requests: int
    max_body_bytes: int
    body_budget: BodyBudget = field(compare=False)
    receiving: Receiving = field(default_factory=Receiving, compare=False)
    max_url_bytes: int = MAX_URL_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS

    @functools.cached_property
    def too_many_connections(self) -> Unavailable:
        return Unavailable(f"more than {self.max_connections} open connections "
                           "(--max-connections): retry on another connection later")

    @functools.cached_property
    def too_many_requests(self) -> Unavailable:
        return Unavailable(f"more than {self.max_concurrent_requests} requests in progress "
                           "(--max-concurrent-requests): retry later")

    @functools.cached_property
    def bodies_too_large(self) -> Unavailable:
        return Unavailable(f"request bodies being received hold {self.body_budget.limit} "
                           "bytes already: retry later")


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that is answered already."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a read deadline, connection, request and body
    memory caps, and limits on the URL and the header section."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 limits: Limits, _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._app: ASGIApp = self.app
        self._reading_since: float | None = None
        """Loop time when the request being received began (the connection, for its first)."""
        self._idle_since: float | None = None
        """Loop time since which the connection has waited for its next request."""
        self._in_headers = False
        self._pending_header_bytes = 0
        """Bytes received since the request began, in reads that ended before its headers
        did (httptools buffers a header field until it ends)."""
        self._chunk_bytes = 0
        """The size of the read being parsed."""
        self._reserved = 0
        self._refused = False
        self._beyond_cap = False
        """Opened while --max-connections were open already: its requests get 503."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._beyond_cap = len(self.connections) > self.limits.max_connections
        self._reading_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release_body()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the size of a header section still incomplete."""
        if self._refused:
            return
        self._idle_since = None
        self._chunk_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._refused:
                return
            self._invalid()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return
        if self._in_headers:
            self._pending_header_bytes += len(data)
            if self._pending_header_bytes > self.limits.max_header_bytes:
                self._headers_too_large()

    def on_message_begin(self) -> None:
        """uvicorn's, but the ASGI scope is made only for a request that takes the ASGI
        way (`_start_cycle`): one answered inline needs none."""
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._in_headers = True
        self._pending_header_bytes = 0
        if self._reading_since is None:
            self._reading_since = self.loop.time()

    def on_headers_complete(self) -> None:
        """Refuse a URL or header section beyond its limit; admit the request, or answer
        503 naming the cap it is beyond."""
        self._in_headers = False
        limits = self.limits
        if len(self.url) > limits.max_url_bytes:
            self._refuse(414, f"the URL is longer than {limits.max_url_bytes} bytes")
            raise _Refused
        if len(self.headers) > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} header fields")
            raise _Refused
        if (self._pending_header_bytes + self._chunk_bytes > limits.max_header_bytes
                and self._header_section_bytes() > limits.max_header_bytes):
            self._headers_too_large()
            raise _Refused
        self.app = self._admit()
        self._start_cycle()

    def _start_cycle(self) -> None:
        """uvicorn's end of the headers: the ASGI request cycle of this request, with the
        scope uvicorn makes when a message begins (it resets the URL and headers, which
        are put back)."""
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect_100_continue
        self.headers.extend(headers)  # the list the scope holds
        super().on_headers_complete()

    def _header_section_bytes(self) -> int:
        """The URL and header fields as sent (counted only when the bytes read while the
        headers came in could be over the limit, so a usual request costs no loop)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_message_complete(self) -> None:
        self._reading_since = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timer a time (`_idle_since`) instead."""
        self._release_body()
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.loop.time()

    def check_deadlines(self, now: float) -> None:
        """Close the connection if its request has taken longer than the read deadline to
        arrive, or if it has been idle for the keep-alive timeout."""
        if self.transport.is_closing():
            return
        reading_since, idle_since = self._reading_since, self._idle_since
        if reading_since is not None and now - reading_since >= self.limits.request_read_timeout:
            log.debug("closed the connection from %s: a request was not received within "
                      "%s s (--request-read-timeout)", _peer(self.client),
                      self.limits.request_read_timeout)
            self.transport.close()
        elif idle_since is not None and now - idle_since >= self.timeout_keep_alive:
            self.transport.close()

    def _admit(self) -> ASGIApp:
        size = self._body_size()
        limits = self.limits
        if self._beyond_cap:
            refusal = limits.too_many_connections
        elif len(self.tasks) + limits.receiving.count >= limits.max_concurrent_requests:
            refusal = limits.too_many_requests
        elif not limits.body_budget.reserve(size):
            refusal = limits.bodies_too_large
        else:
            self._reserved += size  # a pipelined request adds to the one before it
            return self._app
        log.warning("answered 503 to %s: %s", _peer(self.client), refusal.message)
        return refusal

    def _body_size(self) -> int:
        """The bytes this request's body may take: its Content-Length, 0 when that is over
        the body limit (the app answers 413 without reading it), or the limit when the body
        comes in chunks of unknown total."""
        limit = self.limits.max_body_bytes
        for name, value in self.headers:
            if name == b"content-length":
                size = int(value) if value.isdigit() else 0
                return size if size <= limit else 0
        chunked = any(name == b"transfer-encoding" for name, _ in self.headers)
        return limit if chunked else 0

    def _release_body(self) -> None:
        self.limits.body_budget.release(self._reserved)
        self._reserved = 0

    def _headers_too_large(self) -> None:
        self._refuse(431, f"the header section is larger than {self.limits.max_header_bytes} "
                          "bytes")

    def _invalid(self) -> None:
        log.debug("closed the connection from %s: not a valid HTTP/1.1 request",
                  _peer(self.client))
        self._refuse(400, "not a valid HTTP/1.1 request")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` before the request reaches the app, and close."""
        self._refused = True
        self._reading_since = None
        self.transport.write(response(header_lines(self.server_state.default_headers), status,
                                      orjson.dumps({"error": message}), close=True))
        self.transport.close()


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header fields as they are written, each `name: value` and CRLF."""
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


def response(default_header_lines: bytes, status: int, body: bytes, *, close: bool) -> bytes:
    """A whole JSON response, head and body, to be written at once."""
    return b"%s%s%s%s\r\n%s" % (
        STATUS_LINE[status], default_header_lines,
        b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
        b"connection: close\r\n" if close else b"", body)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"
