"""Making a CA and a serving certificate signed by it, with `cryptography`."""

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class KeyType(StrEnum):
    ECDSA = "ecdsa"
    RSA = "rsa"


class CertificateError(ValueError):
    """A certificate or key file that cannot serve its purpose."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: PrivateKey

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def new_key(key_type: KeyType) -> PrivateKey:
    """ECDSA P-256, or RSA 2048."""
    if key_type is KeyType.RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _validity(
    days: int, not_after_limit: datetime.datetime | None = None
) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    if not_after_limit is not None:
        not_after = min(not_after, not_after_limit)
    return now - datetime.timedelta(minutes=5), not_after


def make_ca(common_name: str, *, days: int, key_type: KeyType) -> KeyPair:
    """A self-signed CA that can sign serving certificates only."""
    key = new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity(days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(certificate, key)


def make_serving_certificate(
    ca: KeyPair, dns_names: Sequence[str], *, days: int, key_type: KeyType,
    ip_addresses: Sequence[str] = (),
) -> KeyPair:
    """A TLS server certificate for `dns_names` (and IPs), signed by `ca`.

    It never outlives `ca`: its end is cut to the CA's when `days` would reach past it.
    """
    if not dns_names:
        raise CertificateError("a serving certificate needs at least one DNS name")
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return _leaf(ca, dns_names[0], alt_names, ExtendedKeyUsageOID.SERVER_AUTH,
                 days=days, key_type=key_type)


def make_client_certificate(
    ca: KeyPair, common_name: str, *, days: int, key_type: KeyType,
    organizations: Sequence[str] = (),
) -> KeyPair:
    """A TLS client certificate (as the API server presents with `--client-ca-file`).
    Kubernetes reads the common name as the user and each organization as a group."""
    return _leaf(ca, common_name, [], ExtendedKeyUsageOID.CLIENT_AUTH, days=days,
                 key_type=key_type, organizations=organizations)


def _leaf(
    ca: KeyPair, common_name: str, alt_names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier, *, days: int, key_type: KeyType,
    organizations: Sequence[str] = (),
) -> KeyPair:
    key = new_key(key_type)
    not_before, not_after = _validity(days, ca.certificate.not_valid_after_utc)
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, name) for name in organizations]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=key_type is KeyType.RSA,
                key_cert_sign=False, crl_sign=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def load_ca(cert_file: Path, key_file: Path) -> KeyPair:
    """An existing CA, checked: a CA certificate, still valid, and its own private key."""
    try:
        certificate = load_certificate(cert_file)
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise CertificateError(f"cannot load the CA {cert_file} / {key_file}: {error}") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateError(f"{key_file}: only ECDSA and RSA CA keys are supported")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        is_ca = constraints.value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertificateError(f"{cert_file} is not a CA certificate (basicConstraints CA:TRUE)")
    if key.public_key() != certificate.public_key():
        raise CertificateError(f"{key_file} is not the private key of {cert_file}")
    if certificate.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        raise CertificateError(f"{cert_file} expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    return KeyPair(certificate, key)


def write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle file."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as error:
        raise CertificateError(f"cannot read certificates from {path}: {error}") from error
    return certificates
