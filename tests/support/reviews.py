"""AdmissionReview bodies as the API server sends them, and one way to post them.

`post_review` is what every test that posts a review to the running service uses: it checks
the envelope the contract promises for any answer (200, JSON, an AdmissionReview of the
request's apiVersion whose `response.uid` is the request's) and returns the response.
"""

import json
import uuid
from typing import Any

import httpx
import orjson

from tests.support.service import SAMPLE_REVIEWS

Review = dict[str, Any]

VALIDATE = "/validate-migrationpolicy"
MUTATE = "/mutate-virtualmachineinstancemigration"


def sample_review(name: str) -> Review:
    """A review from samples/reviews/, e.g. `policy-valid-example.json` (a fresh copy)."""
    review: Review = json.loads((SAMPLE_REVIEWS / name).read_text())
    return review


def review_of_size(size: int) -> bytes:
    """The sample policy's review, padded (a field no reader looks at) to `size` bytes."""
    policy = sample_review("policy-valid-example.json")
    bare = orjson.dumps({**policy, "pad": ""})
    body = orjson.dumps({**policy, "pad": "p" * (size - len(bare))})
    assert len(body) == size
    return body


def migration_review(namespace_name: str, vmi_name: str) -> Review:
    """A CREATE review of a VirtualMachineInstanceMigration of `vmi_name`, with a new uid."""
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "kubevirt.io", "version": "v1",
                     "kind": "VirtualMachineInstanceMigration"},
            "resource": {"group": "kubevirt.io", "version": "v1",
                         "resource": "virtualmachineinstancemigrations"},
            "name": f"migrate-{vmi_name}", "namespace": namespace_name, "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                       "metadata": {"name": f"migrate-{vmi_name}",
                                    "namespace": namespace_name},
                       "spec": {"vmiName": vmi_name}},
            "oldObject": None, "dryRun": False,
        },
    }


def post_review(client: httpx.Client, path: str, review: Review, *,
                allowed: bool | None = None) -> dict[str, Any]:
    """POST `review` to `path`; check the answer's envelope echoes the request; return the
    answer's `response`. `allowed`, if given, is checked too."""
    answer = client.post(path, json=review)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["apiVersion"] == review["apiVersion"]
    assert body["kind"] == "AdmissionReview"
    response: dict[str, Any] = body["response"]
    assert response["uid"] == review["request"]["uid"]
    if allowed is not None:
        assert response["allowed"] is allowed, response
    return response
