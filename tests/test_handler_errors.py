"""What each handler answers in place of an internal error: fail closed, or never block."""

import json

from conftest import SAMPLE_CLUSTER, SAMPLE_REVIEWS

from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH, build_handlers
from app.admission.review import parse_review
from app.policy.precedence import Precedence
from app.settings import Settings
from app.state.files import DirectoryState


def handlers() -> dict:
    state = DirectoryState(SAMPLE_CLUSTER, Precedence.DOCUMENTED)
    return build_handlers(Settings(), state)


def request(name: str):
    return parse_review(json.dumps(json.loads((SAMPLE_REVIEWS / name).read_text())).encode())


def test_validator_fails_closed_and_says_so() -> None:
    review = request("policy-valid-example.json")
    response = handlers()[VALIDATE_PATH].errored(review)
    assert response["uid"] == review.uid
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert response["status"]["reason"] == "InternalError"
    assert "internal error" in response["status"]["message"]


def test_stamper_never_blocks_a_migration() -> None:
    review = request("migration-db-vmi.json")
    response = handlers()[MUTATE_PATH].errored(review)
    assert response["uid"] == review.uid
    assert response["allowed"] is True
    assert "patch" not in response
    assert any("internal error" in warning for warning in response["warnings"])
