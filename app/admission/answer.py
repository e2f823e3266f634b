"""A review body to its answer: the one path that the server and `review FILE` share.

Handlers return decisions; here a decision is completed with the review's uid and
apiVersion (`encode_review`), a review wrong after its uid goes to the handler's
`malformed`, and a bug in a handler becomes its `errored` answer, logged once.
"""

import logging
from collections.abc import Callable
from typing import NamedTuple, TypeVar

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
T = TypeVar("T")
"""The handler for a review of this resource (its plural; "" when it could not be read)."""


class Answer(NamedTuple):
    api_version: str
    uid: str
    request: AdmissionRequest | None
    """None for a review that is wrong after its uid."""
    decision: Decision
    failed: bool
    """The handler raised: the decision is its errored answer."""
    encoded: bytes
    """The AdmissionReview to send back."""


def answer_review(body: bytes, handler_for: HandlerFor) -> Answer:
    """Parse a review body and decide it.

    Raises ReviewError for a body that is not a review with a uid (HTTP 400), and
    WouldBlock when a lookup must call the API (call again from a worker thread). Once the
    uid is known, a bug (in the handler, or encoding its decision) is the handler's
    errored answer, logged once with its traceback.
    """
    try:
        request = parse_review(body)
    except BadReview as error:
        handler = handler_for(error.resource)
        return _answer(handler, error.api_version, error.uid, None, handler.malformed,
                       str(error))
    handler = handler_for(request.resource["resource"])
    return _answer(handler, request.api_version, request.uid, request, handler, request)


def _answer(handler: Handler, api_version: str, uid: str, request: AdmissionRequest | None,
            decide: Callable[[T], Decision], argument: T) -> Answer:
    """`decide(argument)` as the answer; a bug in it, or in encoding its decision, is the
    handler's errored answer. (The decision's callable and argument are passed apart, so
    the usual review allocates no closure.)"""
    try:
        decision = decide(argument)
        return Answer(api_version, uid, request, decision, False,
                      encode_review(api_version, uid, decision))
    except WouldBlock:
        raise
    except Exception:
        what = request.resource_name if request is not None else "a malformed review"
        log.exception("answering review %s of %s failed", uid, what)
        decision = handler.errored(request)
        return Answer(api_version, uid, request, decision, True,
                      encode_review(api_version, uid, decision))
