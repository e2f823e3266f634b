"""Policies stored in the real API server past the shipped validating webhook, as a cluster
holds them when they were written before the webhook was installed (or under other rules):
what `audit` and the kubectl plugin are for.

The shipped ValidatingWebhookConfiguration, if registered (tests/cluster/conftest.py's
`webhook`), is deleted for the writes and created again as it was, and the API server is
seen calling it again before this returns, so a later test finds the webhook in force.
"""

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

from app.admission.configurations import NAME
from tests.support.control_plane import ControlPlane

DEADLINE = 30.0
POLICIES = "/apis/migrations.kubevirt.io/v1alpha1/migrationpolicies"
VALIDATING = 'webhook "validate.migrationpolicies.migrations.kubevirt.io"'
"""How the API server names the shipped policy webhook in a denial or a failed call."""

PROBE = {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
         "metadata": {"name": "unvalidated-probe"},
         "spec": {"bandwidthPerMigration": "-1Gi", "selectors": {}}}
"""A policy the webhook refuses and the CRD's schema lets through (created as a dry run)."""


def store_without_validation(plane: ControlPlane, policies: Sequence[dict[str, Any]]) -> None:
    """Create `policies` (MigrationPolicy objects) whatever the webhook would say of them."""
    found = plane.kubectl("get", "validatingwebhookconfiguration", NAME, "-o", "json",
                          "--ignore-not-found").stdout
    configuration = json.loads(found) if found.strip() else None
    if configuration is not None:
        configuration["metadata"] = {"name": NAME}
        plane.kubectl("delete", "validatingwebhookconfiguration", NAME)
    try:
        with plane.client() as client:
            for policy in policies:
                _create_once_unchecked(client, policy)
    finally:
        if configuration is not None:
            plane.kubectl("create", "-f", "-", stdin=json.dumps(configuration))
            _until_in_force(plane)


def _create_once_unchecked(client: httpx.Client, policy: dict[str, Any]) -> None:
    """POST until the API server no longer calls the deleted configuration's webhook (it
    drops a configuration shortly after it is deleted)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = client.post(POLICIES, json=policy)
        if answer.status_code == 201:
            return
        assert VALIDATING in _message(answer) and time.monotonic() < deadline, answer.text
        time.sleep(0.1)


def _until_in_force(plane: ControlPlane) -> None:
    """Until a server-side dry run of PROBE reaches the shipped webhook again."""
    deadline = time.monotonic() + DEADLINE
    with plane.client() as client:
        while True:
            answer = client.post(POLICIES, params={"dryRun": "All"}, json=PROBE)
            if answer.status_code != 201 and VALIDATING in _message(answer):
                return
            assert time.monotonic() < deadline, "the webhook configuration is not in force"
            time.sleep(0.1)


def _message(answer: httpx.Response) -> str:
    """The message of the API server's Status, "" if the answer is not one."""
    try:
        return str(answer.json().get("message", ""))
    except ValueError:
        return ""
