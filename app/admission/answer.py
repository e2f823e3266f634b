"""A review body to its answer: the one path that the server and `review FILE` share.

Handlers return decisions; here a decision is completed with the review's uid and
apiVersion (`encode_review`), a review wrong after its uid goes to the handler's
`malformed`, and a bug in a handler becomes its `errored` answer, logged once.
"""

import logging
from collections.abc import Callable
from typing import NamedTuple

from app.admission.handlers import Handler
from app.admission.review import (
    AdmissionRequest,
    BadReview,
    Decision,
    encode_review,
    parse_review,
)
from app.state import WouldBlock

log = logging.getLogger(__name__)

HandlerFor = Callable[[str], Handler]
"""The handler for a review of this resource (its plural; "" when it could not be read)."""


class Answer(NamedTuple):
    api_version: str
    uid: str
    request: AdmissionRequest | None
    """None for a review that is wrong after its uid."""
    decision: Decision
    failed: bool
    """The handler raised: the decision is its errored answer."""

    def encoded(self) -> bytes:
        """The AdmissionReview to send back."""
        return encode_review(self.api_version, self.uid, self.decision)


def answer_review(body: bytes, handler_for: HandlerFor) -> Answer:
    """Parse a review body and decide it.

    Raises ReviewError for a body that is not a review with a uid (HTTP 400), and
    WouldBlock when a lookup must call the API (call again from a worker thread).
    """
    try:
        request = parse_review(body)
    except BadReview as error:
        decision = handler_for(error.resource).malformed(str(error))
        return Answer(error.api_version, error.uid, None, decision, False)
    handler = handler_for(request.resource["resource"])
    try:
        return Answer(request.api_version, request.uid, request, handler(request), False)
    except WouldBlock:
        raise
    except Exception:
        log.exception("answering review %s of %s failed", request.uid, request.resource_name)
        return Answer(request.api_version, request.uid, request, handler.errored(request), True)
