"""What each handler answers in place of an internal error: fail closed, or never block."""

import json

from app.admission.answer import answer_review
from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH, build_handlers
from app.admission.review import complete, parse_review
from app.policy.precedence import Precedence
from app.settings import Settings
from app.state import view_of
from app.state.files import DirectoryState
from tests.support.reviews import sample_review
from tests.support.service import SAMPLE_CLUSTER, SAMPLE_REVIEWS


def handlers() -> dict:
    state = DirectoryState(SAMPLE_CLUSTER, Precedence.DOCUMENTED)
    view = view_of(state)
    return build_handlers(Settings(), state, lambda: view)


def request(name: str):
    return parse_review(json.dumps(sample_review(name)).encode())


def test_validator_fails_closed_and_says_so() -> None:
    review = request("policy-valid-example.json")
    response = complete(review.uid, handlers()[VALIDATE_PATH].errored(review))
    assert response["uid"] == review.uid
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert response["status"]["reason"] == "InternalError"
    assert "internal error" in response["status"]["message"]


def test_stamper_never_blocks_a_migration() -> None:
    review = request("migration-db-vmi.json")
    response = complete(review.uid, handlers()[MUTATE_PATH].errored(review))
    assert response["uid"] == review.uid
    assert response["allowed"] is True
    assert "patch" not in response
    assert any("internal error" in warning for warning in response["warnings"])


def test_a_bug_in_a_handler_is_its_errored_answer_and_logged_once(caplog) -> None:
    """answer_review, the path the server and `review FILE` share, catches the bug."""

    class Broken:
        def __call__(self, request):
            raise RuntimeError("a bug")

        def errored(self, request):
            return handlers()[VALIDATE_PATH].errored(request)

        def malformed(self, problem):
            raise AssertionError("not malformed")

    body = (SAMPLE_REVIEWS / "policy-valid-example.json").read_bytes()
    answer = answer_review(body, lambda _plural: Broken())
    assert answer.failed is True
    sent = json.loads(answer.encoded)
    assert sent["response"]["uid"] == answer.uid == json.loads(body)["request"]["uid"]
    assert sent["response"]["status"]["reason"] == "InternalError"
    assert [record.exc_info[1].args for record in caplog.records if record.exc_info] == [
        ("a bug",)]
