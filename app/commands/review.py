"""`review FILE`: answer one AdmissionReview file with the server's handlers, no server."""

import base64
import sys
from pathlib import Path
from typing import Any

import orjson

from app.admission.answer import Answer, answer_review
from app.admission.handlers import (
    build_handlers,
    handler_for_resource,
)
from app.admission.review import ReviewError
from app.commands.state import synced_state
from app.k8s.manifests import ManifestError, read_documents
from app.settings import Settings
from app.state import view_of
from app.state.files import StateError

EXIT_DENIED = 1
EXIT_USAGE = 2


def _answer(review: dict[str, Any], settings: Settings) -> Answer:
    """The answer to a review, as the server gives it."""
    state = synced_state(settings)
    view = view_of(state)
    handlers = build_handlers(settings, state, lambda: view)
    return answer_review(orjson.dumps(review),
                         lambda plural: handler_for_resource(handlers, plural))


def run_review(path: Path, settings: Settings) -> int:
    """Print the answer to the review in `path`, and its decoded patch; 1 if denied."""
    try:
        documents = read_documents(path)
    except ManifestError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    if len(documents) != 1:
        print(f"{path}: expected one AdmissionReview, found {len(documents)} documents",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        answer = _answer(documents[0].object, settings)
    except (ReviewError, StateError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except orjson.JSONEncodeError as error:  # YAML can hold what JSON cannot
        print(f"{path}: cannot be sent as JSON: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(orjson.dumps(orjson.loads(answer.encoded), option=orjson.OPT_INDENT_2).decode())
    decision = answer.decision
    if "patch" in decision:
        patch = orjson.loads(base64.b64decode(decision["patch"]))
        print("decoded patch:")
        print(orjson.dumps(patch, option=orjson.OPT_INDENT_2).decode())
    return 0 if decision["allowed"] else EXIT_DENIED
