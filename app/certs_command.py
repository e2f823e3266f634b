"""`certs`: a CA and serving certificate for the in-cluster Service, with its manifests."""

import argparse
import base64
from pathlib import Path
from typing import Any

import yaml

from app.certificates import KeyType, make_ca, make_serving_certificate, write_private
from app.webhook_config import NAME, webhook_configurations

SECRET_NAME = "migration-policy-webhook-tls"


def service_dns_names(service: str, namespace: str) -> list[str]:
    """Every name the API server may use for the Service, the canonical one first."""
    return [
        f"{service}.{namespace}.svc",
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def add_certs_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    certs = commands.add_parser("certs", help="make a CA, serving certificate and manifests")
    certs.add_argument("--service", default=NAME)
    certs.add_argument("--namespace", default=NAME)
    certs.add_argument("--out", type=Path, required=True)
    certs.add_argument("--days", type=int, default=365)
    certs.add_argument("--key-type", choices=[kind.value for kind in KeyType],
                       default=KeyType.ECDSA.value)


def _secret(namespace: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> dict[str, Any]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET_NAME, "namespace": namespace},
        "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem), "ca.crt": b64(ca_pem)},
    }


def run_certs(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise SystemExit("--days must be 1 or more")
    key_type = KeyType(args.key_type)
    names = service_dns_names(args.service, args.namespace)
    ca = make_ca(f"{args.service}.{args.namespace} webhook CA", days=args.days,
                 key_type=key_type)
    serving = make_serving_certificate(ca, names, days=args.days, key_type=key_type)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = ca.certificate_pem(), serving.certificate_pem(), serving.key_pem()
    (out / "ca.crt").write_bytes(ca_pem)
    (out / "tls.crt").write_bytes(cert_pem)
    write_private(out / "tls.key", key_pem)
    write_private(out / "secret.yaml", yaml.safe_dump(
        _secret(args.namespace, cert_pem, key_pem, ca_pem), sort_keys=False).encode())
    configs = webhook_configurations(args.service, args.namespace,
                                     base64.b64encode(ca_pem).decode())
    (out / "webhooks.yaml").write_text(yaml.safe_dump_all(configs, sort_keys=False))
    print(f"wrote {out}/ca.crt, tls.crt, tls.key, secret.yaml and webhooks.yaml for "
          f"{', '.join(names)}")
    return 0
