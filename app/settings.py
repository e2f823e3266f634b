"""The service's settings, checked once at start-up: every default is written here only."""

import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.k8s.labels import dns1123_subdomain_problems
from app.policy.feature_gates import KNOWN_FEATURE_GATES
from app.policy.precedence import Precedence

DEFAULT_ANNOTATION_PREFIX = "migrations.kubevirt.io/"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
SAMPLE_STATE = Path(__file__).resolve().parent.parent / "samples" / "cluster"
KUBE_STATE = "kube"
ALL_ADDRESSES = ""
"""`--host ""`: listen on every address, IPv4 and IPv6."""
DISABLED = "0"
"""A bind address of `0` opens no port."""


class Enforcement(StrEnum):
    """What the validating webhook does with an invalid policy (`--enforcement`)."""

    DENY = "deny"
    """Refuse it, every problem as a cause."""
    WARN = "warn"
    """Admit it, every problem as a warning: to roll out on a cluster with invalid policies."""


class LoggingFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


_BIND_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(?P<port>[0-9]{1,5})")
BIND_ADDRESS_FORM = "host:port, :port (every address), [ipv6]:port, or 0 (off)"


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """`host:port` → (host, port), host "" for every address and IPv6 unbracketed; `0` →
    None (off). Raise ValueError saying what is accepted."""
    if address == DISABLED:
        return None
    match = _BIND_ADDRESS.fullmatch(address)
    port = int(match["port"]) if match else 0
    if not match or not 1 <= port <= 65535:
        raise ValueError(f"{address!r} is not a bind address: use {BIND_ADDRESS_FORM}, "
                         "the port from 1 to 65535, e.g. :8081 or 127.0.0.1:8081")
    return match["host"].removeprefix("[").removesuffix("]"), port



class Settings(BaseModel):
    """What `serve` (and `review`, `lint`, `explain`, `audit`) run with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = ALL_ADDRESSES
    port: int = Field(8443, ge=1, le=65535)
    state: str = str(SAMPLE_STATE)
    precedence: Precedence = Precedence.DOCUMENTED
    annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX
    feature_gates: frozenset[str] = frozenset()
    deny_duplicate_selectors: bool = False
    enforcement: Enforcement = Enforcement.DENY
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None
    certs_dir: Path = Path("certs")
    kubeconfig: Path | None = None
    kube_context: str | None = None
    """The kubeconfig context to use (`--context`); None for its current context."""
    health_probe_bind_address: str = DISABLED
    metrics_bind_address: str = DISABLED
    logging_format: LoggingFormat = LoggingFormat.TEXT
    log_level: LogLevel = LogLevel.INFO
    request_read_timeout: float = Field(10.0, gt=0)
    keep_alive_timeout: float = Field(120.0, gt=0)
    max_connections: int = Field(1000, ge=1)
    max_concurrent_requests: int = Field(64, ge=1)
    shutdown_grace_period: float = Field(15.0, ge=0)
    watch_idle_timeout: float = Field(90.0, gt=0)
    max_staleness: float = Field(300.0, gt=0)
    impact_warnings: bool = True
    """A valid policy under review gets an `impact:` warning: what it would govern now."""
    coverage_interval: float = Field(30.0, gt=0)
    """Seconds between two coverage passes at most (only when the state has changed)."""
    per_policy_metrics: bool = True

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

    @field_validator("health_probe_bind_address", "metrics_bind_address")
    @classmethod
    def _bind_address(cls, address: str) -> str:
        parse_bind_address(address)
        return address

    @property
    def health_probe_address(self) -> tuple[str, int] | None:
        """Where /healthz and /readyz are served over plain HTTP, or None."""
        return parse_bind_address(self.health_probe_bind_address)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where /metrics is served over plain HTTP, or None."""
        return parse_bind_address(self.metrics_bind_address)


def default(field: str) -> object:
    """The default of a Settings field, for the command line to show and use."""
    return Settings.model_fields[field].default


def parse_feature_gates(text: str) -> frozenset[str]:
    """`A,B` as given to --feature-gates."""
    return frozenset(gate.strip() for gate in text.split(",") if gate.strip())
