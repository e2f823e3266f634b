"""Mistakes a newcomer makes get a message that names the problem, never a traceback."""

import datetime
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.serving.certificates import load_certificate
from app.serving.tls import ensure_dev_certificates, openssl_serial
from tests.support.service import REPO, RunningService, free_port, run_cli
from tests.support.tools import openssl_binary


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("serve", "--host", "127.0.0.1", "--port", str(free_port()), *args)


def assert_usage_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "no.crt"
    result = serve("--tls-cert-file", str(missing), "--tls-private-key-file",
                   str(tmp_path / "no.key"))
    assert_usage_error(result, f"{missing}: no such file")


def test_files_that_are_not_pem_are_refused(tmp_path: Path) -> None:
    readme = str(REPO / "README.md")
    result = serve("--tls-cert-file", readme, "--tls-private-key-file", readme)
    assert_usage_error(result, "must be a PEM certificate and its private key")


def test_missing_client_ca_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "ca.crt"
    result = serve("--certs-dir", str(tmp_path / "certs"), "--client-ca-file", str(missing))
    assert_usage_error(result, f"{missing}: no such file")


def test_certs_dir_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = serve("--certs-dir", str(blocker / "certs"))
    assert_usage_error(result, f"--certs-dir {blocker / 'certs'}: cannot write")


def test_port_in_use_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--host", "127.0.0.1", "--port", str(port),
                         "--certs-dir", str(tmp_path / "certs"))
    assert_usage_error(result, f"--port {port}: 127.0.0.1:{port} is already in use")
    assert "choose another --port" in result.stderr


def test_missing_state_directory(tmp_path: Path) -> None:
    result = serve("--certs-dir", str(tmp_path / "certs"), "--state", str(tmp_path / "nope"))
    assert_usage_error(result, "no such directory (give a directory of manifests, or kube")


def test_unknown_feature_gate_without_pydantic_words() -> None:
    result = serve("--feature-gates", "Typo")
    assert_usage_error(result, "--feature-gates: unknown feature gate Typo: known gates are")
    assert "Value error" not in result.stderr


@pytest.mark.parametrize(
    ("method", "path", "status", "start"),
    [
        ("POST", "/validate", 404, "no such path /validate: "),
        ("POST", "/validate-migrationpolicy/", 404, "no such path /validate-migrationpolicy/: "),
        ("GET", "/validate-migrationpolicy", 405,
         "only POST is allowed on /validate-migrationpolicy: "),
    ],
)
def test_wrong_path_or_method_lists_the_endpoints(
    client: httpx.Client, method: str, path: str, status: int, start: str
) -> None:
    answer = client.request(method, path, content=b"{}")
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error.startswith(start)
    assert "POST /validate-migrationpolicy, POST /mutate-virtualmachineinstancemigration" in error


def test_a_manifest_posted_instead_of_a_review_points_to_lint(
    client: httpx.Client, service: RunningService
) -> None:
    yaml_body = (REPO / "samples/policies/my-awesome-policy.yaml").read_bytes()
    answer = client.post("/validate-migrationpolicy", content=yaml_body)
    assert answer.status_code == 400
    assert "migration-policy-webhook lint FILE" in answer.json()["error"]
    json_policy = b'{"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy"}'
    answer = client.post("/validate-migrationpolicy", content=json_policy)
    assert answer.status_code == 400
    assert 'got kind "MigrationPolicy"' in answer.json()["error"]
    assert "migration-policy-webhook lint FILE" in answer.json()["error"]


def test_lint_a_directory_lints_its_manifests() -> None:
    result = run_cli("lint", "samples/policies")
    assert result.returncode == 1  # it holds three-mistakes.yaml
    assert "my-awesome-policy.yaml: MigrationPolicy 'my-awesome-policy' is valid" in result.stdout
    assert "three-mistakes.yaml: MigrationPolicy 'three-mistakes' is invalid:" in result.stdout


def openssl_prints_serial(cert_file: Path) -> str:
    """What `openssl x509 -serial` prints for `cert_file` (it must run: openssl is needed)."""
    openssl = subprocess.run([openssl_binary(), "x509", "-noout", "-serial", "-in", str(cert_file)],
                             capture_output=True, text=True)
    assert openssl.returncode == 0, openssl.stderr
    return openssl.stdout.strip()


def test_logged_serial_matches_openssl(tmp_path: Path) -> None:
    files = ensure_dev_certificates(tmp_path)
    serial = load_certificate(files.cert_file).serial_number
    shown = openssl_serial(serial)
    assert shown == shown.upper()
    assert len(shown) % 2 == 0
    assert int(shown, 16) == serial
    assert openssl_prints_serial(files.cert_file) == f"serial={shown}"


@pytest.mark.parametrize("serial", [1, 0x91C, 0x7F, 0x80, 0xFF00, 0x0ABC_DEF0,
                                    (1 << 151) | 0x1234, (1 << 155) + 7])
def test_serials_of_every_shape_match_openssl(tmp_path: Path, serial: int) -> None:
    """Serials chosen for their shape, not left to the random one of a dev certificate: an
    odd number of hex digits (0x91C), a high bit set (0x80, 1 << 151, which DER pads with a
    zero byte), a zero low byte. Catches lower-case hex, digits not padded to whole bytes
    ("91C"), a DER-style "00" before a high bit ("0080"), a "0x" prefix."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "serial-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(serial)
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    cert_file = tmp_path / "serial.crt"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    assert load_certificate(cert_file).serial_number == serial
    assert openssl_prints_serial(cert_file) == f"serial={openssl_serial(serial)}"


@pytest.mark.parametrize(("flags", "message"), [
    (["--metrics-bind-address", "8080"],
     "--metrics-bind-address: '8080' is not a bind address: use host:port, :port (every "
     "address), [ipv6]:port, or 0 (off)"),
    (["--health-probe-bind-address", ":99999"],
     "--health-probe-bind-address: ':99999' is not a bind address"),
    (["--max-connections", "0"],
     "--max-connections: input should be greater than or equal to 1, got 0"),
    (["--request-read-timeout", "0"],
     "--request-read-timeout: input should be greater than 0, got 0.0"),
    (["--shutdown-grace-period", "-1"],
     "--shutdown-grace-period: input should be greater than or equal to 0, got -1.0"),
    (["--enforcement", "block"],
     "argument --enforcement: invalid choice: 'block'"),
    (["--log-level", "verbose"], "argument --log-level: invalid choice: 'verbose'"),
    (["--keep-alive-timeout", "long"],
     "argument --keep-alive-timeout: invalid float value: 'long'"),
], ids=["bind-no-colon", "bind-port-range", "connections", "read-timeout", "grace",
        "enforcement", "log-level", "not-a-number"])
def test_new_serve_flags_name_the_mistake(flags: list[str], message: str) -> None:
    assert_usage_error(serve(*flags), message)
