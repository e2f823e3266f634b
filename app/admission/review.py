"""The AdmissionReview protocol: parse a review, build its response.

Both `admission.k8s.io/v1` and `v1beta1` are read; the response carries the request's
apiVersion and kind and echoes `request.uid`. Responses are built by a few named helpers
(`allowed`, `denied`, `patched`, `errored`) rather than assembled at each call site.
"""

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict

import orjson

from app.k8s.json_values import OutOfRangeNumber
from app.k8s.resources import ADMISSION_REVIEW
from app.policy.findings import MAX_WARNING_LENGTH, Findings

MAX_UID_LENGTH = 1024
MAX_NAME_LENGTH = 253
"""The longest object name Kubernetes has (a DNS subdomain); longer ones are cut in answers."""
MAX_WARNINGS = 64
MAX_PATCH_LENGTH = 128 * 1024
"""A larger patch (tens of thousands of stale annotations) is not sent: the answer stays
under 256 KiB, and the migration goes through unchanged with a warning."""

_MANIFEST_HINT = (" (the webhooks take an AdmissionReview, in JSON, as in samples/reviews/; "
                  "to check a manifest, run: migration-policy-webhook lint FILE)")


class ReviewError(ValueError):
    """The body is not an AdmissionReview with a uid: HTTP 400, as no answer can name it."""


class BadReview(ValueError):
    """A review with a uid, wrong elsewhere: answered in the protocol, naming the part."""

    def __init__(self, api_version: str, uid: str, resource: str, message: str) -> None:
        super().__init__(message)
        self.api_version = api_version
        self.uid = uid
        self.resource = resource
        """The plural of request.resource if it could be read, or ""."""


Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: tuple[Operation, ...] = ("CREATE", "UPDATE", "DELETE", "CONNECT")


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


class Decision(TypedDict):
    """What a handler decides: the response without its uid, which the edge adds."""

    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]
    patchType: NotRequired[str]
    patch: NotRequired[str]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionResponse(Decision):
    """`response` as sent: the decision, completed with the request's uid."""

    uid: str


class AdmissionRequest(NamedTuple):
    """The parts of `request` the handlers use (a tuple: made in a fraction of a µs)."""

    api_version: str
    uid: str
    operation: Operation
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
    """Decode and check an AdmissionReview body.

    Raises ReviewError for a body that is not a review with a uid (HTTP 400), and BadReview
    for a review with a uid whose other parts are wrong (answered in the protocol).
    """
    review = _decode(body)
    if not isinstance(review, dict):
        raise ReviewError("the body must be a JSON object: an AdmissionReview")
    api_version = review.get("apiVersion")
    known = ADMISSION_REVIEW
    if api_version not in known.api_versions or review.get("kind") != known.kind:
        raise ReviewError(
            f"expected kind {known.kind} with apiVersion {' or '.join(known.api_versions)}, "
            f"got kind {_shown(review.get('kind'))} apiVersion {_shown(api_version)}"
            f"{_MANIFEST_HINT if review.get('kind') else ''}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("request is missing: an AdmissionReview sent to a webhook has one")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid is missing: it must be a non-empty string")
    if len(uid) > MAX_UID_LENGTH:
        raise ReviewError(f"request.uid is {len(uid)} characters long: a uid the API server "
                          f"sends has 36, this webhook takes at most {MAX_UID_LENGTH}")
    try:
        return _request(api_version, uid, request)
    except ValueError as error:
        raise BadReview(api_version, uid, _plural(request), str(error)) from None


def _plural(request: Mapping[str, Any]) -> str:
    resource = request.get("resource")
    plural = resource.get("resource") if isinstance(resource, dict) else None
    return plural if isinstance(plural, str) else ""


def _decode(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if "infinity" not in str(error):
            raise ReviewError(f"the body is not valid JSON: {error}{_MANIFEST_HINT}") from None
    # A number too large for a double: parse again, keeping it for validation to refuse.
    try:
        return json.loads(body, parse_float=_float, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise ReviewError(f"the body is not valid JSON: {error}{_MANIFEST_HINT}") from None


def _float(text: str) -> float:
    number = float(text)
    return OutOfRangeNumber(text) if math.isinf(number) else number


def _refuse_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON value")


def _request(api_version: str, uid: str, request: Mapping[str, Any]) -> AdmissionRequest:
    operation = request.get("operation")
    if operation not in OPERATIONS:
        raise ValueError(f"request.operation must be one of {', '.join(OPERATIONS)}, "
                         f"got {_shown(operation)}")
    return AdmissionRequest(
        api_version, uid, operation, _resource(request.get("resource")),
        _string(request, "name"), _string(request, "namespace"),
        _object(request, "object"), _object(request, "oldObject"),
    )


def _resource(value: Any) -> GroupVersionResource:
    if (
        isinstance(value, dict)
        and type(group := value.get("group", "")) is str
        and type(version := value.get("version", "")) is str
        and type(resource := value.get("resource", "")) is str
    ):
        return {"group": group, "version": version, "resource": resource}
    raise ValueError("request.resource is missing: an object with group, version and resource")


def _string(request: Mapping[str, Any], key: str) -> str:
    value = request.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"request.{key} must be a string, got {_shown(value)}")
    return value


def _object(request: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = request.get(key)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"request.{key} must be a JSON object, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A value of the review for a message: short, whatever its size."""
    if isinstance(value, dict | list):
        return "an object"
    if isinstance(value, OutOfRangeNumber):
        return value.text[:60]
    text = orjson.dumps(value[:60] if isinstance(value, str) else value).decode()
    return text if len(text) <= 60 else text[:56] + '..."'


def allowed(warnings: Sequence[str] = ()) -> Decision:
    decision: Decision = {"allowed": True}
    if warnings:
        decision["warnings"] = _bounded(warnings)
    return decision


def _bounded(warnings: Sequence[str]) -> list[str]:
    """Warnings as the API server keeps them: each under 120 characters, a bounded number."""
    kept = [warning if len(warning) <= MAX_WARNING_LENGTH
            else warning[: MAX_WARNING_LENGTH - 3] + "..."
            for warning in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        kept.append(f"{len(warnings) - MAX_WARNINGS} more warnings not shown")
    return kept


def denied(*, code: int, reason: str, message: str) -> Decision:
    """A refusal without field causes: a review the webhook cannot judge."""
    return {"allowed": False, "status": Status(code=code, reason=reason, message=message)}


def invalid(*, findings: Findings, group: str, kind: str, name: str) -> Decision:
    """A 422 Invalid refusal with one cause per problem, as kubectl prints them."""
    details = StatusDetails(
        name=name[:MAX_NAME_LENGTH],
        group=group,
        kind=kind,
        causes=[
            StatusCause(reason=cause.type.value, type=cause.type.value, field=cause.field,
                        message=cause.message)
            for cause in findings.causes
        ],
    )
    decision: Decision = {
        "allowed": False,
        "status": Status(code=422, reason="Invalid", message=findings.summary(), details=details),
    }
    if findings.warnings:
        decision["warnings"] = _bounded(findings.warnings)
    return decision


def patched(
    patch: Sequence[Mapping[str, Any]],
    *,
    warnings: Sequence[str] = (),
    audit: Mapping[str, str] | None = None,
) -> Decision:
    """Allowed, with a JSONPatch when there is anything to change."""
    encoded = base64.b64encode(orjson.dumps(patch)).decode() if patch else ""
    if len(encoded) > MAX_PATCH_LENGTH:
        return allowed([*warnings, f"no migration policy applied: the patch would take "
                                   f"{len(patch)} operations, {len(encoded)} bytes: "
                                   "remove stale annotations first"])
    decision = allowed(warnings)
    if encoded:
        decision["patchType"] = "JSONPatch"
        decision["patch"] = encoded
    if audit:
        decision["auditAnnotations"] = dict(audit)
    return decision


def complete(uid: str, decision: Decision) -> AdmissionResponse:
    """The response: the decision with the request's uid, the one place a uid is set."""
    return {"uid": uid, **decision}


def encode_review(api_version: str, uid: str, decision: Decision) -> bytes:
    """The response AdmissionReview, in the request's apiVersion, echoing its uid."""
    return orjson.dumps({"apiVersion": api_version, "kind": ADMISSION_REVIEW.kind,
                         "response": complete(uid, decision)})
