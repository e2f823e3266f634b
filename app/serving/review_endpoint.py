"""One admission path as a bare ASGI callable: the hot path, bytes in, bytes out.

The admission POSTs do not go through FastAPI's routing, dependency solving and
middleware: they cost close to a bare ASGI app (docs/decisions.md has the measurement).
Everything that can be made once is made in `__init__`: metric children, headers.
"""

import asyncio
import logging
import time

import orjson

from app.admission.answer import Answer, answer_review
from app.admission.handlers import Handler, is_enforcement_warning
from app.admission.review import Decision, ReviewError
from app.policy.annotations import POLICY_ANNOTATION
from app.serving.asgi import Message, Receive, Scope, Send
from app.serving.metrics import Metrics
from app.serving.review_log import ReviewLog
from app.state import WouldBlock

log = logging.getLogger(__name__)

OFF_LOOP_BYTES = 64 * 1024
"""Bodies larger than this are parsed and judged in a worker thread, so that a large
(legal or hostile) review never holds the event loop for long."""

JSON = b"application/json"
_ACCEPTED_TYPES = (b"application/json", b"application/x-www-form-urlencoded")
"""JSON, and what curl sends with --data-binary when no Content-Type is given."""


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client hung up before its body arrived."""


class UnsupportedMediaType(Exception):
    pass


def body_too_large(max_body_bytes: int) -> str:
    """The 413's message, whether the declared length or the bytes received are over."""
    return f"the body is larger than the limit of {max_body_bytes} bytes"


def json_error(status: int, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": message})


class ReviewEndpoint:
    """POST one webhook path: read the body within its limit, answer the review."""

    def __init__(
        self, path: str, handler: Handler, *, metrics: Metrics, review_log: ReviewLog,
        max_body_bytes: int,
    ) -> None:
        self.path = path
        self._review_log = review_log
        self._handler_for = lambda _resource: handler
        self.max_body_bytes = max_body_bytes
        self._reviews = metrics.reviews[path]
        self._bad = {status: metrics.rejected_bodies.labels(path, str(status))
                     for status in (400, 413, 415)}
        self._internal_errors = metrics.internal_errors.labels(path)
        self._disconnects = metrics.client_disconnects
        self._too_large = body_too_large(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            body = await self._read_body(scope, receive)
        except ClientGone:
            self.client_gone()
            return
        except BodyTooLarge:
            await self._send_error(send, 413, self._too_large)
            return
        except UnsupportedMediaType:
            await self._send_error(send, 415, "the body must be an AdmissionReview in JSON: "
                                   "send it with Content-Type: application/json")
            return
        if len(body) > OFF_LOOP_BYTES:
            answered = await asyncio.to_thread(self._review, body)
        else:
            try:
                answered = self._review(body)
            except WouldBlock:  # a lookup must call the API: not on the event loop
                answered = await asyncio.to_thread(self._review, body)
        status, body = self._finish(answered, started)
        await send(_head(status, body))  # the two awaits in line: no coroutine of their own
        await send({"type": "http.response.body", "body": body})

    def client_gone(self) -> None:
        """The client hung up before its whole body arrived."""
        self._disconnects.inc()
        log.debug("client hung up before sending its review to %s", self.path)

    def _finish(self, answered: Answer | bytes, started: float) -> tuple[int, bytes]:
        """Count and log the answer; the HTTP status and body to send."""
        if isinstance(answered, bytes):
            self._bad[400].inc()
            return 400, answered
        elapsed = time.perf_counter() - started
        decision = answered.decision
        self._reviews.record(_outcome(decision), elapsed)
        if answered.failed:
            self._internal_errors.inc()
        self._log_answer(answered, elapsed)
        return 200, answered.encoded

    def _review(self, body: bytes) -> Answer | bytes:
        """The answer to a body, or the HTTP 400 error for a body that is not a review."""
        try:
            return answer_review(body, self._handler_for)
        except ReviewError as error:
            return json_error(400, str(error))[1]

    def _log_answer(self, answered: Answer, elapsed: float) -> None:
        decision, request = answered.decision, answered.request
        status = decision.get("status")
        details = status.get("details") if status else None
        audit = decision.get("auditAnnotations")
        self._review_log.answered(
            answered.uid, self.path,
            request.operation if request else "",
            request.namespace if request else "",
            request.name if request else "",
            decision["allowed"],
            audit.get(POLICY_ANNOTATION) if audit else None,
            len(details.get("causes", ())) if details else None,
            elapsed * 1000,
        )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The body, refusing more than the limit as it arrives (a chunked one), not after."""
        limit = self.max_body_bytes  # a declared length over it is refused before (413)
        for name, value in scope["headers"]:
            if name == b"content-type" and not _accepted_type(value):
                raise UnsupportedMediaType
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise BodyTooLarge
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _send_error(self, send: Send, status: int, message: str) -> None:
        self._bad[status].inc()
        status, body = json_error(status, message)
        await send(_head(status, body))
        await send({"type": "http.response.body", "body": body})


def _accepted_type(content_type: bytes) -> bool:
    if content_type == JSON:  # what the API server sends
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type in _ACCEPTED_TYPES or media_type.endswith(b"+json")


def _outcome(decision: Decision) -> str:
    if "patch" in decision:
        return "patched"
    if not decision["allowed"]:
        return "denied"
    return "warned" if is_enforcement_warning(decision) else "allowed"


def _head(status: int, body: bytes) -> Message:
    """The start of a JSON answer of `body`."""
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", JSON), (b"content-length", str(len(body)).encode())],
    }
