"""`serve`: the webhooks over HTTPS, the probes and metrics over plain HTTP, on uvloop.

Each port is a `Listener`: sockets served with asyncio's `loop.create_server` (which gives
the TLS handshake its deadline), an `Edge` in front of uvicorn's HTTP protocol for what is
per connection (app/serving/edge.py), and `RequestLimits` around the app for what is per
request (app/serving/request_limits.py). Every listener has its own limits and counters,
so nothing the webhook port carries can make the probes or metrics fail. uvicorn is used
through `uvicorn.Config` and the protocol class it resolves, nothing else: its `Server`
serves one app on one context of its own making, with no handshake deadline.

On SIGTERM (or Ctrl+C): readiness turns false at once, the webhook port stops accepting,
idle connections are closed, requests in flight are answered (with `connection: close`),
slow ones are cut at their read deadline, and whatever is left at
`--shutdown-grace-period` is closed. The probe and metrics ports close last, so /readyz
says why while the webhook port drains. A second signal stops at once.
"""

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import uvloop
from uvicorn.server import ServerState

from app.serving.app import Service, create_service
from app.serving.asgi import ASGIApp
from app.serving.edge import Edge, EdgeConnection, EdgeLimits
from app.serving.request_limits import BODY_BUDGET_BYTES, RequestLimits
from app.serving.tls import ReloadingTLS, ServingFiles, ensure_dev_certificates
from app.settings import ALL_ADDRESSES, Settings
from app.state import ClusterState

log = logging.getLogger(__name__)

BACKLOG = 2048
"""Connections the kernel queues before they are accepted (uvicorn's default)."""
TLS_SHUTDOWN_TIMEOUT = 2.0
"""Seconds a closing TLS connection waits for the peer's close_notify (uvloop's default is
30 s, which would keep a stalled client's connection, and a graceful stop, waiting)."""
STARTUP_FAILURE = 3
"""The exit status when the app's startup fails, as uvicorn's."""


def serving_files(settings: Settings) -> ServingFiles:
    """The certificate to serve: the one given, or a development one made in certs/."""
    if settings.tls_cert_file and settings.tls_private_key_file:
        return ServingFiles(settings.tls_cert_file, settings.tls_private_key_file)
    if settings.tls_cert_file or settings.tls_private_key_file:
        raise ValueError("--tls-cert-file and --tls-private-key-file go together")
    try:
        return ensure_dev_certificates(settings.certs_dir)
    except OSError as error:
        raise ValueError(f"--certs-dir {settings.certs_dir}: cannot write the development "
                         f"certificates there: {error.strerror or error}") from None


def serving_tls(settings: Settings) -> ReloadingTLS:
    """The listening TLS context; a file that cannot be used is a usage error, named."""
    files = serving_files(settings)
    for path in (files.cert_file, files.key_file, settings.client_ca_file):
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: no such file")
    try:
        return ReloadingTLS(files, settings.client_ca_file)
    except (OSError, ssl.SSLError) as error:
        given = f"{files.cert_file} and {files.key_file}"
        if settings.client_ca_file is not None:
            given += f" (client CA {settings.client_ca_file})"
        raise ValueError(f"cannot serve TLS with {given}: they must be a PEM certificate and "
                         f"its private key: {error}") from None


@dataclass(frozen=True)
class Address:
    """Where to listen, and how the command line said it (for error messages)."""

    host: str
    port: int
    given: str
    """The flags as given, e.g. `--port 8443` or `--metrics-bind-address :8080`."""
    change: str
    """What to change when the port is taken, e.g. `--port`."""
    where: str = ""
    """The flags to name when the host is the problem (`given` if empty)."""

    @property
    def host_given(self) -> str:
        return self.where or self.given


def bind_sockets(address: Address) -> list[socket.socket]:
    """Bound sockets for `address`; host "" is every address, IPv6 and IPv4 on one
    dual-stack socket, or IPv4 alone where the machine has no IPv6. A port that is taken
    or a host that cannot be listened on is a usage error saying what to do."""
    if address.host == ALL_ADDRESSES:
        try:
            return [_bind(address, socket.AF_INET6, ("::", address.port))]
        except _NoIPv6:
            return [_bind(address, socket.AF_INET, ("0.0.0.0", address.port))]
    try:
        found = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ValueError(f"{address.host_given}: cannot listen on {address.host}: "
                         f"{error.strerror}") from None
    bound: list[socket.socket] = []
    try:
        for family, sockaddr in dict.fromkeys((info[0], info[4][:2]) for info in found):
            with contextlib.suppress(_NoIPv6):  # ::1 of `localhost` where there is no IPv6
                bound.append(_bind(address, family, sockaddr))
    except ValueError:
        for sock in bound:
            sock.close()
        raise
    if not bound:
        raise ValueError(f"{address.host_given}: cannot listen on {address.host}: "
                         "it is an IPv6 address and this machine has no IPv6")
    return bound


class _NoIPv6(Exception):
    """The machine has no IPv6: no AF_INET6 sockets, or (for every address) no IPv6
    address to bind."""


def _bind(address: Address, family: int, sockaddr: tuple[Any, ...]) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        if family == socket.AF_INET6 and error.errno == errno.EAFNOSUPPORT:
            raise _NoIPv6 from None
        raise ValueError(f"{address.host_given}: cannot listen there: {error.strerror}") from None
    every_address = address.host == ALL_ADDRESSES
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(not every_address))
        sock.bind(sockaddr)
        sock.listen(BACKLOG)  # SO_REUSEADDR lets a second bind pass: only listen() tells
    except OSError as error:
        sock.close()
        shown = _show(sockaddr)
        if error.errno == errno.EADDRINUSE:
            raise ValueError(f"{address.given}: {shown} is already in use (is another serve "
                             f"running?): stop it or choose another {address.change}") from None
        if family == socket.AF_INET6 and every_address and error.errno == errno.EADDRNOTAVAIL:
            raise _NoIPv6 from None
        raise ValueError(f"{address.host_given}: cannot listen on {shown}: "
                         f"{error.strerror or error}") from None
    return sock


def _show(sockaddr: tuple[Any, ...]) -> str:
    host, port = sockaddr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(sockets: list[socket.socket]) -> str:
    """`[::]:8443 (IPv6 and IPv4)`, `127.0.0.1:8443`, ..."""
    shown = []
    for sock in sockets:
        text = _show(sock.getsockname())
        if sock.family == socket.AF_INET6 and not sock.getsockopt(socket.IPPROTO_IPV6,
                                                                  socket.IPV6_V6ONLY):
            text += " (IPv6 and IPv4)"
        shown.append(text)
    return ", ".join(shown)


@dataclass
class Listener:
    """One port: its app with its request limits, its bound sockets, its connections."""

    what: str
    app: ASGIApp
    sockets: list[socket.socket]
    tls: ssl.SSLContext | None = None
    refused: Callable[[str, int], None] = field(default=lambda _path, _status: None)
    """Told of each request refused before the app (path, status), for the metrics."""
    servers: list[asyncio.Server] = field(default_factory=list)
    edge: Edge | None = None
    protocol_class: type[asyncio.Protocol] = asyncio.Protocol
    """uvicorn's HTTP protocol, as `uvicorn.Config` resolves it."""

    async def start(self, settings: Settings) -> None:
        loop = asyncio.get_running_loop()
        limited = RequestLimits(self.app, max_concurrent_requests=settings.max_concurrent_requests,
                                max_body_bytes=settings.max_body_bytes,
                                draining=lambda: edge.draining, refused=self.refused)
        config = _config(limited, settings)
        self.protocol_class = config.http_protocol_class
        server_state = ServerState()

        def app_protocol(app_state: dict[str, Any]) -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=server_state, app_state=app_state)
            return protocol

        edge = self.edge = Edge(EdgeLimits(settings.request_read_timeout,
                                           settings.keep_alive_timeout,
                                           settings.max_connections), app_protocol)
        tls_options: dict[str, Any] = {}
        if self.tls is not None:
            tls_options = {"ssl": self.tls,
                           "ssl_handshake_timeout": settings.request_read_timeout,
                           "ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT}
        for sock in self.sockets:
            self.servers.append(await loop.create_server(edge.connection, sock=sock,
                                                         backlog=BACKLOG, **tls_options))
        scheme = "HTTPS" if self.tls is not None else "HTTP"
        log.info("serving %s over %s on %s", self.what, scheme, _describe(self.sockets))

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()
        if self.edge is not None:
            self.edge.drain()  # idle connections close now, busy ones after their answer

    def busy(self) -> bool:
        return self.edge is not None and bool(self.edge.connections)

    def close_all(self) -> None:
        if self.edge is not None:
            self.edge.close_all()

    def sweep(self) -> None:
        if self.edge is not None:
            self.edge.sweep()


def _config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for one app: httptools, our logging, no proxy headers trusted,
    no lifespan (the service starts and stops its own background work)."""
    config = uvicorn.Config(
        app, http="httptools", loop="none", ws="none", lifespan="off",
        log_config=None, log_level=None, access_log=False, proxy_headers=False,
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
    )
    config.load()
    return config


def _listeners(settings: Settings, service: Service, tls: ReloadingTLS) -> list[Listener]:
    """Every port `settings` asks for, bound now so that a taken port fails before start."""
    port = settings.port
    listeners = [Listener("the webhooks, /healthz, /readyz and /metrics", service.app,
                          bind_sockets(Address(settings.host, port, f"--port {port}", "--port",
                                               f"--host {settings.host} --port {port}")),
                          tls.context, refused=service.count_refused)]
    plain = (("/healthz and /readyz", "--health-probe-bind-address",
              settings.health_probe_bind_address, settings.health_probe_address,
              service.health_app),
             ("/metrics", "--metrics-bind-address", settings.metrics_bind_address,
              settings.metrics_address, service.metrics_app))
    taken = {port: f"--port {port}"}
    try:
        for what, flag, given, address, app in plain:
            if address is not None:
                if address[1] in taken:
                    raise ValueError(f"{flag} {given}: port {address[1]} is {taken[address[1]]} "
                                     f"already: give {flag} a port of its own")
                taken[address[1]] = f"{flag} {given}"
                sockets = bind_sockets(Address(*address, f"{flag} {given}", flag))
                listeners.append(Listener(what, app, sockets))
    except ValueError:
        for listener in listeners:
            for sock in listener.sockets:
                sock.close()
        raise
    return listeners


def _log_runtime(settings: Settings, protocol: type[asyncio.Protocol]) -> None:
    loop = type(asyncio.get_running_loop())
    log.info("event loop %s.%s, HTTP protocol %s.%s (uvicorn %s) behind %s.%s",
             loop.__module__, loop.__qualname__, protocol.__module__, protocol.__qualname__,
             uvicorn.__version__, EdgeConnection.__module__, EdgeConnection.__qualname__)
    log.info("every listener: request read timeout %s s, keep-alive timeout %s s, at most %d "
             "connections and %d requests at once, %d bytes of request bodies at once; "
             "shutdown grace period %s s", settings.request_read_timeout,
             settings.keep_alive_timeout, settings.max_connections,
             settings.max_concurrent_requests,
             max(BODY_BUDGET_BYTES, settings.max_body_bytes), settings.shutdown_grace_period)


async def _every_second(listeners: list[Listener]) -> None:
    while True:
        for listener in listeners:
            listener.sweep()
        await asyncio.sleep(1)


class _Signals:
    """SIGTERM and SIGINT: the first asks for a graceful stop, the second for an
    immediate one."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.now = asyncio.Event()
        self.received = ""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._received, number)

    def _received(self, number: int) -> None:
        if self.stop.is_set():
            log.warning("%s again: stopping now", signal.Signals(number).name)
            self.now.set()
        self.received = signal.Signals(number).name
        self.stop.set()

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


async def _drain(listener: Listener, deadline: float, now: asyncio.Event) -> None:
    """Stop accepting, then wait for the connections to finish until `deadline`, or until
    `now` is set."""
    listener.stop_accepting()
    while listener.busy() and not now.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(now.wait(), min(remaining, 0.05))
    if listener.busy() and listener.edge is not None:
        when = "on the second signal" if now.is_set() else (
            "at the end of the shutdown grace period")
        log.warning("%d connections still open %s: closed", len(listener.edge.connections),
                    when)
        listener.close_all()


async def serve(settings: Settings, state: ClusterState) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    tls = serving_tls(settings)
    service = create_service(settings, state)
    listeners = _listeners(settings, service, tls)
    webhooks, others = listeners[0], listeners[1:]

    def record_expiry() -> None:
        service.metrics.certificate_expiry.set(tls.not_after.timestamp())

    record_expiry()
    background = [asyncio.create_task(tls.watch(on_reload=record_expiry), name="tls-reload"),
                  asyncio.create_task(_every_second(listeners), name="every-second")]
    signals = _Signals()
    started = False
    try:
        try:
            await service.start()
            started = True
        except Exception:
            log.exception("starting the service failed")
            raise SystemExit(STARTUP_FAILURE) from None
        for listener in listeners:
            await listener.start(settings)
        _log_runtime(settings, webhooks.protocol_class)
        await signals.stop.wait()
        deadline = time.monotonic() + settings.shutdown_grace_period
        service.begin_shutdown()
        log.info("%s: not ready any more, no new connections; answering the requests in "
                 "flight within %s s", signals.received, settings.shutdown_grace_period)
        await _drain(webhooks, deadline, signals.now)
        started = False
        await _stop(service, max(deadline - time.monotonic(), 1.0))
        for listener in others:
            listener.stop_accepting()
            listener.close_all()
        log.info("stopped")
    finally:
        signals.remove()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if started:  # a failure while serving: the background work stops all the same
            await _stop(service, 1.0)
        for listener in listeners:
            for sock in listener.sockets:
                sock.close()


async def _stop(service: Service, seconds: float) -> None:
    """The service's own shutdown (the cluster state), within `seconds`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await service.stop()


def run_service(settings: Settings, state: ClusterState) -> None:
    """`serve` on uvloop until stopped: what the command line runs."""
    uvloop.run(serve(settings, state))
