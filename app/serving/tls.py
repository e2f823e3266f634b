"""Serving TLS: the development certificates, and a certificate that reloads itself.

Kubernetes updates a mounted Secret by swapping files under the pod. The server keeps one
listening context whose SNI callback hands each new handshake the newest loaded
certificate, so a rotated certificate is served without a restart, and connections already
open keep theirs.
"""

import asyncio
import contextlib
import datetime
import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.serving.certificates import (
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
    """TLS 1.2 or later, no renegotiation (a client could make the server redo costly
    handshakes on one connection), the serving certificate, client verification if asked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(files.cert_file, files.key_file)
    if client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca_file)
    return context


def _fingerprint(paths: tuple[Path, ...]) -> bytes | None:
    """A digest of the files' contents, read through symlinks; None if one cannot be read.

    Contents, not stat: kubelet replaces a mounted Secret by swapping the `..data` symlink,
    and a file rewritten in place within the same clock tick keeps its size and mtime.
    """
    digest = hashlib.sha256()
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.digest()


def openssl_serial(serial: int) -> str:
    """The serial as `openssl x509 -serial` prints it: upper-case hex, whole bytes."""
    digits = f"{serial:X}"
    return digits.zfill(len(digits) + len(digits) % 2)


def describe_certificate(path: Path) -> str:
    """Serial number and end of validity, for the log."""
    try:
        certificate = load_certificate(path)
    except (OSError, ValueError):
        return "unreadable"
    return (f"serial {openssl_serial(certificate.serial_number)}, "
            f"valid until {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


class ReloadingTLS:
    """The listening SSL context; `reload_if_changed` picks up new certificate files.

    `context` is what the server listens with. Its SNI callback, which OpenSSL runs for
    every ClientHello (with or without a server name), moves the handshake onto the context
    loaded from the newest files, so new connections get the new certificate and open
    connections keep the one they were made with.
    """

    def __init__(self, files: ServingFiles, client_ca_file: Path | None = None) -> None:
        self.files = files
        self._client_ca_file = client_ca_file
        self._watched = tuple(
            path for path in (files.cert_file, files.key_file, client_ca_file) if path
        )
        self._fingerprint = _fingerprint(self._watched)
        self._current = _server_context(files, client_ca_file)
        self.not_after = load_certificate(files.cert_file).not_valid_after_utc
        """When the certificate served to new connections expires."""
        self._refused: bytes | None = None
        self.context = _server_context(files, client_ca_file)
        self.context.sni_callback = self._choose_context
        log.info("serving certificate %s: %s", files.cert_file,
                 describe_certificate(files.cert_file))

    def _choose_context(
        self, connection: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        connection.context = self._current

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; keep the old certificate if they are bad.

        A half-written pair (a new certificate with the old key) fails to load and is tried
        again on the next call, so the update is picked up once both files are in place.
        """
        fingerprint = _fingerprint(self._watched)
        if fingerprint is None or fingerprint == self._fingerprint:
            return False
        try:
            context = _server_context(self.files, self._client_ca_file)
        except (OSError, ssl.SSLError) as error:
            if fingerprint != self._refused:
                log.warning("serving certificate not reloaded, keeping the current one: %s",
                            error)
                self._refused = fingerprint
            return False
        self._fingerprint = fingerprint
        self._current = context
        with contextlib.suppress(OSError, ValueError):  # changed again: the next call sees it
            self.not_after = load_certificate(self.files.cert_file).not_valid_after_utc
        log.info("serving certificate reloaded from %s: %s", self.files.cert_file,
                 describe_certificate(self.files.cert_file))
        return True

    async def watch(self, interval: float = 1.0,
                    on_reload: Callable[[], None] | None = None) -> None:
        """Poll the files until cancelled; call `on_reload` after each reload."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.reload_if_changed() and on_reload is not None:
                    on_reload()
            except Exception:  # the watcher must outlive any surprise
                log.exception("checking the serving certificate files failed")
