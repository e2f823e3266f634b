"""`review FILE`: answer one AdmissionReview file with the server's handlers, no server."""

import base64
import sys
from pathlib import Path
from typing import Any

import orjson

from app.admission.handlers import (
    MIGRATION_RESOURCE,
    MUTATE_PATH,
    VALIDATE_PATH,
    build_handlers,
    handler_for_resource,
)
from app.admission.review import (
    AdmissionRequest,
    AdmissionResponse,
    BadReview,
    ReviewError,
    encode_review,
    parse_review,
)
from app.commands.state import synced_state
from app.k8s.manifests import ManifestError, read_documents
from app.settings import Settings
from app.state.files import StateError

EXIT_DENIED = 1
EXIT_USAGE = 2


def _path_for(review: dict[str, Any]) -> str:
    """The webhook path a review is meant for, from its resource however malformed."""
    request = review.get("request")
    resource = request.get("resource") if isinstance(request, dict) else None
    plural = resource.get("resource") if isinstance(resource, dict) else None
    return MUTATE_PATH if plural == MIGRATION_RESOURCE else VALIDATE_PATH


def _answer(review: dict[str, Any], settings: Settings) -> tuple[str, AdmissionResponse]:
    """(apiVersion, response) for a review, as the server answers it."""
    try:
        request: AdmissionRequest | BadReview = parse_review(orjson.dumps(review))
    except BadReview as error:  # a uid, wrong elsewhere: answered in the protocol
        request = error
    handlers = build_handlers(settings, synced_state(settings))
    if isinstance(request, BadReview):
        handler = handlers[_path_for(review)]
        return request.api_version, handler.malformed(request.uid, str(request))
    return request.api_version, handler_for_resource(handlers, request)(request)


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
        api_version, response = _answer(documents[0].object, settings)
    except (ReviewError, StateError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except orjson.JSONEncodeError as error:  # YAML can hold what JSON cannot
        print(f"{path}: cannot be sent as JSON: {error}", file=sys.stderr)
        return EXIT_USAGE
    answer = orjson.loads(encode_review(api_version, response))
    print(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    if "patch" in response:
        patch = orjson.loads(base64.b64decode(response["patch"]))
        print("decoded patch:")
        print(orjson.dumps(patch, option=orjson.OPT_INDENT_2).decode())
    return 0 if response["allowed"] else EXIT_DENIED
