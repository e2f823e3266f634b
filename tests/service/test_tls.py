"""TLS over real handshakes against the real service: the certificate `certs` makes, its
reload when the files change (rewritten in place, or swapped as kubelet swaps a mounted
Secret), TLS 1.2 as the floor, and client certificates with --client-ca-file."""

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from app.serving.certificates import KeyType, load_certificate, make_ca, make_client_certificate
from app.serving.tls import ReloadingTLS, ServingFiles
from tests.support.service import (
    RunningService,
    make_certs,
    start_service,
    stop_service,
)
from tests.support.tools import openssl_binary

SERVICE_NAME = "migration-policy-webhook.migration-policy-webhook.svc"
RELOAD_DEADLINE = 30.0



def renew_with_same_ca(ca_dir: Path, out: Path) -> Path:
    """A new serving certificate signed by the CA in `ca_dir` (a renewal, not a new CA),
    valid 30 days, so that it never ends when the first one (365 days) does."""
    return make_certs(out, "--ca-cert", str(ca_dir / "ca.crt"), "--ca-key", str(ca_dir / "ca.key"),
                      "--days", "30")


def not_after(cert_file: Path) -> float:
    return load_certificate(cert_file).not_valid_after_utc.timestamp()


EXPIRY_METRIC = "migration_policy_webhook_certificate_expiry_timestamp_seconds"


def expiry_metric(running: RunningService) -> float:
    """The certificate expiry the service reports on /metrics."""
    with running.client() as client:
        text = client.get("/metrics").text
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith(f"{EXPIRY_METRIC} ")))


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(cert_file: Path) -> str:
    return fingerprint(ssl.PEM_cert_to_DER_cert(cert_file.read_text()))


def peer_fingerprint(port: int, context: ssl.SSLContext, server_name: str = "localhost") -> str:
    """The certificate a NEW connection is served."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return fingerprint(der)


def get(connection: http.client.HTTPSConnection, path: str = "/healthz") -> int:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status


def serve_files(tmp: Path, cert: Path, key: Path, *extra: str, ca: Path) -> RunningService:
    return start_service(tmp, ["--tls-cert-file", str(cert), "--tls-private-key-file", str(key),
                               *extra], ca_file=ca)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return make_certs(tmp_path / "certs-out")


@pytest.fixture
def running(tmp_path: Path, certs: Path) -> Iterator[RunningService]:
    service = serve_files(tmp_path, certs / "tls.crt", certs / "tls.key", ca=certs / "ca.crt")
    yield service
    stop_service(service)


# The generated CA verifies the server, under every name the API server may use.


@pytest.mark.parametrize("server_name", ["localhost", SERVICE_NAME, "migration-policy-webhook"])
def test_generated_ca_verifies_the_server_for_its_names(
    running: RunningService, certs: Path, server_name: str
) -> None:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    served = peer_fingerprint(running.port, context, server_name)
    assert served == file_fingerprint(certs / "tls.crt")


def test_a_name_not_in_the_certificate_fails_verification(
    running: RunningService, certs: Path
) -> None:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        peer_fingerprint(running.port, context, "other-service.default.svc")


def test_another_ca_does_not_verify_the_server(running: RunningService, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    context = ssl.create_default_context(cafile=str(other / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        peer_fingerprint(running.port, context)


def test_healthz_over_the_generated_certificate(running: RunningService) -> None:
    with running.client() as client:
        assert client.get("/healthz").status_code == 200


# TLS 1.2 is the floor.


def client_context(certs: Path, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A verifying client limited to `maximum`, at security level 0 so that it can offer
    TLS 1.1 at all (OpenSSL 3 refuses TLS 1.0/1.1 at its default level)."""
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = min(maximum, ssl.TLSVersion.TLSv1_1)
        context.maximum_version = maximum
    return context


def handshake_version(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


def tls11_server(certs: Path) -> tuple[int, threading.Thread, list[str]]:
    """A plain in-process server that does accept TLS 1.1: the control that shows the client
    below really offers TLS 1.1 on this machine, so the service's refusal is its own."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    listener = socket.create_server(("127.0.0.1", 0))
    versions: list[str] = []

    def accept_one() -> None:
        with listener:
            listener.settimeout(10)
            connection, _ = listener.accept()
            with context.wrap_socket(connection, server_side=True) as tls:
                versions.append(tls.version() or "")

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, versions


def test_tls_1_1_is_refused_while_the_same_client_gets_tls_1_2(
    running: RunningService, certs: Path
) -> None:
    port, thread, versions = tls11_server(certs)
    assert handshake_version(port, client_context(certs, ssl.TLSVersion.TLSv1_1)) == "TLSv1.1"
    thread.join(10)
    assert versions == ["TLSv1.1"]

    assert handshake_version(
        running.port, client_context(certs, ssl.TLSVersion.TLSv1_2)
    ) == "TLSv1.2"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake_version(running.port, client_context(certs, ssl.TLSVersion.TLSv1_1))


class ClientOutput:
    """What a subprocess prints, read line by line by a thread, so that a test waits for what
    it has printed (with a deadline), not for time."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.text = ""
        self.ended = False
        self.changed = threading.Condition()
        threading.Thread(target=self.read, args=(stream,), daemon=True).start()

    def read(self, stream: IO[bytes]) -> None:
        try:
            with stream:
                for line in stream:
                    with self.changed:
                        self.text += line.decode(errors="replace")
                        self.changed.notify_all()
        finally:
            with self.changed:
                self.ended = True
                self.changed.notify_all()

    def wait_for(self, pattern: str, deadline: float) -> str:
        """The output once `pattern` (a regular expression) is in it; fails at the deadline,
        or when the output ends without it."""
        found = re.compile(pattern, re.DOTALL)
        with self.changed:
            self.changed.wait_for(lambda: self.ended or found.search(self.text) is not None,
                                  timeout=max(0.0, deadline - time.monotonic()))
            assert found.search(self.text), f"no {pattern!r} in what it printed:\n{self.text}"
            return self.text

    def wait_for_end(self, deadline: float) -> str:
        with self.changed:
            self.changed.wait_for(lambda: self.ended,
                                  timeout=max(0.0, deadline - time.monotonic()))
            assert self.ended, f"the output did not end:\n{self.text}"
            return self.text


def test_renegotiation_is_refused(running: RunningService, certs: Path) -> None:
    """`R` asks `openssl s_client` to renegotiate the TLS 1.2 session (TLS 1.3 has no
    renegotiation); the server refuses, and the connection does not serve another request.
    Each step waits for s_client to print that the one before is done: the handshake
    ("Verify return code", then "---": it reads its commands now), then the renegotiation's
    start and its refusal."""
    client = subprocess.Popen(
        [openssl_binary(), "s_client", "-connect", f"127.0.0.1:{running.port}", "-tls1_2",
         "-CAfile", str(certs / "ca.crt"), "-servername", "localhost"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stdin, stdout = client.stdin, client.stdout
    assert stdin is not None and stdout is not None
    output = ClientOutput(stdout)
    deadline = time.monotonic() + 30

    def send(line: bytes) -> None:
        with contextlib.suppress(BrokenPipeError):  # s_client may have ended already
            stdin.write(line)
            stdin.flush()

    try:
        output.wait_for(r"Verify return code: .*\n---\n", deadline)
        send(b"R\n")
        output.wait_for(r"RENEGOTIATING.*no renegotiation", deadline)
        send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
        text = output.wait_for_end(deadline)
        ended = client.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
    assert "Verify return code: 0 (ok)" in text  # the handshake itself succeeded
    assert "RENEGOTIATING" in text
    assert "no renegotiation" in text
    assert "HTTP/1.1 200" not in text
    assert ended != 0  # s_client gave up on the connection with the refusal
    assert ssl.OP_NO_RENEGOTIATION & ReloadingTLS(
        ServingFiles(certs / "tls.crt", certs / "tls.key")).context.options


def test_tls_1_3_is_served(running: RunningService, certs: Path) -> None:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    assert handshake_version(running.port, context) == "TLSv1.3"


# The certificate is reloaded when its files change; open connections keep theirs.


def wait_for_new_certificate(
    port: int, context: ssl.SSLContext, expected: str, keep_alive: http.client.HTTPSConnection
) -> None:
    """Poll NEW connections until they are served `expected`, while the connection opened
    before keeps answering (its requests also keep it from idling out)."""
    deadline = time.monotonic() + RELOAD_DEADLINE
    served = ""
    while time.monotonic() < deadline:
        assert get(keep_alive) == 200
        served = peer_fingerprint(port, context)
        if served == expected:
            return
        time.sleep(0.2)
    pytest.fail(f"new connections still get {served}, not the new certificate {expected}")


def open_connection(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    assert get(connection) == 200
    return connection


def assert_rotation(
    running: RunningService, context: ssl.SSLContext, old_cert: Path, new_cert: Path,
    replace: Callable[[], None],
) -> None:
    old, new = file_fingerprint(old_cert), file_fingerprint(new_cert)
    assert old != new
    assert peer_fingerprint(running.port, context) == old
    assert expiry_metric(running) == not_after(old_cert)
    before = open_connection(running.port, context)
    sock = before.sock
    assert isinstance(sock, ssl.SSLSocket)
    try:
        replace()
        wait_for_new_certificate(running.port, context, new, before)
        assert expiry_metric(running) == not_after(new_cert)
        # A client that sends no server name (Python sends none for an IP address) too.
        assert peer_fingerprint(running.port, context, "127.0.0.1") == new
        assert get(before) == 200
        assert before.sock is sock, "the connection opened before was replaced"
        assert fingerprint(sock.getpeercert(binary_form=True) or b"") == old
    finally:
        before.close()
    with running.client() as client:
        assert client.get("/healthz").status_code == 200
    assert "serving certificate reloaded" in running.log()


def test_rewritten_files_are_served_to_new_connections(
    running: RunningService, certs: Path, tmp_path: Path
) -> None:
    renewed = renew_with_same_ca(certs, tmp_path / "renewed")
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    old_copy = tmp_path / "old.crt"
    shutil.copy(certs / "tls.crt", old_copy)

    def rewrite() -> None:
        (certs / "tls.crt").write_bytes((renewed / "tls.crt").read_bytes())
        (certs / "tls.key").write_bytes((renewed / "tls.key").read_bytes())

    assert_rotation(running, context, old_copy, renewed / "tls.crt", rewrite)


class SecretVolume:
    """A directory laid out as kubelet lays out a mounted Secret: the files are symlinks
    `tls.crt -> ..data/tls.crt`, and `..data` is a symlink to a timestamped directory that
    an update replaces by renaming a new `..data` symlink over it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self._generation = 0

    def publish(self, source: Path, names: tuple[str, ...] = ("tls.crt", "tls.key")) -> None:
        self._generation += 1
        payload = self.root / f"..2026_01_01_00_00_{self._generation:02d}.000000001"
        payload.mkdir()
        for name in names:
            shutil.copy(source / name, payload / name)
        data = self.root / "..data"
        old_payload = data.resolve() if data.is_symlink() else None
        staging = self.root / "..data_tmp"
        staging.symlink_to(payload.name)
        os.replace(staging, data)
        for name in names:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        if old_payload is not None:
            shutil.rmtree(old_payload)


def test_a_kubelet_style_symlink_swap_is_served_to_new_connections(
    tmp_path: Path, certs: Path
) -> None:
    volume = SecretVolume(tmp_path / "secret-volume")
    volume.publish(certs)
    renewed = renew_with_same_ca(certs, tmp_path / "renewed")
    service = serve_files(tmp_path, volume.root / "tls.crt", volume.root / "tls.key",
                          ca=certs / "ca.crt")
    try:
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        assert_rotation(service, context, certs / "tls.crt", renewed / "tls.crt",
                        lambda: volume.publish(renewed))
        assert (volume.root / "tls.crt").is_symlink()
    finally:
        stop_service(service)


# ReloadingTLS itself, on real files.


def test_reload_waits_for_a_matching_pair_and_keeps_the_old_certificate_meanwhile(
    certs: Path, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    for name in ("tls.crt", "tls.key"):
        shutil.copy(certs / name, live / name)
    tls = ReloadingTLS(ServingFiles(live / "tls.crt", live / "tls.key"))
    assert tls.reload_if_changed() is False

    renewed = renew_with_same_ca(certs, tmp_path / "renewed")
    shutil.copy(renewed / "tls.crt", live / "tls.crt")  # the key is still the old one
    assert tls.reload_if_changed() is False
    assert tls.not_after.timestamp() == not_after(certs / "tls.crt")
    shutil.copy(renewed / "tls.key", live / "tls.key")
    assert tls.reload_if_changed() is True
    assert tls.not_after.timestamp() == not_after(renewed / "tls.crt")
    assert tls.reload_if_changed() is False


def test_reload_sees_a_symlink_swap_even_with_identical_file_times(
    certs: Path, tmp_path: Path
) -> None:
    volume = SecretVolume(tmp_path / "volume")
    volume.publish(certs)
    tls = ReloadingTLS(ServingFiles(volume.root / "tls.crt", volume.root / "tls.key"))
    renewed = renew_with_same_ca(certs, tmp_path / "renewed")
    stat = (certs / "tls.crt").stat()
    for name in ("tls.crt", "tls.key"):
        os.utime(renewed / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    volume.publish(renewed)
    assert tls.reload_if_changed() is True


def test_a_changed_client_ca_file_is_reloaded(certs: Path, tmp_path: Path) -> None:
    client_ca = tmp_path / "clients.crt"
    client_ca.write_bytes(make_ca("clients 1", days=1, key_type=KeyType.ECDSA).certificate_pem())
    tls = ReloadingTLS(ServingFiles(certs / "tls.crt", certs / "tls.key"), client_ca)
    assert tls.reload_if_changed() is False
    client_ca.write_bytes(make_ca("clients 2", days=1, key_type=KeyType.ECDSA).certificate_pem())
    assert tls.reload_if_changed() is True


# --client-ca-file: client certificates required.


@pytest.fixture
def client_ca(tmp_path: Path) -> tuple[Path, tuple[Path, Path]]:
    """A client CA file, and a (certificate, key) that it signed."""
    ca = make_ca("test API server clients", days=1, key_type=KeyType.ECDSA)
    client = make_client_certificate(ca, "kube-apiserver", days=1, key_type=KeyType.ECDSA)
    directory = tmp_path / "clients"
    directory.mkdir()
    (directory / "ca.crt").write_bytes(ca.certificate_pem())
    (directory / "client.crt").write_bytes(client.certificate_pem())
    (directory / "client.key").write_bytes(client.key_pem())
    return directory / "ca.crt", (directory / "client.crt", directory / "client.key")


@pytest.fixture
def mutual(
    tmp_path: Path, certs: Path, client_ca: tuple[Path, tuple[Path, Path]]
) -> Iterator[RunningService]:
    ca_file, client_cert = client_ca
    service = start_service(
        tmp_path,
        ["--tls-cert-file", str(certs / "tls.crt"), "--tls-private-key-file",
         str(certs / "tls.key"), "--client-ca-file", str(ca_file)],
        ca_file=certs / "ca.crt", client_cert=client_cert,
    )
    yield service
    stop_service(service)


def request_status(port: int, context: ssl.SSLContext) -> int:
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        return get(connection)
    finally:
        connection.close()


def test_a_client_certificate_signed_by_the_client_ca_is_accepted(
    mutual: RunningService,
) -> None:
    assert request_status(mutual.port, mutual.ssl_context()) == 200
    with mutual.client() as client:
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_without_a_client_certificate_the_connection_is_refused(
    mutual: RunningService, certs: Path, maximum: ssl.TLSVersion
) -> None:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.maximum_version = maximum
    with pytest.raises((ssl.SSLError, ConnectionError)):
        request_status(mutual.port, context)


def test_a_client_certificate_from_another_ca_is_refused(
    mutual: RunningService, certs: Path
) -> None:
    stranger_ca = make_ca("someone else", days=1, key_type=KeyType.ECDSA)
    stranger = make_client_certificate(stranger_ca, "intruder", days=1, key_type=KeyType.ECDSA)
    directory = certs / "stranger"
    directory.mkdir()
    (directory / "client.crt").write_bytes(stranger.certificate_pem())
    (directory / "client.key").write_bytes(stranger.key_pem())
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.load_cert_chain(directory / "client.crt", directory / "client.key")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        request_status(mutual.port, context)
