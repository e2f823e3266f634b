"""`certs` through the command line: the CA, the serving certificate, the Secret and the
webhook configurations it writes, checked with `cryptography`."""

import base64
import datetime
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from app.admission.configurations import webhook_configurations
from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH
from tests.support.service import run_cli

SERVICE_NAMES = [
    "hook.team-a.svc",
    "hook",
    "hook.team-a",
    "hook.team-a.svc.cluster.local",
]


def certs(out: Path, *args: str) -> Path:
    result = run_cli("certs", "--service", "hook", "--namespace", "team-a", "--out", str(out),
                     *args)
    assert result.returncode == 0, result.stderr
    return out


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def dns_names(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def lifetime(certificate: x509.Certificate) -> datetime.timedelta:
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


def private_key(path: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def default_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return certs(tmp_path_factory.mktemp("certs") / "out")


def test_writes_every_file_and_keeps_keys_private(default_out: Path) -> None:
    names = sorted(path.name for path in default_out.iterdir())
    assert names == ["ca.crt", "ca.key", "secret.yaml", "tls.crt", "tls.key", "webhooks.yaml"]
    for secret in ("ca.key", "tls.key", "secret.yaml"):
        assert stat.S_IMODE((default_out / secret).stat().st_mode) == 0o600, secret


def test_serving_certificate_names_every_service_dns_name(default_out: Path) -> None:
    certificate = load(default_out / "tls.crt")
    assert dns_names(certificate) == SERVICE_NAMES
    cn = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "hook.team-a.svc"


def test_serving_certificate_verifies_against_the_ca(default_out: Path) -> None:
    ca, serving = load(default_out / "ca.crt"), load(default_out / "tls.crt")
    serving.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    leaf = serving.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert leaf.ca is False
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_another_ca_did_not_issue_it(default_out: Path, tmp_path: Path) -> None:
    other = certs(tmp_path / "other")
    # Same subject name (same service), so only the signature tells them apart.
    assert load(other / "ca.crt").subject == load(default_out / "ca.crt").subject
    with pytest.raises(InvalidSignature):
        load(default_out / "tls.crt").verify_directly_issued_by(load(other / "ca.crt"))


def test_default_keys_are_ecdsa_p256_and_match_the_certificates(default_out: Path) -> None:
    for cert_file, key_file in (("tls.crt", "tls.key"), ("ca.crt", "ca.key")):
        key = private_key(default_out / key_file)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert key.public_key() == load(default_out / cert_file).public_key()


def test_rsa_on_request_is_2048_bits(tmp_path: Path) -> None:
    out = certs(tmp_path / "rsa", "--key-type", "rsa")
    for cert_file, key_file in (("tls.crt", "tls.key"), ("ca.crt", "ca.key")):
        key = private_key(out / key_file)
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == 2048
        assert key.public_key() == load(out / cert_file).public_key()
    load(out / "tls.crt").verify_directly_issued_by(load(out / "ca.crt"))


def test_days_sets_the_serving_lifetime(tmp_path: Path, default_out: Path) -> None:
    out = certs(tmp_path / "short", "--days", "30")
    # five minutes of clock skew allowance before now
    assert lifetime(load(out / "tls.crt")) == datetime.timedelta(days=30, minutes=5)
    assert lifetime(load(default_out / "tls.crt")) == datetime.timedelta(days=365, minutes=5)
    assert lifetime(load(default_out / "ca.crt")) == datetime.timedelta(days=3650, minutes=5)


def test_days_below_one_is_refused(tmp_path: Path) -> None:
    result = run_cli("certs", "--out", str(tmp_path / "x"), "--days", "0")
    assert result.returncode == 2
    assert "--days" in result.stderr
    assert not (tmp_path / "x").exists()


def test_secret_is_a_tls_secret_whose_data_is_the_files(default_out: Path) -> None:
    secret = yaml.safe_load((default_out / "secret.yaml").read_text())
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "migration-policy-webhook-tls", "namespace": "team-a"}
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    for name, encoded in secret["data"].items():
        assert base64.b64decode(encoded) == (default_out / name).read_bytes(), name


def webhook_documents(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def test_webhooks_trust_the_ca_and_point_at_the_service(default_out: Path) -> None:
    documents = webhook_documents(default_out / "webhooks.yaml")
    ca_bundle = base64.b64encode((default_out / "ca.crt").read_bytes()).decode()
    assert [doc["kind"] for doc in documents] == [
        "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"]
    paths = []
    for doc in documents:
        for webhook in doc["webhooks"]:
            client = webhook["clientConfig"]
            assert client["caBundle"] == ca_bundle
            assert client["service"]["name"] == "hook"
            assert client["service"]["namespace"] == "team-a"
            assert client["service"]["port"] == 443
            paths.append(client["service"]["path"])
    assert paths == [VALIDATE_PATH, MUTATE_PATH]
    assert documents == webhook_configurations("hook", "team-a", ca_bundle)


def test_extra_dns_names_and_ips(tmp_path: Path) -> None:
    out = certs(tmp_path / "extra", "--dns-name", "localhost", "--dns-name", "hook",
                "--ip-address", "127.0.0.1", "--ip-address", "::1")
    certificate = load(out / "tls.crt")
    assert dns_names(certificate) == [*SERVICE_NAMES, "localhost"]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]


def test_reusing_the_ca_renews_only_the_serving_certificate(
    default_out: Path, tmp_path: Path
) -> None:
    out = certs(tmp_path / "renewed", "--ca-cert", str(default_out / "ca.crt"),
                "--ca-key", str(default_out / "ca.key"))
    assert (out / "ca.crt").read_bytes() == (default_out / "ca.crt").read_bytes()
    assert not (out / "ca.key").exists()
    renewed = load(out / "tls.crt")
    assert renewed.serial_number != load(default_out / "tls.crt").serial_number
    renewed.verify_directly_issued_by(load(default_out / "ca.crt"))
    # The webhook configurations are unchanged: nothing to re-apply but the Secret.
    assert (out / "webhooks.yaml").read_text() == (default_out / "webhooks.yaml").read_text()


def test_a_serving_certificate_never_outlives_its_ca(default_out: Path, tmp_path: Path) -> None:
    young_ca = certs(tmp_path / "young", "--ca-days", "10")
    out = tmp_path / "long"
    result = run_cli("certs", "--out", str(out), "--days", "400",
                     "--ca-cert", str(young_ca / "ca.crt"), "--ca-key", str(young_ca / "ca.key"))
    assert result.returncode == 0, result.stderr
    assert "ends with its CA" in result.stdout
    assert (load(out / "tls.crt").not_valid_after_utc
            == load(young_ca / "ca.crt").not_valid_after_utc)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ca-cert", "{out}/ca.crt"], "--ca-cert and --ca-key go together"),
        (["--ca-cert", "{out}/tls.crt", "--ca-key", "{out}/tls.key"], "is not a CA certificate"),
        (["--ca-cert", "{out}/ca.crt", "--ca-key", "{out}/tls.key"], "is not the private key"),
        (["--ca-cert", "{out}/missing.crt", "--ca-key", "{out}/ca.key"], "cannot load the CA"),
        (["--ip-address", "not-an-ip"], "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_unusable_inputs_are_refused_with_a_reason(
    default_out: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    filled = [arg.format(out=default_out) for arg in args]
    result = run_cli("certs", "--out", str(tmp_path / "refused"), *filled)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_also_trust_puts_both_cas_in_the_bundle_and_writes_the_final_one(
    default_out: Path, tmp_path: Path
) -> None:
    """Both files hold both webhooks, each with its bundle: a file written empty, or with
    one of the two configurations, or with a webhook that trusts only one CA, fails."""
    out = certs(tmp_path / "new-ca", "--also-trust", str(default_out / "ca.crt"))
    new_ca, old_ca = load(out / "ca.crt"), load(default_out / "ca.crt")
    assert new_ca != old_ca
    assert trusted_by_webhook(out / "webhooks.yaml") == [
        ("ValidatingWebhookConfiguration", VALIDATE_PATH, [new_ca, old_ca]),
        ("MutatingWebhookConfiguration", MUTATE_PATH, [new_ca, old_ca]),
    ]
    assert trusted_by_webhook(out / "webhooks-new-ca-only.yaml") == [
        ("ValidatingWebhookConfiguration", VALIDATE_PATH, [new_ca]),
        ("MutatingWebhookConfiguration", MUTATE_PATH, [new_ca]),
    ]
    load(out / "tls.crt").verify_directly_issued_by(new_ca)


def trusted_by_webhook(path: Path) -> list[tuple[str, str, list[x509.Certificate]]]:
    """(configuration kind, webhook path, the CAs of its caBundle) for every webhook in
    `path`, in the file's order."""
    return [
        (doc["kind"], webhook["clientConfig"]["service"]["path"],
         x509.load_pem_x509_certificates(base64.b64decode(webhook["clientConfig"]["caBundle"])))
        for doc in webhook_documents(path) for webhook in doc["webhooks"]
    ]


def test_help_lists_the_options() -> None:
    result = run_cli("certs", "--help")
    assert result.returncode == 0
    for option in ("--service", "--namespace", "--out", "--days", "--key-type", "--dns-name",
                   "--ip-address", "--ca-cert", "--ca-key", "--also-trust"):
        assert option in result.stdout
