"""`certs`: a CA and serving certificate for the in-cluster Service, with its manifests.

Written to `--out`: `ca.crt`, `ca.key` (only when a new CA is made), `tls.crt`, `tls.key`,
`secret.yaml` (the `kubernetes.io/tls` Secret the Deployment mounts) and `webhooks.yaml` (the
webhook configurations with the CA as `caBundle`). `--ca-cert/--ca-key` reuse a CA, so the
serving certificate can be renewed without touching the webhook configurations;
`--also-trust` keeps an old CA in the `caBundle` while a new CA rolls out.
"""

import argparse
import base64
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from app.admission.configurations import NAME, webhook_configurations
from app.k8s.resources import SECRET
from app.serving.certificates import (
    CertificateError,
    KeyPair,
    KeyType,
    load_ca,
    load_certificates,
    make_ca,
    make_serving_certificate,
    write_private,
)

SECRET_NAME = "migration-policy-webhook-tls"
DEFAULT_DAYS = 365
DEFAULT_CA_DAYS = 3650
EXIT_USAGE = 2
FINAL_WEBHOOKS = "webhooks-new-ca-only.yaml"


def service_dns_names(service: str, namespace: str) -> list[str]:
    """Every name the API server may use for the Service, the canonical one first."""
    return [
        f"{service}.{namespace}.svc",
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def add_certs_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    certs = commands.add_parser(
        "certs", help="make a CA, serving certificate and manifests",
        description="Make a CA and a serving certificate for the webhook's Service, and write "
                    "them with the Secret and webhook configurations that use them.",
    )
    certs.add_argument("--service", default=NAME, help=f"Service name (default: {NAME})")
    certs.add_argument("--namespace", default=NAME, help=f"its namespace (default: {NAME})")
    certs.add_argument("--out", type=Path, required=True, help="directory to write into")
    certs.add_argument("--days", type=int, default=DEFAULT_DAYS,
                       help=f"serving certificate lifetime (default: {DEFAULT_DAYS})")
    certs.add_argument("--ca-days", type=int, default=DEFAULT_CA_DAYS,
                       help=f"lifetime of a new CA (default: {DEFAULT_CA_DAYS})")
    certs.add_argument("--key-type", choices=[kind.value for kind in KeyType],
                       default=KeyType.ECDSA.value,
                       help="ecdsa (P-256, the default) or rsa (2048 bits)")
    certs.add_argument("--dns-name", action="append", default=[], metavar="NAME",
                       help="another DNS name for the serving certificate (repeatable)")
    certs.add_argument("--ip-address", action="append", default=[], metavar="IP",
                       help="an IP address for the serving certificate (repeatable)")
    certs.add_argument("--ca-cert", type=Path, help="sign with this existing CA certificate")
    certs.add_argument("--ca-key", type=Path, help="... and its private key")
    certs.add_argument("--also-trust", action="append", default=[], type=Path, metavar="CA_FILE",
                       help="also put these CA certificates in caBundle, e.g. the old CA "
                            f"during a CA rotation; then {FINAL_WEBHOOKS} is written too")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_secret(namespace: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> dict[str, Any]:
    """The `kubernetes.io/tls` Secret the Deployment mounts."""
    return {
        "apiVersion": SECRET.api_version,
        "kind": SECRET.kind,
        "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET_NAME, "namespace": namespace},
        "data": {"tls.crt": _b64(cert_pem), "tls.key": _b64(key_pem), "ca.crt": _b64(ca_pem)},
    }


def _check(args: argparse.Namespace) -> None:
    if args.days < 1 or args.ca_days < 1:
        raise CertificateError("--days and --ca-days must be 1 or more")
    if (args.ca_cert is None) != (args.ca_key is None):
        raise CertificateError("--ca-cert and --ca-key go together")


def _ca(args: argparse.Namespace, key_type: KeyType) -> tuple[KeyPair, bool]:
    """The signing CA, and whether it is new."""
    if args.ca_cert is not None:
        return load_ca(args.ca_cert, args.ca_key), False
    ca = make_ca(f"{args.service}.{args.namespace} webhook CA", days=args.ca_days,
                 key_type=key_type)
    return ca, True


def _pem_bundle(paths: Sequence[Path]) -> bytes:
    """The certificates in `paths`, as one PEM bundle."""
    return b"".join(
        certificate.public_bytes(serialization.Encoding.PEM)
        for path in paths
        for certificate in load_certificates(path)
    )


def _write_webhooks(path: Path, service: str, namespace: str, ca_bundle: bytes) -> None:
    configs = webhook_configurations(service, namespace, _b64(ca_bundle))
    path.write_text(yaml.safe_dump_all(configs, sort_keys=False))


def run_certs(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except CertificateError as error:
        print(f"certs: {error}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    _check(args)
    key_type = KeyType(args.key_type)
    names = list(dict.fromkeys([*service_dns_names(args.service, args.namespace),
                                *(name for name in args.dns_name if name)]))
    ca, new_ca = _ca(args, key_type)
    old_cas = _pem_bundle(args.also_trust)
    try:
        serving = make_serving_certificate(ca, names, days=args.days, key_type=key_type,
                                           ip_addresses=args.ip_address)
    except ValueError as error:
        raise CertificateError(str(error)) from error
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = ca.certificate_pem(), serving.certificate_pem(), serving.key_pem()
    written = ["ca.crt", "tls.crt", "tls.key", "secret.yaml", "webhooks.yaml"]
    (out / "ca.crt").write_bytes(ca_pem)
    if new_ca:
        write_private(out / "ca.key", ca.key_pem())
        written.insert(1, "ca.key")
    (out / "tls.crt").write_bytes(cert_pem)
    write_private(out / "tls.key", key_pem)
    secret = tls_secret(args.namespace, cert_pem, key_pem, ca_pem)
    write_private(out / "secret.yaml", yaml.safe_dump(secret, sort_keys=False).encode())
    _write_webhooks(out / "webhooks.yaml", args.service, args.namespace, ca_pem + old_cas)
    if old_cas:
        _write_webhooks(out / FINAL_WEBHOOKS, args.service, args.namespace, ca_pem)
        written.append(FINAL_WEBHOOKS)
    expires = serving.certificate.not_valid_after_utc
    print(f"wrote {', '.join(str(out / name) for name in written)}\n"
          f"serving certificate for {', '.join([*names, *args.ip_address])}, "
          f"valid until {expires:%Y-%m-%d}")
    if expires == ca.certificate.not_valid_after_utc:
        print("note: the serving certificate ends with its CA: make a new CA before then")
    return 0
