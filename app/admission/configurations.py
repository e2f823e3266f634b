"""The Validating and Mutating webhook configurations, as the API server needs them."""

from typing import Any

from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH
from app.k8s.resources import (
    ADMISSION_REVIEW,
    MIGRATION_POLICIES,
    MUTATING_WEBHOOK_CONFIGURATION,
    VALIDATING_WEBHOOK_CONFIGURATION,
    VIRTUAL_MACHINE_INSTANCE_MIGRATIONS,
    ObjectType,
    Resource,
)

NAME = "migration-policy-webhook"
SERVICE_PORT = 443
TIMEOUT_SECONDS = 5
IGNORE_LABEL = "migration-policy-webhook.kubevirt.io/ignore"
"""A namespace labelled with this key and "true" is left out of the mutating webhook."""


def _configuration(kind: ObjectType, webhook: dict[str, Any]) -> dict[str, Any]:
    """One configuration holding one webhook, with the settings both webhooks share."""
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": NAME},
        "webhooks": [{
            **webhook,
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "admissionReviewVersions": list(ADMISSION_REVIEW.versions),
            "matchPolicy": "Equivalent",
        }],
    }


def webhook_configurations(service: str, namespace: str, ca_bundle: str) -> list[dict[str, Any]]:
    """The two configurations, pointing at `service` in `namespace`, trusting `ca_bundle`."""

    def client_config(path: str) -> dict[str, Any]:
        return {
            "service": {"name": service, "namespace": namespace, "path": path,
                        "port": SERVICE_PORT},
            "caBundle": ca_bundle,
        }

    policies, migrations = MIGRATION_POLICIES, VIRTUAL_MACHINE_INSTANCE_MIGRATIONS
    validating = _configuration(VALIDATING_WEBHOOK_CONFIGURATION, {
        "name": f"validate.{policies.group_resource}",
        "clientConfig": client_config(VALIDATE_PATH),
        "rules": [{
            "apiGroups": [policies.group],
            "apiVersions": list(policies.versions),
            "operations": ["CREATE", "UPDATE"],
            "resources": [policies.plural],
            "scope": _scope(policies),
        }],
        "failurePolicy": "Fail",
    })
    mutating = _configuration(MUTATING_WEBHOOK_CONFIGURATION, {
        "name": f"stamp.{migrations.group_resource}",
        "clientConfig": client_config(MUTATE_PATH),
        "rules": [{
            "apiGroups": [migrations.group],
            "apiVersions": list(migrations.versions),
            "operations": ["CREATE"],
            "resources": [migrations.plural],
            "scope": _scope(migrations),
        }],
        "failurePolicy": "Ignore",
        # A later mutating webhook may change the migration: look at it again then.
        "reinvocationPolicy": "IfNeeded",
        "namespaceSelector": {"matchExpressions": [
            {"key": IGNORE_LABEL, "operator": "NotIn", "values": ["true"]}]},
    })
    return [validating, mutating]


def _scope(resource: Resource) -> str:
    return "Namespaced" if resource.namespaced else "Cluster"
