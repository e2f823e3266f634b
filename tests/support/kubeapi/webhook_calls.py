"""Validating webhooks called as the API server calls them, and its words for their answers."""

import base64
import ssl
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from tests.support.kubeapi import JSON, KubeApiServer, Object, status
from tests.support.kubeapi.crd import CustomResource

# The API server's warning recorder (k8s.io/apiserver/pkg/endpoints/filters/warning.go).
_WARNING_TOTAL_RUNES = 4 * 1024
_WARNING_ITEM_RUNES = 256


@dataclass(frozen=True)
class Webhook:
    """One validating webhook of a ValidatingWebhookConfiguration, reached by URL."""

    name: str
    url: str
    ca_bundle: bytes
    rules: tuple[Mapping[str, Any], ...]
    failure_policy: str = "Fail"
    match_policy: str = "Equivalent"
    timeout_seconds: int = 10
    side_effects: str = "None"
    review_versions: tuple[str, ...] = ("v1",)

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any],
                           base_url: str) -> list["Webhook"]:
        """The configuration's webhooks; a `service` reference is reached at
        `base_url` + its path (where a test runs the service), trusting its `caBundle`."""
        hooks = []
        for hook in configuration["webhooks"]:
            client = hook["clientConfig"]
            url = client.get("url") or base_url + client["service"].get("path", "")
            hooks.append(cls(
                name=hook["name"], url=url, ca_bundle=base64.b64decode(client["caBundle"]),
                rules=tuple(hook.get("rules", ())),
                failure_policy=hook.get("failurePolicy", "Fail"),
                match_policy=hook.get("matchPolicy", "Equivalent"),
                timeout_seconds=hook.get("timeoutSeconds", 10),
                side_effects=hook.get("sideEffects", "None"),
                review_versions=tuple(hook.get("admissionReviewVersions", ("v1",)))))
        return hooks

    def matches(self, operation: str, group: str, version: str, resource: str,
                namespaced: bool) -> bool:
        return any(_rule_matches(rule, operation, group, version, resource, namespaced)
                   for rule in self.rules)


def _rule_matches(rule: Mapping[str, Any], operation: str, group: str, version: str,
                  resource: str, namespaced: bool) -> bool:
    def among(values: Sequence[str], value: str) -> bool:
        return "*" in values or value in values

    scope = rule.get("scope", "*")
    return (among(rule.get("operations", ()), operation)
            and among(rule.get("apiGroups", ()), group)
            and among(rule.get("apiVersions", ()), version)
            and among(rule.get("resources", ()), resource)
            and (scope == "*" or scope == ("Namespaced" if namespaced else "Cluster")))


@dataclass(frozen=True)
class ReviewCall:
    """One AdmissionReview the fixture sent, and what came back (None if the call failed)."""

    webhook: str
    review: Object
    response: Object | None


class Denied(Exception):
    def __init__(self, code: int, body: Object) -> None:
        super().__init__(body.get("message"))
        self.code = code
        self.body = body


def as_go_status(result: Any) -> Object:
    """The webhook's `response.status` as the API server holds it after decoding it into a
    metav1.Status: fields it does not have are dropped (a StatusCause's type is the JSON key
    `reason`; a `type` key is lost), the rest in Go's field order."""
    def pick(source: Any, keys: Sequence[str]) -> Object:
        if not isinstance(source, dict):
            return {}
        return {key: source[key] for key in keys if source.get(key) not in (None, "", 0)}

    decoded = pick(result, ("status", "message", "reason", "details", "code"))
    if "details" in decoded:
        details = pick(decoded["details"], ("name", "group", "kind", "uid", "causes",
                                            "retryAfterSeconds"))
        if "causes" in details:
            details["causes"] = [pick(cause, ("reason", "message", "field"))
                                 for cause in details["causes"] or []]
        decoded["details"] = details
    return decoded


def to_status_err(webhook_name: str, result: Any) -> Object:
    """k8s.io/apiserver webhook/errors.ToStatusErr (1.29 to 1.33): the Status the API server
    answers when a webhook denies a request."""
    denied_by = f'admission webhook "{webhook_name}" denied the request'
    decoded = as_go_status(result) if result is not None else {"status": "Failure"}
    code = int(decoded.get("code") or 0)
    if code < 400:
        code = 400
    if decoded.get("status") in (None, "Success"):
        decoded["status"] = "Failure"
    if decoded.get("message"):
        decoded["message"] = f"{denied_by}: {decoded['message']}"
    elif decoded.get("reason"):
        decoded["message"] = f"{denied_by}: {decoded['reason']}"
    else:
        decoded["message"] = f"{denied_by} without explanation"
    body: Object = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    for key in ("status", "message", "reason", "details"):
        if key in decoded:
            body[key] = decoded[key]
    body["code"] = code
    return body


def internal_error(message: str) -> Object:
    """apimachinery's NewInternalError."""
    return status(500, f"Internal error occurred: {message}", "InternalError",
                  {"causes": [{"message": message}]})


class Warnings:
    """The API server's per-request warning recorder: deduplicated, then `299 - "text"`."""

    def __init__(self) -> None:
        self._texts: list[str] = []

    def add(self, text: str) -> None:
        if text and text not in self._texts:
            self._texts.append(text)

    def headers(self) -> list[tuple[str, str]]:
        texts = [text for text in self._texts if text.isprintable()]
        if sum(len(text) for text in texts) > _WARNING_TOTAL_RUNES:
            texts = [text[:_WARNING_ITEM_RUNES] for text in texts]
            kept, total = [], 0
            for text in texts:
                if total >= _WARNING_TOTAL_RUNES:
                    break
                kept.append(text)
                total += len(text)
            texts = kept
        return [("Warning", f"299 - {_go_quote(text)}") for text in texts]


def _go_quote(text: str) -> str:
    """strconv.Quote for printable text: backslashes and double quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'



class WebhookCalls:
    """The admission-calling side of the write path: which webhooks a write reaches, the
    AdmissionReview each gets, the call over TLS and the checks on its answer."""

    api: KubeApiServer
    crd: CustomResource
    webhooks: list[Webhook]
    user: dict[str, Any]
    _lock: threading.Lock
    _reviews: list[ReviewCall]

    def _admit(self, operation: str, version: str, name: str, obj: Object | None,
               old: Object | None, options: Object, dry_run: bool,
               warnings: Warnings) -> None:
        """Call every matching validating webhook; raise Denied as the API server would."""
        for hook in self.webhooks:
            hook_version = self._matching_version(hook, operation, version)
            if hook_version is None:
                continue
            if dry_run and hook.side_effects not in ("None", "NoneOnDryRun"):
                raise Denied(400, status(400, f'admission webhook "{hook.name}" does not '
                                               "support dry run", "BadRequest"))
            review = self._review(hook, operation, version, hook_version, name, obj, old,
                                  options, dry_run)
            try:
                response = self._call(hook, review)
            except CallFailed as failure:
                with self._lock:
                    self._reviews.append(ReviewCall(hook.name, review, None))
                if hook.failure_policy == "Ignore":
                    continue
                raise Denied(500, internal_error(
                    f'failed calling webhook "{hook.name}": {failure}')) from None
            with self._lock:
                self._reviews.append(ReviewCall(hook.name, review, response))
            for text in response.get("warnings") or []:
                warnings.add(text)
            if not response.get("allowed"):
                body = to_status_err(hook.name, response.get("status"))
                raise Denied(int(body["code"]), body)

    def _matching_version(self, hook: Webhook, operation: str, version: str) -> str | None:
        """The version the webhook is called with: the request's, or under
        matchPolicy Equivalent another served version its rules name."""
        candidates = [version]
        if hook.match_policy == "Equivalent":
            candidates += [other for other in self.crd.versions if other != version]
        for candidate in candidates:
            if hook.matches(operation, self.crd.group, candidate, self.crd.plural,
                            self.crd.namespaced):
                return candidate
        return None

    def _review(self, hook: Webhook, operation: str, version: str, hook_version: str,
                name: str, obj: Object | None, old: Object | None, options: Object,
                dry_run: bool) -> Object:
        review_version = next((v for v in hook.review_versions if v in ("v1", "v1beta1")),
                              "v1")

        def gvk(v: str) -> Object:
            return {"group": self.crd.group, "version": v, "kind": self.crd.kind}

        def gvr(v: str) -> Object:
            return {"group": self.crd.group, "version": v, "resource": self.crd.plural}

        def versioned(o: Object | None) -> Object | None:
            return None if o is None else self.crd.in_version(o, hook_version)

        return {
            "kind": "AdmissionReview",
            "apiVersion": f"admission.k8s.io/{review_version}",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": gvk(hook_version),
                "resource": gvr(hook_version),
                "requestKind": gvk(version),
                "requestResource": gvr(version),
                "name": name,
                "operation": operation,
                "userInfo": self.user,
                "object": versioned(obj),
                "oldObject": versioned(old),
                "dryRun": dry_run,
                "options": options,
            },
        }

    def _call(self, hook: Webhook, review: Object) -> Object:
        """POST the review; the verified `response`, or CallFailed with the API server's
        words for what went wrong."""
        url = f"{hook.url}{'&' if '?' in hook.url else '?'}timeout={hook.timeout_seconds}s"
        context = ssl.create_default_context(cadata=hook.ca_bundle.decode())
        try:
            with httpx.Client(verify=context, timeout=hook.timeout_seconds) as client:
                answer = client.post(url, content=orjson.dumps(review), headers={
                    "Content-Type": JSON, "Accept": f"{JSON}, */*"})
        except httpx.HTTPError as error:
            raise CallFailed(f'failed to call webhook: Post "{url}": '
                              f"{_transport_error(url, error)}") from error
        if answer.status_code != 200:
            raise CallFailed(f"failed to call webhook: the server responded with the status "
                              f"code {answer.status_code} but did not return more information")
        try:
            body = orjson.loads(answer.content)
        except orjson.JSONDecodeError as error:
            raise CallFailed(f"failed to call webhook: {error}") from error
        uid = review["request"]["uid"]
        response = body.get("response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise CallFailed("received invalid webhook response: webhook response was absent")
        if response.get("uid") != uid:
            raise CallFailed(f"received invalid webhook response: expected response.uid="
                              f'"{uid}", got "{response.get("uid", "")}"')
        expected_gvk = f"{review['apiVersion']}, Kind=AdmissionReview"
        got_gvk = f"{body.get('apiVersion', '')}, Kind={body.get('kind', '')}"
        if got_gvk != expected_gvk:
            raise CallFailed(f"received invalid webhook response: expected webhook response "
                              f"of {expected_gvk}, got {got_gvk}")
        if response.get("patch") is not None or response.get("patchType") is not None:
            raise CallFailed("received invalid webhook response: validating webhook may not "
                              "return a patch or patchType")
        return response



class CallFailed(Exception):
    pass


def _transport_error(url: str, error: httpx.HTTPError) -> str:
    """Go's words for a failed call, as far as Python's exception tells them."""
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or 443}"
    text = str(error)
    if isinstance(error, httpx.TimeoutException):
        return "context deadline exceeded"
    if isinstance(error, httpx.ConnectError):
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "tls: failed to verify certificate: x509: certificate signed by unknown " \
                   "authority"
        if "refused" in text.lower():
            return f"dial tcp {address}: connect: connection refused"
    return text
