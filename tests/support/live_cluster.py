"""The real service on `--state kube` against the API stand-in, and what the live-cluster
tests ask of it: a seeded cluster, a migration's decision, polling until a change shows."""

import base64
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jsonpatch
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kubeapi import (
    MIGRATION_POLICIES,
    NAMESPACES,
    VMIS,
    KubeApiServer,
    Object,
    Resource,
    namespace,
    policy,
    vmi,
)
from tests.support.reviews import MUTATE, migration_review, post_review
from tests.support.service import RunningService, start_service, stop_service

PREFIX = "migrations.kubevirt.io/"
METRICS_PREFIX = "migration_policy_webhook_"
DEADLINE = 30.0

T = TypeVar("T")


@dataclass(frozen=True)
class Decision:
    """What the webhook did to a new migration."""

    annotations: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def policy(self) -> str | None:
        return self.annotations.get(PREFIX + "policy")


def decide(client: httpx.Client, namespace_name: str, vmi_name: str) -> Decision:
    """POST a migration review; the migration's annotations after the patch is applied."""
    review = migration_review(namespace_name, vmi_name)
    response = post_review(client, MUTATE, review, allowed=True)
    migration = review["request"]["object"]
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        migration = jsonpatch.apply_patch(migration,
                                          json.loads(base64.b64decode(response["patch"])))
    return Decision(migration["metadata"].get("annotations", {}), response.get("warnings", []))


def wait_for(probe: Callable[[], T], expected: T | Callable[[T], bool]) -> T:
    """Poll `probe` until it returns `expected` (or satisfies it), or the deadline passes."""
    matches = expected if callable(expected) else (lambda value: value == expected)
    deadline = time.monotonic() + DEADLINE
    while True:
        value = probe()
        if matches(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def policy_of(client: httpx.Client, namespace_name: str, vmi_name: str) -> Callable[[], Any]:
    return lambda: decide(client, namespace_name, vmi_name).policy


def list_count(api: KubeApiServer, resource: Resource) -> int:
    return len(api.calls("list", resource))


def seed(api: KubeApiServer, *policies: Object) -> None:
    """Namespace hpc (env=prod) with VMIs db (app=db, tier=gold) and web (app=web), and
    `policies` (MigrationPolicy objects)."""
    api.create(NAMESPACES, namespace("hpc", {"env": "prod"}))
    api.create(NAMESPACES, namespace("default"))
    api.create(VMIS, vmi("hpc", "db", {"app": "db", "tier": "gold"}))
    api.create(VMIS, vmi("hpc", "web", {"app": "web"}))
    api.load(MIGRATION_POLICIES, policies)


def db_policy() -> Object:
    """The policy `db`, for the VMIs labelled app=db (the seeded VMI db)."""
    return policy("db", vmi_selector={"app": "db"})


@contextmanager
def webhook(
    tmp_path: Path, api: KubeApiServer, *, wait_ready: bool = True, token: str | None = None,
    args: Sequence[str] = (),
) -> Iterator[tuple[RunningService, httpx.Client]]:
    """The real service on `--state kube`, configured by a kubeconfig for `api`."""
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token=token)
    service = start_service(
        tmp_path, ["--state", "kube", "--kubeconfig", str(kubeconfig), *args],
        wait_ready=wait_ready)
    try:
        with service.client() as client:
            yield service, client
    finally:
        stop_service(service)


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics by (name, labels)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    return samples.get((METRICS_PREFIX + name, frozenset(labels.items())))
