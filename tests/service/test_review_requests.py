"""Admission POSTs over real TLS sockets, as the API server and curl send them: a body of
declared length and a chunked one get the same answer, pipelined requests are answered in
their order, and HTTP's connection rules are kept."""

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH
from tests.support.raw_clients import post_head, request_head, tls_connect
from tests.support.reviews import sample_review
from tests.support.service import SAMPLE_REVIEWS, RunningService

REVIEWS = sorted(SAMPLE_REVIEWS.glob("*.json"))


def path_of(review: Path) -> str:
    return MUTATE_PATH if review.name.startswith("migration-") else VALIDATE_PATH


def with_uid(uid: str) -> bytes:
    review = sample_review("policy-valid-example.json")
    review["request"]["uid"] = uid
    return json.dumps(review).encode()


def chunked(body: bytes, path: str = VALIDATE_PATH) -> bytes:
    """A POST of `body` in one chunk, of no declared length."""
    head = request_head(path, method="POST", headers={
        "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def sized(body: bytes, path: str = VALIDATE_PATH) -> bytes:
    """A POST of `body` with its Content-Length, as the API server sends it."""
    return post_head(len(body), path) + body


class Response:
    """One HTTP/1.1 response read from a stream that may hold more after it."""

    def __init__(self, stream: BinaryIO) -> None:
        status_line = stream.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.body = stream.read(int(self.headers.get("content-length", "0")))

    @property
    def uid(self) -> str:
        return str(json.loads(self.body)["response"]["uid"])


@pytest.fixture
def sock(service: RunningService) -> Iterator[socket.socket]:
    with tls_connect(service.port, service.ca_file) as connection:
        yield connection


def exchange(sock: socket.socket, data: bytes, answers: int) -> list[Response]:
    sock.sendall(data)
    stream = sock.makefile("rb")
    return [Response(stream) for _ in range(answers)]


@pytest.mark.parametrize("review", REVIEWS, ids=lambda review: review.stem)
def test_a_chunked_body_gets_the_answer_of_a_sized_one(sock: socket.socket,
                                                       review: Path) -> None:
    body = review.read_bytes()
    sized_answer, chunked_answer = exchange(
        sock, sized(body, path_of(review)) + chunked(body, path_of(review)), 2)
    assert (sized_answer.status, sized_answer.body) == (chunked_answer.status,
                                                        chunked_answer.body)
    assert sized_answer.headers["content-type"] == "application/json"
    assert chunked_answer.headers["content-type"] == "application/json"
    assert int(sized_answer.headers["content-length"]) == len(sized_answer.body)
    assert sized_answer.uid == json.loads(body)["request"]["uid"]


def test_pipelined_reviews_are_answered_in_their_order(sock: socket.socket) -> None:
    uids = [f"pipelined-{index}" for index in range(6)]
    ways = (sized, chunked, sized, sized, chunked, sized)
    requests = b"".join(way(with_uid(uid)) for way, uid in zip(ways, uids, strict=True))
    answers = exchange(sock, requests, len(uids))
    assert [answer.uid for answer in answers] == uids
    assert {answer.status for answer in answers} == {200}


def test_a_query_string_is_the_same_path(sock: socket.socket) -> None:
    """The API server calls `/validate-migrationpolicy?timeout=10s`."""
    (answer,) = exchange(sock, sized(with_uid("queried"), VALIDATE_PATH + "?timeout=10s"), 1)
    assert (answer.status, answer.uid) == (200, "queried")


def test_answers_carry_the_current_date(sock: socket.socket) -> None:
    """The date is made once a second: it is the second the answer was made in, and a
    later answer carries a later one. Catches a date made once and kept, or in another
    time zone than GMT."""
    body = with_uid("dated")
    before = datetime.now(UTC).replace(microsecond=0)  # the header's date has no fraction
    sized_answer, chunked_answer = exchange(sock, sized(body) + chunked(body), 2)
    after = datetime.now(UTC)
    assert sorted(sized_answer.headers) == sorted(chunked_answer.headers) == [
        "content-length", "content-type", "date"]
    first = parsedate_to_datetime(sized_answer.headers["date"])
    assert before <= first <= after
    deadline = time.monotonic() + 30
    while True:  # until the clock has passed a second; the deadline only ends a failure
        (later,) = exchange(sock, sized(with_uid("later")), 1)
        dated = parsedate_to_datetime(later.headers["date"])
        if dated > first or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert dated > first


def test_a_percent_encoded_path_is_the_same_path(sock: socket.socket) -> None:
    (answer,) = exchange(sock, sized(with_uid("encoded"), "/validate%2Dmigrationpolicy"), 1)
    assert (answer.status, answer.uid) == (200, "encoded")


@pytest.mark.parametrize("version, header",
                         [("HTTP/1.0", ""), ("HTTP/1.1", "Connection: close\r\n")])
def test_a_client_that_will_not_keep_the_connection_gets_it_closed(
        sock: socket.socket, version: str, header: str) -> None:
    body = with_uid("closing")
    head = (f"POST {VALIDATE_PATH} {version}\r\nHost: localhost\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{header}\r\n"
            ).encode()
    sock.sendall(head + body)
    stream = sock.makefile("rb")
    answer = Response(stream)
    assert (answer.status, answer.uid) == (200, "closing")
    assert answer.headers["connection"] == "close"
    assert stream.read() == b""  # and closed


def test_keep_alive_is_the_default(sock: socket.socket) -> None:
    (first,) = exchange(sock, sized(with_uid("one")), 1)
    (second,) = exchange(sock, sized(with_uid("two")), 1)
    assert "connection" not in first.headers
    assert (first.uid, second.uid) == ("one", "two")


def test_expect_100_continue_is_answered_before_the_body(sock: socket.socket) -> None:
    body = with_uid("continued")
    sock.sendall(request_head(VALIDATE_PATH, method="POST", headers={
        "Content-Type": "application/json", "Content-Length": str(len(body)),
        "Expect": "100-continue"}))
    stream = sock.makefile("rb")
    assert stream.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert stream.readline() == b"\r\n"
    sock.sendall(body)
    answer = Response(stream)
    assert (answer.status, answer.uid) == (200, "continued")


def test_a_body_longer_than_the_limit_is_still_refused(sock: socket.socket) -> None:
    (answer,) = exchange(sock, post_head(9 * 1024 * 1024) + b"{", 1)
    assert answer.status == 413
    assert b"larger than the limit" in answer.body


def test_a_body_that_is_not_json_is_still_refused(sock: socket.socket) -> None:
    body = with_uid("typed")
    head = request_head(VALIDATE_PATH, method="POST", headers={
        "Content-Type": "text/plain", "Content-Length": str(len(body))})
    (answer,) = exchange(sock, head + body, 1)
    assert answer.status == 415
