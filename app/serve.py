"""`serve`: the webhook over HTTPS with uvicorn."""

import asyncio
import contextlib
import logging

import uvicorn

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
    return ensure_dev_certificates(settings.certs_dir)


async def serve(settings: Settings, state: ClusterState) -> None:
    """Serve until interrupted."""
    files = serving_files(settings)
    tls = ReloadingTLS(files, settings.client_ca_file)
    config = uvicorn.Config(
        create_app(settings, state),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(files.cert_file),
        ssl_keyfile=str(files.key_file),
        log_level="info",
        access_log=False,
        lifespan="on",
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
