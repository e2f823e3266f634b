"""The stand-in's HTTPS server: one thread per connection (TLS handshake included), one
`Request` per HTTP request with the ways to answer it (JSON, chunked streams, a cut)."""

import contextlib
import re
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

from app.serving.certificates import KeyType, make_ca, make_serving_certificate, write_private
from tests.support.kubeapi.resources import JSON, status


class Dispatcher(Protocol):
    """What the HTTP server calls back: the API server behind it."""

    def _connection_opened(self, connection: socket.socket) -> None: ...

    def _connection_closed(self, connection: socket.socket) -> None: ...

    def _dispatch(self, handler: "Handler") -> None: ...


class Request:
    """One HTTP request, and the ways to answer it."""

    def __init__(self, handler: "Handler", method: str, params: Mapping[str, str]) -> None:
        url = urlsplit(handler.path)
        self._handler = handler
        self.method = method
        self.path = url.path
        self.query = {key: values[-1] for key, values in
                      parse_qs(url.query, keep_blank_values=True).items()}
        self.params = params
        self.headers = handler.headers
        self._body_read = False

    @property
    def metadata_only(self) -> bool:
        return "as=PartialObjectMetadata" in (self.headers.get("Accept") or "")

    def body(self) -> bytes:
        if self._body_read:
            return b""
        self._body_read = True
        length = int(self.headers.get("Content-Length") or 0)
        return self._handler.rfile.read(length) if length else b""

    def send_json(self, code: int, obj: Any, content_type: str = JSON,
                  headers: Sequence[tuple[str, str]] = ()) -> None:
        data = orjson.dumps(obj)
        handler = self._handler
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        for name, value in headers:
            # Header bytes as Go writes them (UTF-8), through http.server's latin-1 encoding.
            handler.send_header(name, value.encode().decode("latin-1"))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def send_status(self, code: int, message: str, reason: str | None = None) -> None:
        self.send_json(code, status(code, message, reason))

    def start_stream(self, content_type: str = JSON) -> None:
        handler = self._handler
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._handler.wfile.write(b"0\r\n\r\n")

    def cut(self, partial: bytes = b'{"type":"MODIFIED","object":{"metadata":{"na') -> None:
        """Drop the connection in the middle of a chunk, as a failing network does."""
        handler = self._handler
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.wfile.write(b"%x\r\n%s" % (len(partial) * 4, partial))
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)


RouteHandler = Callable[[Request], None]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handle: RouteHandler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Server"

    def setup(self) -> None:
        super().setup()
        self.server.api._connection_opened(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.api._connection_closed(self.connection)

    def _dispatch(self) -> None:
        try:
            self.server.api._dispatch(self)
        except (OSError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: "Dispatcher",
                 context: ssl.SSLContext) -> None:
        self.api = api
        self.context = context
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's thread, not in accept().
        # No Nagle delay, as Go's net/http does not have one either.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(request, client_address)
        finally:
            with contextlib.suppress(OSError):
                request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away is not news


def serving_context(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A fresh CA and a serving certificate for localhost/127.0.0.1 in `directory`: the
    CA's file (for kubeconfigs) and the server's TLS context."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("kubeapi fixture CA", days=2, key_type=KeyType.ECDSA)
    serving = make_serving_certificate(ca, ["localhost"], ip_addresses=["127.0.0.1"],
                                       days=2, key_type=KeyType.ECDSA)
    ca_file = directory / "kubeapi-ca.crt"
    ca_file.write_bytes(ca.certificate_pem())
    cert_file = directory / "kubeapi.crt"
    key_file = directory / "kubeapi.key"
    cert_file.write_bytes(serving.certificate_pem())
    write_private(key_file, serving.key_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context
