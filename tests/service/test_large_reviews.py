"""Large but legal reviews, and huge parts that are echoed: bounded answers, the loop free."""

import base64
import copy
import ipaddress
import json
import socket
import time
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.raw_clients import post_head, read_response, tls_connect
from tests.support.reviews import sample_review

VALIDATE = "/validate-migrationpolicy"
MUTATE = "/mutate-virtualmachineinstancemigration"
MAX_ANSWER = 256 * 1024
ATTEMPTS = 10
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


DENIED = ("migration_policy_webhook_reviews_total",
          {"webhook": VALIDATE, "outcome": "denied"})
BAD_KEY_PROBLEM = ("name part must be 63 characters or fewer of letters, digits, '-', '_' or "
                   "'.', beginning and ending with a letter or digit (e.g. 'MyName', "
                   "'my.name', '123-abc')")


def denied_reviews(client: httpx.Client) -> float:
    """The service's count of denied reviews on the validating path, from /metrics."""
    name, labels = DENIED
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    return next(sample.value for family in text_string_to_metric_families(scrape.text)
                for sample in family.samples if sample.name == name and sample.labels == labels)


def queued_bytes(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(bytes not yet sent, bytes not yet read) of the TCP socket from `local` to `remote`,
    as the kernel counts them in /proc/net/tcp; None if there is no such socket."""
    wanted = (f"{ipaddress.IPv4Address(local[0]).packed[::-1].hex().upper()}:{local[1]:04X}",
              f"{ipaddress.IPv4Address(remote[0]).packed[::-1].hex().upper()}:{remote[1]:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            unsent, unread = fields[4].split(":")
            return int(unsent, 16), int(unread, 16)
    return None


def wait_until_received(sock: socket.socket, deadline: float) -> None:
    """Until the server has read every byte sent on `sock` from the kernel: nothing left
    in the client's send queue, nothing in the server's receive queue."""
    local, remote = sock.getsockname()[:2], sock.getpeername()[:2]
    while time.monotonic() < deadline:
        client, server = queued_bytes(local, remote), queued_bytes(remote, local)
        if client is not None and server is not None and client[0] == 0 and server[1] == 0:
            return
        time.sleep(0.001)
    raise AssertionError(f"the server did not read the whole review: client (unsent, unread) "
                         f"{queued_bytes(local, remote)}, server {queued_bytes(remote, local)}")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_healthz_answers_while_a_large_review_is_judged(client, service):
    """A 6 MB policy is parsed and judged off the event loop: /healthz is answered while it
    is in progress. In progress means: the server has read all of its body (the kernel's
    queues of its connection are empty) before /healthz is asked, and the service has not
    counted it among its answered reviews (/metrics, which counts a review as it answers
    it) after /healthz answered. A review judged on the loop cannot be in progress while
    the loop answers /healthz, so every attempt finds it answered first, and the test
    fails. The review's own answer is checked too: every one of its 300,000 bad keys is
    a problem, the first 100 listed. A judgement that ends before /healthz is asked proves
    nothing, so the review is sent again, up to ATTEMPTS times."""
    review = copy.deepcopy(POLICY)
    review["request"]["object"]["spec"]["selectors"]["namespaceSelector"] = {
        f"bad key {i}": "v" for i in range(300_000)}
    body = orjson.dumps(review)
    assert len(body) > 4_000_000
    in_progress = []
    for _ in range(ATTEMPTS):
        before = denied_reviews(client)
        with tls_connect(service.port, service.ca_file, timeout=120) as sock:
            sock.sendall(post_head(len(body)) + body)
            wait_until_received(sock, time.monotonic() + 120)
            assert client.get("/healthz").status_code == 200
            in_progress.append(denied_reviews(client) == before)
            answer = read_response(sock)
        assert answer.status == 200, answer.body[:500]
        response = orjson.loads(answer.body)["response"]
        assert response["uid"] == POLICY["request"]["uid"]
        assert response["allowed"] is False
        status = response["status"]
        assert (status["code"], status["reason"]) == (422, "Invalid")
        causes = [(cause["type"], cause["field"], cause["message"])
                  for cause in status["details"]["causes"]]
        field = "spec.selectors.namespaceSelector"
        assert causes == [
            *(("FieldValueInvalid", field, f'label key "bad key {i}": {BAD_KEY_PROBLEM}')
              for i in range(100)),
            ("FieldValueInvalid", field, "299900 more problems not listed (only the first 100 "
             "are): fix those, then apply again to see the rest")]
        assert len(answer.body) <= MAX_ANSWER
        # The count that showed it unanswered is the count of this very review.
        assert denied_reviews(client) == before + 1
        if in_progress[-1]:
            break
    assert in_progress[-1], f"the review was answered before /healthz in all {ATTEMPTS} tries"
