"""The edge of a listener: an asyncio protocol in front of uvicorn's, one per connection.

uvicorn's HTTP protocol is used as uvicorn uses it, through the asyncio protocol interface
only: constructed from the class `uvicorn.Config` resolves, handed a transport, fed bytes.
`EdgeConnection` sees every byte first, with a parser of its own (httptools' public one,
callbacks only for what it needs), and holds each connection to what a webhook on the API
server's write path needs whatever a client sends:

- the connection cap (`--max-connections`): a connection opened beyond it has its first
  request answered 503, then is closed;
- the URL (414) and header section (431) limits, before uvicorn sees the headers whole;
- deadlines, checked by `Edge.sweep` once a second: a request from its first byte (any
  byte, a stray CRLF too) to the end of its body (`--request-read-timeout`); an idle
  connection (`--keep-alive-timeout`); a client that takes none of the answer's bytes for
  the read timeout (write backpressure); a connection closing for longer than
  `CLOSE_GRACE_SECONDS` is aborted. While the app works on a request no deadline runs:
  the app bounds its own time;
- at most `MAX_PIPELINED` requests of one connection with the app at once: further bytes
  wait unread, so a client that sends requests and never reads holds bounded memory.

The per-request limits (requests in progress, body size and memory, 503, 413) are ASGI
middleware (app/serving/request_limits.py), which tells the connection when the app is
done with a request (`request_finished`); it finds the connection in the request scope's
`state`, a copy of the per-connection `app_state` uvicorn is constructed with.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

import httptools
import orjson

log = logging.getLogger(__name__)

MAX_URL_BYTES = 8 * 1024
"""The request target, path and query (nginx's default buffer is 8 KiB as well)."""
MAX_HEADER_BYTES = 64 * 1024
"""The request line and every header field together."""
MAX_HEADERS = 100
"""Header fields in one request (Apache's LimitRequestFields)."""
MAX_PIPELINED = 8
"""Requests of one connection with the app at once; further bytes wait unread."""
CLOSE_GRACE_SECONDS = 2.0
"""A connection still not gone this long after it was closed (a peer that reads nothing,
so the last bytes never leave) is aborted."""
CONNECTION = "migration_policy_webhook.connection"
"""The key of the `EdgeConnection` in a request scope's `state`."""
HEADER_END = b"\r\n\r\n"

AppProtocolFactory = Callable[[dict[str, Any]], asyncio.Protocol]
"""Makes the app's protocol (uvicorn's) for a connection, given that connection's app state."""


@dataclass(frozen=True)
class EdgeLimits:
    """What every connection of one listener is held to."""

    request_read_timeout: float
    keep_alive_timeout: float
    max_connections: int
    max_url_bytes: int = MAX_URL_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS


class Edge:
    """One listener's connections, their limits, and the sweep of their deadlines."""

    def __init__(self, limits: EdgeLimits, app_protocol: AppProtocolFactory,
                 clock: Callable[[], float] | None = None) -> None:
        self.limits = limits
        self.app_protocol = app_protocol
        self.clock = clock or asyncio.get_running_loop().time
        self.connections: set[EdgeConnection] = set()
        self.draining = False
        """Shutdown has begun: each connection closes once its requests are answered."""

    def connection(self) -> "EdgeConnection":
        """The protocol factory given to `loop.create_server`."""
        return EdgeConnection(self)

    def sweep(self) -> None:
        """Close every connection past one of its deadlines (called once a second)."""
        now = self.clock()
        for connection in list(self.connections):
            connection.check_deadlines(now)

    def drain(self) -> None:
        """Close idle connections now, busy ones once their requests are answered."""
        self.draining = True
        for connection in list(self.connections):
            connection.close_when_idle()

    def close_all(self) -> None:
        """Cut what is left: at the end of the grace period, or of a probe port."""
        for connection in list(self.connections):
            connection.abort()


class _Refused(Exception):
    """Raised in a parser callback: the request is refused, stop parsing."""


class EdgeConnection(asyncio.Protocol):
    """One connection: sees its bytes first, hands them to the app's protocol."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.limits = edge.limits
        self.transport: asyncio.Transport | None = None
        self.app: asyncio.Protocol | None = None
        """uvicorn's protocol; None for a connection beyond the cap."""
        self.app_transport: AppTransport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # the same leniency as uvicorn's parser, so that both see the same requests
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.peer = "an unknown peer"
        self.reading_since: float | None = None
        """When the request being received began (the connection's opening, for its first)."""
        self.idle_since: float | None = None
        """Since when the connection has had nothing to do."""
        self.stalled_since: float | None = None
        """Since when the client has taken none of our bytes (writing paused)."""
        self.closing_since: float | None = None
        self.with_app = 0
        """Requests handed to the app and not finished by it."""
        self.held = b""
        """Bytes not parsed yet: they wait until the app has fewer than MAX_PIPELINED."""
        self.edge_paused = False
        self.app_paused = False
        self.refused = False
        self.upgraded = False
        """The request asked for an upgrade: answered as HTTP/1.1, then the connection
        closes (the parser reads nothing after an upgrade)."""
        self.close_when_done = False
        # the request being parsed
        self.in_headers = False
        self.url_room = 0
        """Bytes the URL may still take."""
        self.header_room = 0
        """Bytes the request line and header fields may still take."""
        self.fields_room = 0
        """Header fields the request may still have."""
        self.pending_header_bytes = 0
        self.body_bytes = 0
        """Body bytes the parser has reported, all requests together."""
        self.message_body_bytes = 0
        self.content_length = 0
        """The request's Content-Length (0 when it has none)."""
        self.framing_bytes = 0
        """Bytes of the request after its headers that are not body (chunk framing,
        trailers)."""

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream's (uvloop's: no subclass)
        edge = self.edge
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        beyond_cap = len(edge.connections) >= self.limits.max_connections
        edge.connections.add(self)
        self.reading_since = edge.clock()
        if beyond_cap:
            return  # no app: its first request is refused once its headers are in
        self.app = edge.app_protocol({CONNECTION: self})
        self.app_transport = AppTransport(transport, self)
        self.app.connection_made(self.app_transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.connections.discard(self)
        self.held = b""
        if self.app is not None:
            self.app.connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self.app is not None:
            return self.app.eof_received()
        return None

    def pause_writing(self) -> None:
        self.stalled_since = self.edge.clock()
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        self.stalled_since = None
        if self.app is not None:
            self.app.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.refused or self.upgraded:
            return
        if self.held:
            self.held += data
            return
        self._receive(data)

    # feeding the parser and the app

    def _receive(self, data: bytes) -> None:
        """Parse and hand on `data`; where it holds several header sections, one at a
        time, so that no more than MAX_PIPELINED requests reach the app at once."""
        if not two_header_ends(data):  # the usual case: one request or part of one
            if self._full():
                self._hold(data)
            else:
                self._feed(data)
            return
        start = 0
        while start < len(data) and not self.refused:
            if self._full():
                self._hold(data[start:])
                return
            cut = self._next_cut(data, start)
            self._feed(data[start:cut])
            start = cut

    def _next_cut(self, data: bytes, start: int) -> int:
        """Where the next piece to parse ends: the end of the body being received when its
        length is known, so that a piece ends where a request does; else the end of the
        next header section."""
        if self.reading_since is not None and not self.in_headers and self.content_length:
            return min(len(data), start + self.content_length - self.message_body_bytes)
        end = data.find(HEADER_END, start)
        return len(data) if end < 0 else end + len(HEADER_END)

    def _feed(self, data: bytes) -> None:
        """Parse `data` and hand it to the app. Its first byte starts the read deadline
        (held bytes start it only when they are parsed: until then the app has the
        connection's requests, and no deadline runs)."""
        if self.reading_since is None:
            self.reading_since = self.edge.clock()
            self.idle_since = None
        began_before = self.in_headers
        past_headers = self.reading_since is not None and not self.in_headers
        body_before = self.body_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            return  # refused in a callback, answered there
        except httptools.HttpParserUpgrade:
            self.upgraded = True  # no upgrades: answered as HTTP/1.1, then closed
        except httptools.HttpParserError:
            log.debug("refused a request from %s: not a valid HTTP/1.1 request", self.peer)
            self._refuse(HTTPStatus.BAD_REQUEST, "not a valid HTTP/1.1 request")
            return
        if self.in_headers and began_before:
            # bytes of a header field still incomplete, which the parser buffers whole
            # (counted from the read after the one the request began in)
            self.pending_header_bytes += len(data)
            if self.pending_header_bytes > self.limits.max_header_bytes:
                self._refuse_headers()
                return
        if past_headers and self.reading_since is not None and not self.in_headers:
            # what is neither body nor headers: chunk framing and trailer fields, which the
            # parser buffers whole like header fields
            self.framing_bytes += len(data) - (self.body_bytes - body_before)
            if self.framing_bytes > self.limits.max_header_bytes:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                             "the chunk framing and trailers are larger than "
                             f"{self.limits.max_header_bytes} bytes")
                return
        if self.app is not None:  # None beyond the cap: refused once its headers are in
            self.app.data_received(data)

    def _full(self) -> bool:
        """The app has MAX_PIPELINED requests of this connection, and none is still being
        received (the body of one the app has is never held back from it)."""
        return self.with_app >= MAX_PIPELINED and self.reading_since is None

    def _hold(self, data: bytes) -> None:
        self.held = data
        self.reading(edge_paused=True)

    def _release_held(self) -> None:
        """Parse what was held once the app has room for it."""
        if not self.held or self._full() or self.is_closing():
            return
        held, self.held = self.held, b""
        self._receive(held)
        if not self.held:
            self.reading(edge_paused=False)

    # httptools callbacks

    def on_message_begin(self) -> None:
        limits = self.limits
        self.in_headers = True
        self.url_room = limits.max_url_bytes
        self.header_room = limits.max_header_bytes
        self.fields_room = limits.max_headers
        self.content_length = self.pending_header_bytes = 0
        self.idle_since = None
        if self.reading_since is None:
            self.reading_since = self.edge.clock()

    def on_url(self, url: bytes) -> None:
        self.url_room -= len(url)
        self.header_room -= len(url)
        if self.url_room < 0:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG,
                         f"the URL is longer than {self.limits.max_url_bytes} bytes")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields_room -= 1
        self.header_room -= len(name) + len(value) + 4  # ": " and CRLF
        if len(name) == 14 and name.lower() == b"content-length" and value.isdigit():
            self.content_length = int(value)
        if self.fields_room < 0:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"more than {self.limits.max_headers} header fields")
            raise _Refused
        if self.header_room < 0:
            self._refuse_headers()
            raise _Refused

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.framing_bytes = self.message_body_bytes = 0
        if self.app is None:  # opened beyond the cap
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE,
                         f"more than {self.limits.max_connections} open connections "
                         "(--max-connections): retry on another connection later")
            raise _Refused
        self.with_app += 1

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        self.message_body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.reading_since = None
        if not self.with_app:  # its answer went before its body ended: nothing left to do
            self._settle()

    # told by the request middleware

    def request_finished(self) -> None:
        """The app is done with one request (answered, refused, or its client gone)."""
        self.with_app -= 1
        if self.is_closing():
            return
        if self.held:
            if not self._full():
                asyncio.get_running_loop().call_soon(self._release_held)
        elif not self.with_app and self.reading_since is None:
            self._settle()

    def _settle(self) -> None:
        """Nothing in progress: the connection is idle, or closes if it is to."""
        if self.close_when_done or self.upgraded or self.edge.draining:
            self.close()
        else:
            self.idle_since = self.edge.clock()

    # deadlines and closing

    def check_deadlines(self, now: float) -> None:
        limits = self.limits
        if self.closing_since is None and self.is_closing():
            self.closing_since = now  # closed by the transport itself (the peer's EOF)
        if self.closing_since is not None:
            if now - self.closing_since >= CLOSE_GRACE_SECONDS:
                self.abort()
        elif self.reading_since is not None and (
                now - self.reading_since >= limits.request_read_timeout):
            log.debug("closed the connection from %s: a request was not received within "
                      "%s s (--request-read-timeout)", self.peer, limits.request_read_timeout)
            self.close()
        elif self.stalled_since is not None and (
                now - self.stalled_since >= limits.request_read_timeout):
            log.debug("closed the connection from %s: it took none of the answer for %s s",
                      self.peer, limits.request_read_timeout)
            self.abort()
        elif self.idle_since is not None and now - self.idle_since >= limits.keep_alive_timeout:
            self.close()

    def close_when_idle(self) -> None:
        """At shutdown: close now unless a request is with the app (its headers in);
        else once it is answered."""
        if self.with_app == 0:
            self.close()
        else:
            self.close_when_done = True

    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.app_transport is not None:
                self.app_transport.flush()  # what the app wrote this turn goes out first
            self.closing_since = self.edge.clock()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def app_closed(self) -> None:
        """The app closed the connection (uvicorn, after `connection: close`)."""
        if self.closing_since is None:
            self.closing_since = self.edge.clock()

    def reading(self, *, edge_paused: bool | None = None,
                app_paused: bool | None = None) -> None:
        """Reading is paused while the edge or the app (uvicorn's flow control) wants it
        paused, and resumes when neither does."""
        was_paused = self.edge_paused or self.app_paused
        if edge_paused is not None:
            self.edge_paused = edge_paused
        if app_paused is not None:
            self.app_paused = app_paused
        paused = self.edge_paused or self.app_paused
        if paused != was_paused and self.transport is not None:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # refusals, written before the request reaches the app

    def _refuse_headers(self) -> None:
        self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                     f"the header section is larger than {self.limits.max_header_bytes} bytes")

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer `status` with `message`, and close; if the app still has requests of
        this connection, their answers would be interleaved: close without one."""
        self.refused = True
        self.reading_since = None
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            log.warning("answered 503 to %s: %s", self.peer, message)
        if self.with_app:
            self.abort()
            return
        if self.app_transport is not None:
            self.app_transport.flush()  # an answer of the app's still to be written goes first
        if self.transport is not None:
            self.transport.write(refusal(status, message))
        self.close()


def two_header_ends(data: bytes) -> bool:
    """Whether `data` holds two header section ends (`data.count(HEADER_END) >= 2`). After
    the first, a body rarely holds a CR at all (JSON from the API server never does), and
    looking for one byte is several times quicker than for four: a body is read once."""
    first = data.find(HEADER_END)
    return (first >= 0 and data.find(b"\r", first + len(HEADER_END)) >= 0
            and data.find(HEADER_END, first + len(HEADER_END)) >= 0)


def refusal(status: HTTPStatus, message: str) -> bytes:
    """A whole JSON response that closes the connection, head and body."""
    body = orjson.dumps({"error": message})
    retry = b"retry-after: 1\r\n" if status == HTTPStatus.SERVICE_UNAVAILABLE else b""
    return (b"HTTP/1.1 %d %s\r\ndate: %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n%sconnection: close\r\n\r\n%s" % (
                status.value, status.phrase.encode(), formatdate(usegmt=True).encode(),
                len(body), retry, body))


class AppTransport(asyncio.Transport):
    """The transport the app's protocol is given: the connection's own, with reading
    paused while either the app or the edge wants it paused, closes seen, and writes
    coalesced: what the app writes in one turn of the event loop (uvicorn writes an
    answer's head and body apart) goes out in one write, one TLS record."""

    def __init__(self, transport: asyncio.Transport, connection: EdgeConnection) -> None:
        super().__init__()
        self._transport = transport
        self._connection = connection
        self._pending: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write what the app has written since the last flush."""
        if self._pending:
            pending, self._pending = self._pending, []
            if not self._transport.is_closing():
                self._transport.write(b"".join(pending))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._connection.app_closed()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def is_reading(self) -> bool:
        return not self._connection.app_paused

    def pause_reading(self) -> None:
        self._connection.reading(app_paused=True)

    def resume_reading(self) -> None:
        self._connection.reading(app_paused=False)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return False
