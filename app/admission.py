"""The AdmissionReview protocol: parse a review, build its response.

Both `admission.k8s.io/v1` and `v1beta1` are read; the response carries the request's
apiVersion and kind and echoes `request.uid`. Responses are built by a few named helpers
(`allowed`, `denied`, `patched`, `errored`) rather than assembled at each call site.
"""

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import orjson

from app.findings import Findings

REVIEW_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
REVIEW_KIND = "AdmissionReview"


_MANIFEST_HINT = (" (the webhooks take an AdmissionReview, in JSON, as in samples/reviews/; "
                  "to check a manifest, run: migration-policy-webhook lint FILE)")


class ReviewError(ValueError):
    """The body is not an AdmissionReview this service can answer (HTTP 400)."""


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class StatusCause(TypedDict):
    """A `metav1.StatusCause`. Its Go field Type travels as `reason` on the wire; the same
    value is also written as `type`, the name the contract and the Go API use."""

    reason: str
    type: str
    field: str
    message: str


class StatusDetails(TypedDict, total=False):
    name: str
    group: str
    kind: str
    causes: list[StatusCause]


class Status(TypedDict, total=False):
    code: int
    reason: str
    message: str
    details: StatusDetails


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]
    patchType: NotRequired[str]
    patch: NotRequired[str]
    auditAnnotations: NotRequired[dict[str, str]]


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of `request` the handlers use."""

    api_version: str
    uid: str
    operation: str
    resource: GroupVersionResource
    name: str
    namespace: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None

    @property
    def resource_name(self) -> str:
        group = self.resource["group"]
        return f"{group}/{self.resource['resource']}" if group else self.resource["resource"]


def parse_review(body: bytes) -> AdmissionRequest:
    """Decode and check an AdmissionReview body; raise ReviewError naming what is wrong."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ReviewError(f"the body is not valid JSON: {error}{_MANIFEST_HINT}") from None
    if not isinstance(review, dict):
        raise ReviewError("the body must be a JSON object: an AdmissionReview")
    api_version = review.get("apiVersion")
    if api_version not in REVIEW_API_VERSIONS or review.get("kind") != REVIEW_KIND:
        raise ReviewError(
            f"expected kind AdmissionReview with apiVersion {' or '.join(REVIEW_API_VERSIONS)}, "
            f"got kind {_shown(review.get('kind'))} apiVersion {_shown(api_version)}"
            f"{_MANIFEST_HINT if review.get('kind') else ''}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("request is missing: an AdmissionReview sent to a webhook has one")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid is missing: it must be a non-empty string")
    operation = request.get("operation")
    if not isinstance(operation, str) or not operation:
        raise ReviewError("request.operation is missing: CREATE, UPDATE, DELETE or CONNECT")
    return AdmissionRequest(
        api_version=api_version,
        uid=uid,
        operation=operation,
        resource=_resource(request.get("resource")),
        name=_string(request, "name"),
        namespace=_string(request, "namespace"),
        object=_object(request, "object"),
        old_object=_object(request, "oldObject"),
    )


def _resource(value: Any) -> GroupVersionResource:
    if not isinstance(value, dict) or not all(
        isinstance(value.get(key, ""), str) for key in ("group", "version", "resource")
    ):
        raise ReviewError(
            "request.resource is missing: an object with group, version and resource"
        )
    return GroupVersionResource(
        group=value.get("group", ""), version=value.get("version", ""),
        resource=value.get("resource", ""),
    )


def _string(request: Mapping[str, Any], key: str) -> str:
    value = request.get(key, "")
    if not isinstance(value, str):
        raise ReviewError(f"request.{key} must be a string, got {_shown(value)}")
    return value


def _object(request: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = request.get(key)
    if value is not None and not isinstance(value, dict):
        raise ReviewError(f"request.{key} must be a JSON object, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, dict | list) else "an object"
    return text if len(text) <= 60 else text[:56] + '..."'


def allowed(uid: str, warnings: Sequence[str] = ()) -> AdmissionResponse:
    response = AdmissionResponse(uid=uid, allowed=True)
    if warnings:
        response["warnings"] = list(warnings)
    return response


def denied(uid: str, *, code: int, reason: str, message: str) -> AdmissionResponse:
    """A refusal without field causes: a review the webhook cannot judge."""
    return AdmissionResponse(
        uid=uid, allowed=False, status=Status(code=code, reason=reason, message=message)
    )


def invalid(
    uid: str, *, findings: Findings, group: str, kind: str, name: str
) -> AdmissionResponse:
    """A 422 Invalid refusal with one cause per problem, as kubectl prints them."""
    details = StatusDetails(
        name=name,
        group=group,
        kind=kind,
        causes=[
            StatusCause(reason=cause.type.value, type=cause.type.value, field=cause.field,
                        message=cause.message)
            for cause in findings.causes
        ],
    )
    response = AdmissionResponse(
        uid=uid,
        allowed=False,
        status=Status(code=422, reason="Invalid", message=findings.summary(), details=details),
    )
    if findings.warnings:
        response["warnings"] = list(findings.warnings)
    return response


def patched(
    uid: str,
    patch: Sequence[Mapping[str, Any]],
    *,
    warnings: Sequence[str] = (),
    audit: Mapping[str, str] | None = None,
) -> AdmissionResponse:
    """Allowed, with a JSONPatch when there is anything to change."""
    response = allowed(uid, warnings)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(patch))).decode()
    if audit:
        response["auditAnnotations"] = dict(audit)
    return response


def encode_review(api_version: str, response: AdmissionResponse) -> bytes:
    """The response AdmissionReview, in the request's apiVersion."""
    return orjson.dumps({"apiVersion": api_version, "kind": REVIEW_KIND, "response": response})
