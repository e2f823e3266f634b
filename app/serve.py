"""`serve`: the webhook over HTTPS with uvicorn."""

import asyncio
import contextlib
import errno
import logging
import socket
import ssl

import uvicorn
import uvloop

from app.server import create_app
from app.settings import Settings
from app.state import ClusterState
from app.tls import ReloadingTLS, ServingFiles, ensure_dev_certificates

log = logging.getLogger(__name__)


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


def check_port_free(host: str, port: int) -> None:
    """Fail early, and say what to do, when another process listens on the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ValueError(f"--port {port}: {host}:{port} is already in use (is another "
                                 "serve running?): stop it or choose another --port") from None
            raise ValueError(f"--host {host} --port {port}: cannot listen there: "
                             f"{error.strerror or error}") from None


async def serve(settings: Settings, state: ClusterState) -> None:
    """Serve until interrupted."""
    tls = serving_tls(settings)
    files = tls.files
    check_port_free(settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings, state),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(files.cert_file),
        ssl_keyfile=str(files.key_file),
        log_level="info",
        access_log=False,
        lifespan="on",
        http="httptools",
        loop="none",
    )
    config.load()
    config.ssl = tls.context
    watcher = asyncio.create_task(tls.watch(), name="tls-reload")
    try:
        await uvicorn.Server(config).serve()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def run_service(settings: Settings, state: ClusterState) -> None:
    """`serve` on uvloop until stopped: what the command line runs."""
    uvloop.run(serve(settings, state))
