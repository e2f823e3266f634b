"""The HTTP edge (app/serving/edge.py) with the per-request limits (request_limits.py).

The stack is built as `Listener.start` builds it: uvicorn's own HTTP protocol, resolved by
`uvicorn.Config(...).load()`, behind an `Edge`, its app wrapped in `RequestLimits`; the app
is a small one of each test's own. It is driven in process: a fake transport collects the
bytes written and records closes, aborts and the reading state; a fake clock, advanced by
the test, is what `Edge.sweep` checks deadlines against. No sockets and no timed sleeps:
`settle()` lets the event loop run what is ready.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from uvicorn.server import ServerState

from app.serving.edge import HEADER_END, Edge, EdgeConnection, EdgeLimits, two_header_ends
from app.serving.request_limits import RequestLimits

READ_TIMEOUT = 10.0
KEEP_ALIVE = 30.0
"""Longer than READ_TIMEOUT, so that each deadline can be seen on its own."""

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


# the fake transport


class FakeTransport(asyncio.Transport):
    """What asyncio gives a protocol, in memory. `close()` ends the connection on the next
    loop turn, as a socket transport with nothing left to send does, unless
    `finish_close` is false (a peer that never takes the last bytes)."""

    def __init__(self, protocol: asyncio.Protocol, port: int, finish_close: bool = True) -> None:
        super().__init__()
        self.protocol = protocol
        self.port = port
        self.finish_close = finish_close
        self.written = bytearray()
        self.writes = 0
        """Calls of `write` before the close: each is one TLS record on a real transport."""
        self.written_after_close = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.lost = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("10.0.0.7", self.port),
                "sockname": ("10.0.0.1", 8443)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            self.written_after_close.extend(data)
        else:
            self.written.extend(data)
            self.writes += 1

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        if self.is_closing():
            return
        self.closed = True
        if self.finish_close:
            self._lose()

    def abort(self) -> None:
        if self.aborted:
            return
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        asyncio.get_running_loop().call_soon(self._connection_lost)

    def _connection_lost(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16384, 65536)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


TRANSPORTS: list[FakeTransport] = []
"""Every transport the running test made (`run` ends them and checks them)."""


# responses, as a client parses them


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


class _ResponseParser:
    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    def on_message_begin(self) -> None:
        self.headers, self.body = {}, bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.responses.append(
            Response(self.parser.get_status_code(), self.headers, bytes(self.body)))


def parse_responses(data: bytes) -> list[Response]:
    """Every whole response in `data`; anything that is not HTTP fails the test."""
    parser = _ResponseParser()
    if data:
        parser.parser.feed_data(data)
    return parser.responses


# the stack under test


@dataclass
class Client:
    """One connection: its edge protocol and its transport."""

    connection: EdgeConnection
    transport: FakeTransport

    def send(self, data: bytes) -> None:
        self.connection.data_received(data)

    def responses(self) -> list[Response]:
        return parse_responses(bytes(self.transport.written))

    def response(self) -> Response:
        responses = self.responses()
        assert len(responses) == 1, self.transport.written
        return responses[0]

    @property
    def closed(self) -> bool:
        """Closed or aborted by the server."""
        return self.transport.is_closing()

    @property
    def gone(self) -> bool:
        """The connection ended: connection_lost was called."""
        return self.transport.lost


@dataclass
class Stack:
    """One listener as `Listener.start` builds it, with a fake clock."""

    app: App
    max_connections: int = 100
    max_concurrent_requests: int = 100
    max_body_bytes: int = 1_000_000
    body_budget_bytes: int = 32 * 1024 * 1024
    now: list[float] = field(default_factory=lambda: [1000.0])
    ports: int = 40000

    def __post_init__(self) -> None:
        self.limits = RequestLimits(
            self.app, max_concurrent_requests=self.max_concurrent_requests,
            max_body_bytes=self.max_body_bytes, body_budget_bytes=self.body_budget_bytes,
            draining=lambda: self.edge.draining)
        config = uvicorn.Config(
            self.limits, http="httptools", loop="none", ws="none", lifespan="off",
            log_config=None, log_level=None, access_log=False, proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE)  # type: ignore[arg-type]
        config.load()
        server_state = ServerState()

        def app_protocol(app_state: dict[str, Any]) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=server_state, app_state=app_state)

        self.edge = Edge(EdgeLimits(READ_TIMEOUT, KEEP_ALIVE, self.max_connections),
                         app_protocol, clock=lambda: self.now[0])

    def connect(self, finish_close: bool = True) -> Client:
        connection = self.edge.connection()
        self.ports += 1
        transport = FakeTransport(connection, self.ports, finish_close)
        TRANSPORTS.append(transport)
        connection.connection_made(transport)
        return Client(connection, transport)

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds

    def sweep_after(self, seconds: float) -> None:
        self.advance(seconds)
        self.edge.sweep()


async def settle(turns: int = 30) -> None:
    """Let the loop run every callback and task that is ready (not a timed wait)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run `test` on a loop of its own; then end every connection it left, so that the
    loop's end does not wait on an app blocked writing (whether the test passed or not)."""
    async def main() -> None:
        try:
            await test()
        finally:
            for transport in TRANSPORTS:
                transport.protocol.resume_writing()
                transport.abort()
            await settle()

    TRANSPORTS.clear()
    asyncio.run(main())
    late = [bytes(t.written_after_close) for t in TRANSPORTS if t.written_after_close]
    assert not late, f"written after the transport was closed: {late}"


def get(path: str = "/", *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "host: webhook", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(path: str = "/", body: bytes = b"", length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return (f"POST {path} HTTP/1.1\r\nhost: webhook\r\ncontent-type: application/json\r\n"
            f"content-length: {length}\r\n\r\n").encode() + body


# apps


async def read_body(receive: Any) -> bytes | None:
    """The whole body, or None if the client went away."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def answer(send: Any, document: Any, status: int = 200) -> None:
    body = orjson.dumps(document)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers the path, the header count and the body's length."""
    body = await read_body(receive)
    if body is None:
        return
    await answer(send, {"path": scope["path"], "headers": len(scope["headers"]),
                        "bytes": len(body)})


async def answer_at_once(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers without reading the body (as a 404 for an unknown path does)."""
    await answer(send, {"path": scope["path"]}, status=404)


class Gated:
    """An app that holds every request until the test opens its gate; it counts the
    requests it holds, and records the order it answered them in."""

    def __init__(self, read_body_first: bool = False) -> None:
        self.gate = asyncio.Event()
        self.read_body_first = read_body_first
        self.inside = 0
        self.most_inside = 0
        self.entered = 0
        self.answered: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.entered += 1
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            body = b""
            if self.read_body_first:
                read = await read_body(receive)
                if read is None:
                    return
                body = read
            await self.gate.wait()
            if not self.read_body_first:
                read = await read_body(receive)
                if read is None:
                    return
                body = read
            self.answered.append(scope["path"])
            await answer(send, {"path": scope["path"], "bytes": len(body)})
        finally:
            self.inside -= 1


async def raising(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await read_body(receive)
    raise RuntimeError("a bug in the handler")


# 1. answers, pipelining


def test_a_request_is_answered_and_the_connection_kept_open():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(post("/validate", b'{"a": 1}'))
        await settle()
        response = client.response()
        assert client.transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.json() == {"path": "/validate", "headers": 3, "bytes": 8}
        assert "date" in response.headers
        assert response.headers.get("connection") != "close"
        assert not client.closed
        assert client.transport.reading
    run(test)


def test_each_answer_is_written_at_once():
    """uvicorn writes an answer's head and body apart; they leave in one write (one TLS
    record on a real transport)."""
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        for number in (1, 2):
            client.send(post("/", b"{}"))
            await settle()
            assert client.transport.writes == number
            assert len(client.responses()) == number
        assert [response.json()["bytes"] for response in client.responses()] == [2, 2]
    run(test)


def test_a_100_continue_is_written_while_the_body_is_awaited():
    """An interim answer is not held back until the request ends: the client sends its
    body only once it has it."""
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(b"POST / HTTP/1.1\r\nhost: webhook\r\ncontent-length: 2\r\n"
                    b"expect: 100-continue\r\n\r\n")
        await settle()
        assert client.transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"{}")
        await settle()
        final = client.transport.written[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        assert parse_responses(bytes(final))[0].json()["bytes"] == 2
        assert client.transport.writes == 2
    run(test)


def test_three_pipelined_requests_in_one_read_are_answered_in_order():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(get("/one") + post("/two", b"xyz") + get("/three"))
        await settle()
        responses = client.responses()
        assert [r.status for r in responses] == [200, 200, 200]
        assert [r.json()["path"] for r in responses] == ["/one", "/two", "/three"]
        assert responses[1].json()["bytes"] == 3
        assert not client.closed
        # and the connection serves the next one
        client.send(get("/four"))
        await settle()
        assert [r.json()["path"] for r in client.responses()][-1] == "/four"
    run(test)


def test_a_body_with_blank_lines_and_the_request_after_it_are_told_apart():
    """A body may hold CRs and even a blank line: only the header ends the parser sees
    separate the requests."""
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        body = b'{\r\n  "a": 1\r\n\r\n}'
        client.send(post("/one", body) + get("/two"))
        await settle()
        responses = client.responses()
        assert [r.json()["path"] for r in responses] == ["/one", "/two"]
        assert responses[0].json()["bytes"] == len(body)
    run(test)


@given(st.lists(st.sampled_from([b"\r", b"\n", b"x", HEADER_END])).map(b"".join))
def test_two_header_ends_is_a_count_of_two(data: bytes) -> None:
    assert two_header_ends(data) == (data.count(HEADER_END) >= 2)


# 2. URL and header limits


def test_a_url_of_8192_bytes_is_served():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        path = "/" + "a" * 8191
        client.send(get(path))
        await settle()
        assert client.response().status == 200
        assert client.response().json()["path"] == path
        assert not client.closed
    run(test)


def test_a_url_longer_than_8192_bytes_is_refused_414_and_closed():
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        client = stack.connect()
        client.send(get("/" + "a" * 8192))
        await settle()
        response = client.response()
        assert client.transport.written.startswith(b"HTTP/1.1 414 ")
        assert response.body == b'{"error":"the URL is longer than 8192 bytes"}'
        assert response.headers["connection"] == "close"
        assert client.closed and not client.transport.aborted
        assert app.entered == 0
    run(test)


def test_a_long_url_sent_in_pieces_is_refused_before_its_end():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(b"GET /")
        for _ in range(9):
            client.send(b"a" * 1000)
        await settle()
        assert client.response().status == 414
        assert client.closed
    run(test)


def test_a_header_section_over_65536_bytes_is_refused_431():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(get("/", "x-big: " + "b" * 66000))
        await settle()
        response = client.response()
        assert client.transport.written.startswith(b"HTTP/1.1 431 ")
        assert response.error == "the header section is larger than 65536 bytes"
        assert client.closed
    run(test)


def test_a_header_section_under_65536_bytes_is_served():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(get("/", "x-big: " + "b" * 64000))
        await settle()
        assert client.response().status == 200
    run(test)


def test_100_header_fields_are_served_101_are_refused_431():
    def with_fields(count: int) -> bytes:
        # host is one of them
        return get("/", *(f"x-field-{n}: {n}" for n in range(count - 1)))

    async def test() -> None:
        stack = Stack(echo)
        hundred = stack.connect()
        hundred.send(with_fields(100))
        await settle()
        assert hundred.response().status == 200
        assert hundred.response().json()["headers"] == 100
        assert not hundred.closed

        more = stack.connect()
        more.send(with_fields(101))
        await settle()
        assert more.response().status == 431
        assert more.response().error == "more than 100 header fields"
        assert more.closed
    run(test)


def test_a_header_value_growing_past_64_kib_in_small_reads_is_refused_before_its_end():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(b"GET / HTTP/1.1\r\nhost: webhook\r\nx-grows: ")
        sent = 0
        while not client.closed and sent < 1024 * 1024:
            client.send(b"v" * 1000)
            sent += 1000
        await settle()
        assert client.closed
        assert 64 * 1024 < sent <= 66 * 1024  # refused as it passed the limit
        assert client.response().status == 431
        assert client.response().error == "the header section is larger than 65536 bytes"
    run(test)


# 3. the connection cap


def test_a_connection_beyond_the_cap_is_answered_503_and_closed():
    async def test() -> None:
        stack = Stack(echo, max_connections=2)
        first, second = stack.connect(), stack.connect()
        for request in (get("/"), post("/validate", b'{"kind": "AdmissionReview"}')):
            beyond = stack.connect()
            beyond.send(request)
            await settle()
            response = beyond.response()
            assert response.status == 503
            assert response.error == ("more than 2 open connections (--max-connections): "
                                      "retry on another connection later")
            assert response.headers["retry-after"] == "1"
            assert beyond.closed and beyond.gone
        # the two within the cap are served
        for client in (first, second):
            client.send(get("/within"))
        await settle()
        assert first.response().status == second.response().status == 200

        first.transport.close()  # the client goes away
        await settle()
        assert first.gone
        third = stack.connect()
        third.send(post("/validate", b"{}"))
        await settle()
        assert third.response().status == 200
        assert not third.closed
    run(test)


# 4. the read deadline


def test_partial_headers_are_cut_at_the_read_deadline_not_before():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        stack.advance(1)
        client.send(b"GET / HTTP/1.1\r\nhost: web")
        stack.sweep_after(READ_TIMEOUT - 1.5)
        assert not client.closed
        stack.sweep_after(1)
        assert client.closed
        await settle()
        assert client.gone
        assert client.responses() == []
    run(test)


def test_a_half_sent_body_is_cut_at_the_read_deadline():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(post("/validate", b"x" * 50, length=100))
        await settle()
        stack.sweep_after(READ_TIMEOUT - 0.5)
        assert not client.closed
        stack.sweep_after(0.5)
        assert client.closed
        await settle()
        assert client.gone
        assert client.responses() == []
    run(test)


def test_a_connection_that_sends_nothing_is_closed_at_the_read_deadline():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        stack.sweep_after(READ_TIMEOUT - 0.1)
        assert not client.closed
        stack.sweep_after(0.1)
        assert client.closed
    run(test)


# 5. keep-alive


def test_an_idle_connection_is_closed_at_the_keep_alive_timeout_not_before():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(get("/"))
        await settle()
        assert client.response().status == 200
        stack.sweep_after(KEEP_ALIVE - 0.5)
        assert not client.closed
        stack.sweep_after(0.5)
        assert client.closed
    run(test)


def test_a_stray_crlf_after_an_answer_does_not_keep_the_connection_open():
    """The regression: a CRLF is allowed between requests, and used to stop every clock."""
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(get("/"))
        await settle()
        assert client.response().status == 200
        stack.advance(1)
        client.send(b"\r\n")
        await settle()
        stack.sweep_after(READ_TIMEOUT)  # within both deadlines from its last byte
        assert client.closed
        await settle()
        assert client.gone
        assert len(client.responses()) == 1
    run(test)


def test_a_body_that_ends_after_its_answer_leaves_the_connection_idle_and_closed():
    """An app may answer before the body is in (a 404, say); the rest of the body arrives
    afterwards. The connection must then be idle, closed at the keep-alive timeout."""
    async def test() -> None:
        stack = Stack(answer_at_once)
        client = stack.connect()
        client.send(post("/unknown", b"x" * 10, length=20))
        await settle()
        assert client.response().status == 404
        stack.advance(1)
        client.send(b"y" * 10)  # the end of the body
        await settle()
        stack.sweep_after(KEEP_ALIVE + READ_TIMEOUT)
        assert client.closed, "no deadline runs on a connection whose body ended after its answer"
    run(test)


def test_no_deadline_runs_while_the_app_works_on_a_request():
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        client = stack.connect()
        client.send(get("/slow"))
        await settle()
        stack.sweep_after(KEEP_ALIVE + READ_TIMEOUT)
        assert not client.closed
        app.gate.set()
        await settle()
        assert client.response().status == 200
        stack.sweep_after(KEEP_ALIVE - 0.5)  # idle from its answer on
        assert not client.closed
        stack.sweep_after(0.5)
        assert client.closed
    run(test)


# 6. write backpressure, pipelining bounded


def test_a_client_that_takes_none_of_the_answer_is_aborted_at_the_read_deadline():
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        client = stack.connect()
        client.send(get("/slow-reader"))
        await settle()
        client.connection.pause_writing()  # the transport's buffer is full
        app.gate.set()
        await settle()
        stack.sweep_after(READ_TIMEOUT - 0.5)
        assert not client.closed
        stack.sweep_after(0.5)
        assert client.transport.aborted
        await settle()
        assert client.gone
        assert app.inside == 0  # the app's blocked write returned once the client was gone
        assert client.responses() == []
    run(test)


def test_a_client_that_resumes_reading_is_not_aborted():
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        client = stack.connect()
        client.send(get("/"))
        await settle()
        client.connection.pause_writing()
        app.gate.set()
        await settle()
        stack.advance(READ_TIMEOUT - 1)
        client.connection.resume_writing()
        await settle()
        stack.sweep_after(2)
        assert not client.closed
        assert client.response().status == 200
    run(test)


def test_50_pipelined_requests_reach_the_app_at_most_8_at_a_time_and_all_are_answered():
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        client = stack.connect()
        client.send(b"".join(get(f"/r/{n}") for n in range(50)))
        await settle()
        connection = client.connection
        assert connection.with_app == 8  # handed to uvicorn
        assert connection.held.count(b"GET /r/") == 42  # the rest unparsed
        assert not client.transport.reading
        # uvicorn itself runs one connection's requests one after the other
        assert app.entered == 1
        assert client.responses() == []

        app.gate.set()
        for _ in range(100):
            await settle()
            assert connection.with_app <= 8
            if len(client.responses()) == 50:
                break
        responses = client.responses()
        assert [r.json()["path"] for r in responses] == [f"/r/{n}" for n in range(50)]
        assert app.answered == [f"/r/{n}" for n in range(50)]
        assert app.most_inside <= 8
        assert client.transport.reading
        assert not client.closed
    run(test)


def test_a_request_held_behind_8_in_the_app_is_not_cut_by_the_read_deadline():
    """The 9th request arrives whole, in a read of its own, while 8 are with the app: the
    edge holds its bytes unread. It was received in time; the app's time is its own."""
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        client = stack.connect()
        client.send(b"".join(get(f"/r/{n}") for n in range(8)))
        await settle()
        assert client.connection.with_app == 8
        client.send(get("/r/8"))
        await settle()
        assert not client.transport.reading
        stack.sweep_after(READ_TIMEOUT + 1)  # the app is slow
        assert not client.closed, "closed at the read deadline while the app had its requests"
        app.gate.set()
        for _ in range(20):
            await settle()
        assert [r.json()["path"] for r in client.responses()] == [f"/r/{n}" for n in range(9)]
    run(test)


# 7. requests in progress


def test_beyond_max_concurrent_requests_is_503_bodies_being_received_included():
    async def test() -> None:
        app = Gated(read_body_first=True)
        stack = Stack(app, max_concurrent_requests=2)
        receiving = [stack.connect(), stack.connect()]
        for client in receiving:  # bodies still arriving: in progress
            client.send(post("/validate", b"x" * 10, length=100))
        await settle()
        assert app.inside == 2
        for request in (get("/healthz"), post("/validate", b"y" * 10, length=100)):
            third = stack.connect()
            third.send(request)
            await settle()
            response = third.response()
            assert response.status == 503
            assert response.error == ("more than 2 requests in progress "
                                      "(--max-concurrent-requests): retry later")
            assert response.headers["retry-after"] == "1"
            assert response.headers["connection"] == "close"
            assert third.closed
        assert app.entered == 2

        for client in receiving:
            client.send(b"x" * 90)
        app.gate.set()
        await settle()
        assert [c.response().json()["bytes"] for c in receiving] == [100, 100]
        later = stack.connect()
        later.send(get("/"))
        await settle()
        assert later.response().status == 200
    run(test)


def test_each_listener_counts_its_own_requests():
    async def test() -> None:
        blocked = Gated()
        webhooks = Stack(blocked, max_concurrent_requests=2)
        probes = Stack(echo, max_concurrent_requests=2)
        for _ in range(2):
            webhooks.connect().send(get("/validate"))
        await settle()
        assert blocked.inside == 2
        refused = webhooks.connect()
        refused.send(get("/"))
        await settle()
        assert refused.response().status == 503
        assert "(--max-concurrent-requests)" in refused.response().error

        for path in ("/healthz", "/readyz"):
            probe = probes.connect()
            probe.send(get(path))
            await settle()
            assert probe.response().status == 200
            assert probe.response().json()["path"] == path
        blocked.gate.set()
        await settle()
    run(test)


# 8. bodies


def test_a_content_length_over_max_body_bytes_is_413_and_closed():
    async def test() -> None:
        app = Gated()
        stack = Stack(app, max_body_bytes=1000)
        client = stack.connect()
        client.send(post("/validate", b"z" * 100, length=1001))
        await settle()
        response = client.response()
        assert response.status == 413
        assert response.error == "the body is larger than the limit of 1000 bytes"
        assert response.headers["connection"] == "close"
        assert client.closed and client.gone
        assert app.entered == 0

        fits = stack.connect()
        fits.send(post("/validate", b"z" * 1000))
        app.gate.set()
        await settle()
        assert fits.response().json()["bytes"] == 1000
    run(test)


def test_bodies_beyond_the_memory_budget_are_503():
    async def test() -> None:
        app = Gated(read_body_first=True)
        stack = Stack(app, max_body_bytes=1000, body_budget_bytes=1000)
        holding = stack.connect()
        holding.send(post("/validate", b"a" * 10, length=600))
        await settle()
        assert app.inside == 1

        over = stack.connect()
        over.send(post("/validate", b"b" * 10, length=600))
        await settle()
        response = over.response()
        assert response.status == 503
        assert response.error.startswith("request bodies being received would take more than the ")
        assert response.headers["retry-after"] == "1"
        assert over.closed

        within = stack.connect()  # 600 + 400 fits
        within.send(post("/validate", b"c" * 400))
        no_body = stack.connect()
        no_body.send(get("/"))
        await settle()
        assert within.responses() == [] and not within.closed  # with the app
        app.gate.set()
        holding.send(b"a" * 590)
        await settle()
        assert holding.response().json()["bytes"] == 600
        assert within.response().json()["bytes"] == 400
        assert no_body.response().status == 200

        again = stack.connect()  # released: room for 600 again
        again.send(post("/validate", b"d" * 600))
        await settle()
        assert again.response().status == 200
    run(test)


# 9. a bug in the app


def test_an_app_that_raises_is_answered_500_and_logged_once(caplog):
    async def test() -> None:
        stack = Stack(raising)
        client = stack.connect()
        client.send(post("/validate", b"{}"))
        await settle()
        response = client.response()
        assert response.status == 500
        assert "an internal error" in response.error
        assert response.headers["content-type"] == "application/json"
        assert client.closed

    with caplog.at_level(logging.DEBUG):
        run(test)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert "POST /validate" in errors[0].getMessage()


# 10. drain


def test_drain_closes_idle_connections_at_once():
    async def test() -> None:
        stack = Stack(echo)
        kept_alive = stack.connect()
        kept_alive.send(get("/"))
        await settle()
        assert kept_alive.response().status == 200
        just_opened = stack.connect()  # nothing sent yet
        stack.edge.drain()
        assert kept_alive.closed and not kept_alive.transport.aborted
        assert just_opened.closed
        await settle()
        assert stack.edge.connections == set()
    run(test)


def test_drain_closes_a_busy_connection_after_its_answer_which_says_connection_close():
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        busy = stack.connect()
        busy.send(get("/validate"))
        await settle()
        assert app.inside == 1
        stack.edge.drain()
        assert not busy.closed
        app.gate.set()
        await settle()
        response = busy.response()
        assert response.status == 200
        assert busy.closed
        assert response.headers.get("connection") == "close"
    run(test)


def test_drain_with_pipelined_requests_ends_cleanly_after_an_answer_saying_close():
    """Requests pipelined behind the one with the app may be answered or left unanswered
    (the client retries those), but the connection ends after an answer that says
    `connection: close`, and the app saw no request whose answer was dropped."""
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        busy = stack.connect()
        busy.send(get("/first") + get("/second"))
        await settle()
        assert busy.connection.with_app == 2
        stack.edge.drain()
        assert not busy.closed
        app.gate.set()
        await settle()
        responses = busy.responses()
        paths = [r.json()["path"] for r in responses]
        assert paths in (["/first"], ["/first", "/second"])
        assert app.answered == paths
        assert responses[-1].headers.get("connection") == "close"
        assert busy.closed and not busy.transport.aborted
        await settle()
        assert stack.edge.connections == set()
    run(test)


# 11. not HTTP


def test_an_invalid_request_is_400_and_closed():
    async def test() -> None:
        app = Gated()
        stack = Stack(app)
        client = stack.connect()
        client.send(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        await settle()
        response = client.response()
        assert client.transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert response.error == "not a valid HTTP/1.1 request"
        assert response.headers["connection"] == "close"
        assert client.closed
        assert app.entered == 0
    run(test)


def test_an_invalid_request_after_a_valid_one_is_400_and_closed():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(get("/"))
        await settle()
        client.send(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
        await settle()
        responses = client.responses()
        assert [r.status for r in responses] == [200, 400]
        assert responses[1].error == "not a valid HTTP/1.1 request"
        assert client.closed
    run(test)


# 12. the close grace


def test_a_connection_that_does_not_finish_closing_is_aborted_2_s_later():
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect(finish_close=False)
        client.send(get("/"))
        await settle()
        stack.sweep_after(KEEP_ALIVE)
        assert client.transport.closed and not client.transport.aborted
        stack.sweep_after(1.9)
        assert not client.transport.aborted
        stack.sweep_after(0.1)
        assert client.transport.aborted
        await settle()
        assert client.gone
        assert client.connection not in stack.edge.connections
    run(test)


def test_a_connection_the_app_closed_that_does_not_finish_closing_is_aborted_2_s_later():
    async def test() -> None:
        stack = Stack(echo, max_body_bytes=10)
        client = stack.connect(finish_close=False)
        client.send(post("/validate", length=11))  # 413 closes, from uvicorn's side
        await settle()
        assert client.response().status == 413
        assert client.transport.closed and not client.transport.aborted
        stack.sweep_after(1.9)
        assert not client.transport.aborted
        stack.sweep_after(0.1)
        assert client.transport.aborted
    run(test)


# found in review: a half-closed client, pipelined bodies, trailers, the last answer


def test_a_connection_the_transport_closes_itself_is_aborted_after_the_grace():
    """A peer's EOF makes the transport close itself (the app's eof_received returns
    None), which the edge did not see: with the answer unread it stayed open for good."""
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect(finish_close=False)
        client.send(get("/"))
        await settle()
        assert client.response().status == 200
        client.transport.closed = True  # closing, its last bytes never taken
        stack.sweep_after(0.5)
        assert not client.transport.aborted
        stack.sweep_after(2.0)
        assert client.transport.aborted
    run(test)


def test_the_eighth_pipelined_request_gets_its_body():
    """The request that fills the app's eight gets its body (the app waits on it); only
    what comes after it waits unread."""
    async def test() -> None:
        app = Gated(read_body_first=True)
        stack = Stack(app)
        client = stack.connect()
        client.send(b"".join(post(f"/{i}", b'{"n": %d}' % i) for i in range(10)))
        await settle()
        edge = client.connection
        assert edge.with_app == 8  # uvicorn takes them one at a time; the edge counts 8
        assert edge.held.startswith(b"POST /8 ")  # the rest waits unread, whole requests
        app.gate.set()
        await settle(200)
        assert [response.status for response in client.responses()] == [200] * 10
        assert app.answered == [f"/{i}" for i in range(10)]
        assert not client.closed
    run(test)


def test_a_trailer_field_that_never_ends_is_refused_before_it_is_all_sent():
    async def test() -> None:
        stack = Stack(answer_at_once)
        client = stack.connect()
        client.send(b"POST /healthz HTTP/1.1\r\nhost: webhook\r\ntransfer-encoding: chunked"
                    b"\r\n\r\n1\r\na\r\n0\r\nx-t: ")
        sent = 0
        while not client.closed and sent < 4 * 65536:
            client.send(b"a" * 4096)
            sent += 4096
            await settle(2)
        assert client.closed
        assert sent <= 2 * 65536
        refused = client.responses()[-1]
        assert refused.status == 431
        assert refused.error == ("the chunk framing and trailers are larger than 65536 bytes")
    run(test)


def test_an_upgrade_request_is_answered_then_the_connection_closed():
    """curl --http2 on a plain port asks for h2c: it gets its HTTP/1.1 answer, not an empty
    reply (the answer was dropped by the edge's close)."""
    async def test() -> None:
        stack = Stack(echo)
        client = stack.connect()
        client.send(get("/healthz", "connection: Upgrade, HTTP2-Settings", "upgrade: h2c",
                        "http2-settings: AAMAAABkAARAAAAAAAIAAAAA"))
        await settle()
        assert client.response().status == 200
        assert client.closed
    run(test)
