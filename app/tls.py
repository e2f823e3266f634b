"""Serving TLS: the development certificates, and a certificate that reloads itself.

Kubernetes updates a mounted Secret by swapping files under the pod. The server keeps one
listening context whose SNI callback hands each new handshake the newest loaded
certificate, so a rotated certificate is served without a restart, and connections already
open keep theirs.
"""

import asyncio
import datetime
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from app.certificates import (
    KeyType,
    load_certificate,
    make_ca,
    make_serving_certificate,
    write_private,
)

log = logging.getLogger(__name__)

DEV_NAMES = ("localhost",)
DEV_IPS = ("127.0.0.1", "::1")
DEV_DAYS = 365
_RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ServingFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


def ensure_dev_certificates(directory: Path) -> ServingFiles:
    """A development CA and a `localhost` certificate in `directory`, made if missing."""
    files = ServingFiles(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
    if _still_good(files):
        return files
    ca = make_ca("migration-policy-webhook development CA", days=DEV_DAYS,
                 key_type=KeyType.ECDSA)
    serving = make_serving_certificate(ca, DEV_NAMES, ip_addresses=DEV_IPS, days=DEV_DAYS,
                                       key_type=KeyType.ECDSA)
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / "ca.key", ca.key_pem())
    write_private(files.key_file, serving.key_pem())
    files.cert_file.write_bytes(serving.certificate_pem())
    (directory / "ca.crt").write_bytes(ca.certificate_pem())
    log.info("made a development CA and serving certificate in %s", directory)
    return files


def _still_good(files: ServingFiles) -> bool:
    paths = (files.cert_file, files.key_file, files.ca_file)
    if not all(path is not None and path.is_file() for path in paths):
        return False
    try:
        expires = load_certificate(files.cert_file).not_valid_after_utc
    except ValueError:
        return False
    return expires - datetime.datetime.now(datetime.UTC) > _RENEW_BEFORE


def _server_context(files: ServingFiles, client_ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert_file, files.key_file)
    if client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca_file)
    return context


def _stamp(files: ServingFiles) -> tuple[int, ...]:
    stamps: list[int] = []
    for path in (files.cert_file, files.key_file):
        try:
            stat = path.stat()
        except OSError:
            return ()
        stamps += [stat.st_mtime_ns, stat.st_size, stat.st_ino]
    return tuple(stamps)


class ReloadingTLS:
    """The listening SSL context; `reload_if_changed` picks up new certificate files."""

    def __init__(self, files: ServingFiles, client_ca_file: Path | None = None) -> None:
        self.files = files
        self._client_ca_file = client_ca_file
        self._stamp = _stamp(files)
        self._current = _server_context(files, client_ca_file)
        self.context = _server_context(files, client_ca_file)
        self.context.sni_callback = self._choose_context

    def _choose_context(
        self, connection: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        connection.context = self._current

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; keep the old certificate if they are bad."""
        stamp = _stamp(self.files)
        if stamp == self._stamp:
            return False
        try:
            context = _server_context(self.files, self._client_ca_file)
        except (OSError, ssl.SSLError) as error:
            log.warning("serving certificate not reloaded, keeping the current one: %s", error)
            return False
        self._stamp = stamp
        self._current = context
        log.info("serving certificate reloaded from %s", self.files.cert_file)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Poll the files until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()
