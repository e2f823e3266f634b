"""The Validating and Mutating webhook configurations, as the API server needs them."""

from typing import Any

from app.admission.handlers import MIGRATION_GROUP, MIGRATION_RESOURCE, MUTATE_PATH, VALIDATE_PATH
from app.policy.validation import GROUP as POLICY_GROUP
from app.policy.validation import RESOURCE as POLICY_RESOURCE
from app.policy.validation import VERSIONS as POLICY_VERSIONS

NAME = "migration-policy-webhook"
SERVICE_PORT = 443
TIMEOUT_SECONDS = 5
IGNORE_LABEL = "migration-policy-webhook.kubevirt.io/ignore"
"""A namespace labelled with this key and "true" is left out of the mutating webhook."""


def _configuration(kind: str, webhook: dict[str, Any]) -> dict[str, Any]:
    """One configuration holding one webhook, with the settings both webhooks share."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": NAME},
        "webhooks": [{
            **webhook,
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "admissionReviewVersions": ["v1", "v1beta1"],
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

    validating = _configuration("ValidatingWebhookConfiguration", {
        "name": "validate.migrationpolicies.migrations.kubevirt.io",
        "clientConfig": client_config(VALIDATE_PATH),
        "rules": [{
            "apiGroups": [POLICY_GROUP],
            "apiVersions": list(POLICY_VERSIONS),
            "operations": ["CREATE", "UPDATE"],
            "resources": [POLICY_RESOURCE],
            "scope": "Cluster",
        }],
        "failurePolicy": "Fail",
    })
    mutating = _configuration("MutatingWebhookConfiguration", {
        "name": "stamp.virtualmachineinstancemigrations.kubevirt.io",
        "clientConfig": client_config(MUTATE_PATH),
        "rules": [{
            "apiGroups": [MIGRATION_GROUP],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": [MIGRATION_RESOURCE],
            "scope": "Namespaced",
        }],
        "failurePolicy": "Ignore",
        # A later mutating webhook may change the migration: look at it again then.
        "reinvocationPolicy": "IfNeeded",
        "namespaceSelector": {"matchExpressions": [
            {"key": IGNORE_LABEL, "operator": "NotIn", "values": ["true"]}]},
    })
    return [validating, mutating]
