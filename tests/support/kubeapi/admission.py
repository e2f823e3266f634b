"""The API server's write path for a custom resource, for the real kubectl.

`AdmissionFront` adds routes to a `kubeapi.KubeApiServer` so that `kubectl create -f`,
`kubectl apply -f`, `kubectl get` and `kubectl delete` work against it for the
MigrationPolicy CRD the project ships (`manifests/crd.yaml`), and calls the validating
webhooks of a ValidatingWebhookConfiguration over TLS, as the API server does:

- discovery: `/api`, `/apis` (an `APIGroupList`, also when kubectl asks for aggregated
  discovery: the plain content type makes it fall back), `/apis/<group>[/<version>]`, with
  the CRD's versions in the API server's order (the highest kube-aware version first and
  preferred: v1beta1 before v1alpha1), names, categories and verbs;
- `/openapi/v3` and one document per group version whose PATCH operations take
  `fieldValidation`, so kubectl leaves validation to the server (`?fieldValidation=Strict`)
  and needs no `--validate=false`;
- POST (create), PUT (replace: resourceVersion required, as for every custom resource),
  PATCH (`application/merge-patch+json`, what client-side `kubectl apply` sends for a custom
  resource, and `application/json-patch+json`; retried on a conflicting write, as the
  API server's patch handler does), DELETE, and GET/list in every served version, stored in
  the storage version (conversion `None`: only `apiVersion` changes);
- admission: before storing, each webhook whose rules match (operation, group, version,
  resource, scope; `matchPolicy: Equivalent` tries the other served versions) gets an
  `AdmissionReview` (the first of its `admissionReviewVersions` that is v1 or v1beta1) with a
  fresh uuid4 `uid`, kind/resource, requestKind/requestResource, name, operation, userInfo,
  the object as it will be stored (uid, creationTimestamp, generation set) and the old one
  on UPDATE, dryRun and the operation's options, POSTed to its URL with `?timeout=<n>s`,
  trusting only its `caBundle`. The response must be an AdmissionReview of the same version
  whose `response.uid` is the request's. `response.warnings` become `Warning: 299 - "..."`
  headers (deduplicated, truncated past 4096 runes, as the API server's warning recorder
  does), which kubectl prints as `Warning: ...`. A denial becomes the Status of
  k8s.io/apiserver's `webhook/errors.ToStatusErr` (Kubernetes 1.29 to 1.33): the webhook's
  Status with `status.code` raised to at least 400, `status` Failure, and its message
  prefixed `admission webhook "<name>" denied the request: `. A webhook that cannot be
  called or answers wrongly fails the request under `failurePolicy: Fail` with
  apimachinery's `NewInternalError` (500, `Internal error occurred: failed calling webhook
  "<name>": ...`) and is skipped under `Ignore`.

What it does not do: check the CRD's OpenAPI schema or strict field validation (the API
server does both before validating webhooks, so its messages come first for type mistakes
and unknown fields: tests/unit/test_crd_schema.py keeps the schema and the webhook in step), run
mutating webhooks, keep managedFields, or server-side apply. Go's transport error texts
(connection refused, certificate errors) are reproduced closely, not byte for byte.
"""

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tests.support.kubeapi import KubeApiServer
from tests.support.kubeapi.crd import CustomResource
from tests.support.kubeapi.discovery import KUBERNETES_VERSION, Discovery
from tests.support.kubeapi.webhook_calls import ReviewCall, Webhook
from tests.support.kubeapi.writes import Writes

ADMIN = {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins",
                                                     "system:authenticated"]}
"""The user the fixture's bearer token authenticates, as kubeadm's admin.conf user."""


class AdmissionFront(Writes, Discovery):
    """Serves `crd` on `api` for kubectl, calling `webhooks` on every write."""

    def __init__(self, api: KubeApiServer, webhooks: Sequence[Webhook] = (), *,
                 crd: CustomResource | None = None,
                 user: Mapping[str, Any] = ADMIN) -> None:
        self.api = api
        self.crd = crd or CustomResource.from_file()
        if self.crd.storage not in api.resources:
            raise ValueError(f"the KubeApiServer does not store {self.crd.storage}")
        self.webhooks = list(webhooks)
        self.user = dict(user)
        self._lock = threading.Lock()
        self._reviews: list[ReviewCall] = []
        self._add_routes()

    def reviews(self, webhook: str | None = None) -> list[ReviewCall]:
        """Every AdmissionReview sent so far, in order."""
        with self._lock:
            return [call for call in self._reviews if webhook in (None, call.webhook)]


    def _add_routes(self) -> None:
        api = self.api
        group = self.crd.group.replace(".", r"\.")
        plural = self.crd.plural
        api.add_route("GET", r"^/version/?$", lambda r: r.send_json(200, KUBERNETES_VERSION))
        api.add_route("GET", r"^/api/?$", self._core_versions)
        api.add_route("GET", r"^/apis/?$", self._group_list)
        api.add_route("GET", r"^/api/(?P<version>[^/]+)/?$", self._resource_list)
        api.add_route("GET", r"^/apis/(?P<group>[^/]+)/?$", self._group)
        api.add_route("GET", r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/?$",
                      self._resource_list)
        api.add_route("GET", r"^/openapi/v3/?$", self._openapi_paths)
        api.add_route("GET", r"^/openapi/v3/apis/(?P<group>[^/]+)/(?P<version>[^/]+)$",
                      self._openapi_document)
        collection = rf"^/apis/{group}/(?P<version>[^/]+)/{plural}$"
        single = rf"^/apis/{group}/(?P<version>[^/]+)/{plural}/(?P<name>[^/]+)$"
        # GET and list of the storage version are KubeApiServer's own routes (added first).
        api.add_route("GET", collection, self._list)
        api.add_route("GET", single, self._get)
        api.add_route("POST", collection, self._create)
        api.add_route("PUT", single, self._replace)
        api.add_route("PATCH", single, self._patch)
        api.add_route("DELETE", single, self._delete)
