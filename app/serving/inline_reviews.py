"""The admission POSTs answered in the protocol itself, with no ASGI request cycle.

Through ASGI, every request costs uvicorn a request-response cycle, an `asyncio.Event`, a
task and two coroutines, and its answer two TLS records (the head, then the body): about
as much CPU as judging the review. An admission review is small, complete once its body
has arrived, and judged without waiting on anything when the cluster state can answer. So
when a POST to a webhook path comes with a JSON body of known length (at most
`OFF_LOOP_BYTES`), its body is collected by the parser callbacks and the review answered
when the message is complete: one synchronous call, one write.

Every other request takes uvicorn's ASGI way as before: other paths and methods, chunked
or large bodies, 413 and 415, `Expect: 100-continue`, a request pipelined behind one still
in progress, and a review whose lookup would block (its cycle is made then, with the whole
body, and the endpoint judges it in a worker thread).
"""

import asyncio
from typing import Any, Protocol

from uvicorn.config import Config
from uvicorn.server import ServerState

from app.serving.connections import LimitedHttpToolsProtocol, Limits, header_lines, response


class InlineEndpoint(Protocol):
    """What `ReviewEndpoint` offers the protocol."""

    def accepts_inline(self, headers: list[tuple[bytes, bytes]]) -> bool: ...

    def answer_inline(self, body: bytes) -> tuple[int, bytes] | None: ...

    def client_gone(self) -> None: ...


class InlineReviewProtocol(LimitedHttpToolsProtocol):
    """`LimitedHttpToolsProtocol` answering the webhook paths inline when it can."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 limits: Limits, inline: dict[bytes, InlineEndpoint],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, limits, _loop)
        self.inline = inline
        """The webhook endpoints, by raw path."""
        self._endpoint: InlineEndpoint | None = None
        """The endpoint of the request whose body is being collected."""
        self._chunks: list[bytes] = []
        self._keep_alive = True
        self._answers: list[tuple[int, bytes, bool]] = []
        """(status, body, close after it) of the answers not written yet."""
        self._closing = False
        """Shutdown has begun: the last answer closes the connection."""
        self._headers_written: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")

    def _start_cycle(self) -> None:
        """Collect the body here rather than start an ASGI cycle, when the request can be
        answered inline."""
        endpoint = self._inline_endpoint()
        if endpoint is None:
            super()._start_cycle()
            return
        self._endpoint = endpoint
        self.limits.receiving.count += 1
        self._chunks = []
        self._keep_alive = (self.parser.get_http_version() != "1.0"
                            and self.parser.should_keep_alive())

    def _inline_endpoint(self) -> InlineEndpoint | None:
        cycle = self.cycle
        if self.pipeline or (cycle is not None and not cycle.response_complete):
            return None  # answers go out in the order of the requests
        if self.parser.get_method() != b"POST":
            return None
        # the API server's target is the path and `?timeout=10s`; any other form of it (an
        # absolute URL, escapes) takes the ASGI way, which answers the same
        endpoint = self.inline.get(self.url.partition(b"?")[0])
        if endpoint is None or not endpoint.accepts_inline(self.headers):
            return None
        return endpoint

    def on_body(self, body: bytes) -> None:
        if self._endpoint is None:
            super().on_body(body)
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            super().on_message_complete()
            return
        self._reading_since = None
        self._done_receiving()
        body = b"".join(self._chunks)
        self._chunks = []
        answer = endpoint.answer_inline(body)
        if answer is None:  # the ASGI way after all, with the whole body
            super()._start_cycle()
            if body:
                super().on_body(body)
            super().on_message_complete()
            return
        if not self._answers:
            self.loop.call_soon(self._send_answers)
        self._answers.append((*answer, not self._keep_alive))

    def _send_answers(self) -> None:
        """Write the answers ready, in one write, once the loop has read what else came in:
        measured (make bench) about a fifth cheaper a request than writing from inside the
        read callback, and pipelined answers share the write."""
        answers, self._answers = self._answers, []
        if self.transport.is_closing():
            return
        headers = self._default_header_lines()
        written = []
        for status, body, close in answers:
            close = close or self._closing
            written.append(response(headers, status, body, close=close))
            if close:
                break
        self.transport.write(b"".join(written))
        if close:
            self.transport.close()
        for _ in written:
            self.on_response_complete()

    def _default_header_lines(self) -> bytes:
        """The server's default headers (Date, Server) written out, once for each list of
        them (the listener makes a new one every second)."""
        headers = self.server_state.default_headers
        if headers is not self._headers_written[0]:
            self._headers_written = (headers, header_lines(headers))
        return self._headers_written[1]

    def shutdown(self) -> None:
        """A request whose body is still arriving, or whose answer is about to be written,
        is answered, then the connection closed."""
        if self._endpoint is not None or self._answers:
            self._closing = True
            self._keep_alive = False
        else:
            super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._endpoint is not None:
            self._endpoint.client_gone()
            self._done_receiving()
        super().connection_lost(exc)

    def _done_receiving(self) -> None:
        self._endpoint = None
        self.limits.receiving.count -= 1

