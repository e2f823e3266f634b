"""Large but legal reviews, and huge parts that are echoed: bounded answers, the loop free."""

import base64
import copy
import json
import threading
import time

import orjson
import pytest

from tests.support.reviews import sample_review

VALIDATE = "/validate-migrationpolicy"
MUTATE = "/mutate-virtualmachineinstancemigration"
MAX_ANSWER = 256 * 1024
PREFIX = "migrations.kubevirt.io/"

MIGRATION = sample_review("migration-db-vmi.json")
POLICY = sample_review("policy-valid-example.json")


def migration_with(annotations: dict[str, str]) -> dict:
    review = copy.deepcopy(MIGRATION)
    review["request"]["object"]["metadata"]["annotations"] = annotations
    return review


def test_fifty_thousand_user_annotations_are_kept_and_the_patch_is_small(client):
    annotations = {f"example.com/note-{i}": "x" * 20 for i in range(50_000)}
    answer = client.post(MUTATE, content=orjson.dumps(migration_with(annotations)))
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["uid"] == MIGRATION["request"]["uid"]
    patch = json.loads(base64.b64decode(response["patch"]))
    assert {op["op"] for op in patch} == {"add"}
    assert all(op["path"].startswith("/metadata/annotations/migrations.kubevirt.io~1")
               for op in patch)
    assert len(answer.content) <= MAX_ANSWER


def test_a_patch_too_large_to_send_lets_the_migration_through_with_a_warning(client):
    stale = {f"{PREFIX}stale-{i}": "x" for i in range(50_000)}
    answer = client.post(MUTATE, content=orjson.dumps(migration_with(stale)))
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"][-1].startswith(
        "no migration policy applied: the patch would take 50006 operations")
    assert len(answer.content) <= MAX_ANSWER


def test_a_uid_no_api_server_sends_is_refused(client):
    review = copy.deepcopy(POLICY)
    review["request"]["uid"] = "u" * 4_000_000
    answer = client.post(VALIDATE, content=orjson.dumps(review))
    assert answer.status_code == 400
    assert "request.uid is 4000000 characters long" in answer.json()["error"]
    assert len(answer.content) < 1024


@pytest.mark.parametrize("path", [VALIDATE, MUTATE])
def test_a_huge_name_is_cut_in_the_answer(client, path):
    review = copy.deepcopy(POLICY if path == VALIDATE else MIGRATION)
    review["request"]["object"]["metadata"]["name"] = "n" * 2_000_000
    review["request"]["name"] = "n" * 2_000_000
    if path == MUTATE:
        review["request"]["object"]["spec"]["vmiName"] = "v" * 2_000_000
    answer = client.post(path, content=orjson.dumps(review))
    assert answer.status_code == 200
    assert answer.json()["response"]["uid"] == review["request"]["uid"]
    assert len(answer.content) <= MAX_ANSWER


def test_healthz_answers_while_a_large_review_is_judged(client, service):
    """A 7 MB policy is parsed and judged off the event loop: /healthz is not held up."""
    review = copy.deepcopy(POLICY)
    review["request"]["object"]["spec"]["selectors"]["namespaceSelector"] = {
        f"bad key {i}": "v" for i in range(300_000)}
    body = orjson.dumps(review)
    assert len(body) > 4_000_000
    slowest = 0.0
    done = threading.Event()

    def post_large() -> None:
        with service.client() as other:
            other.post(VALIDATE, content=body)
        done.set()

    thread = threading.Thread(target=post_large)
    thread.start()
    while not done.is_set():
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
    thread.join()
    assert slowest < 0.25, f"/healthz took {slowest:.3f} s while the review was judged"
