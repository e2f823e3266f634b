"""The Validating and Mutating webhook configurations, as the API server needs them."""

from typing import Any

from app.policy_validation import GROUP as POLICY_GROUP
from app.policy_validation import RESOURCE as POLICY_RESOURCE
from app.policy_validation import VERSIONS as POLICY_VERSIONS
from app.webhooks import MIGRATION_GROUP, MIGRATION_RESOURCE, MUTATE_PATH, VALIDATE_PATH

NAME = "migration-policy-webhook"
SERVICE_PORT = 443
TIMEOUT_SECONDS = 5


def _client_config(service: str, namespace: str, path: str, ca_bundle: str) -> dict[str, Any]:
    return {
        "service": {"name": service, "namespace": namespace, "path": path,
                    "port": SERVICE_PORT},
        "caBundle": ca_bundle,
    }


def webhook_configurations(service: str, namespace: str, ca_bundle: str) -> list[dict[str, Any]]:
    """The two configurations, pointing at `service` in `namespace`, trusting `ca_bundle`."""
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": [{
            "name": "validate.migrationpolicies.migrations.kubevirt.io",
            "clientConfig": _client_config(service, namespace, VALIDATE_PATH, ca_bundle),
            "rules": [{
                "apiGroups": [POLICY_GROUP],
                "apiVersions": list(POLICY_VERSIONS),
                "operations": ["CREATE", "UPDATE"],
                "resources": [POLICY_RESOURCE],
                "scope": "Cluster",
            }],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "admissionReviewVersions": ["v1", "v1beta1"],
            "matchPolicy": "Equivalent",
        }],
    }
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": [{
            "name": "stamp.virtualmachineinstancemigrations.kubevirt.io",
            "clientConfig": _client_config(service, namespace, MUTATE_PATH, ca_bundle),
            "rules": [{
                "apiGroups": [MIGRATION_GROUP],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": [MIGRATION_RESOURCE],
                "scope": "Namespaced",
            }],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "admissionReviewVersions": ["v1", "v1beta1"],
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
        }],
    }
    return [validating, mutating]
