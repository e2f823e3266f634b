"""The service's settings, checked once at start-up."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.feature_gates import KNOWN_FEATURE_GATES
from app.labels import dns1123_subdomain_problems
from app.precedence import Precedence

DEFAULT_ANNOTATION_PREFIX = "migrations.kubevirt.io/"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
SAMPLE_STATE = Path(__file__).resolve().parent.parent / "samples" / "cluster"
KUBE_STATE = "kube"


class Settings(BaseModel):
    """What `serve` (and `review`, `lint`) run with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(8443, ge=1, le=65535)
    state: str = str(SAMPLE_STATE)
    precedence: Precedence = Precedence.DOCUMENTED
    annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX
    feature_gates: frozenset[str] = frozenset()
    deny_duplicate_selectors: bool = False
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None
    certs_dir: Path = Path("certs")
    kubeconfig: Path | None = None

    @field_validator("feature_gates")
    @classmethod
    def _known_gates(cls, gates: frozenset[str]) -> frozenset[str]:
        unknown = sorted(gates - KNOWN_FEATURE_GATES)
        if unknown:
            raise ValueError(f"unknown feature gate {', '.join(unknown)}: known gates are "
                             f"{', '.join(sorted(KNOWN_FEATURE_GATES))}")
        return gates

    @field_validator("annotation_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        domain = prefix.removesuffix("/")
        if not prefix.endswith("/") or dns1123_subdomain_problems(domain):
            raise ValueError(f"{prefix!r} must be a DNS subdomain followed by '/', "
                             "e.g. 'migrations.kubevirt.io/'")
        return prefix


def parse_feature_gates(text: str) -> frozenset[str]:
    """`A,B` as given to --feature-gates."""
    return frozenset(gate.strip() for gate in text.split(",") if gate.strip())
