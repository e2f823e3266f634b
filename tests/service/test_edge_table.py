"""Issue 18's table, over real TLS sockets against `serve`: what a hostile or broken client
could do to the limits before the edge was rebuilt on uvicorn's public interfaces, and what
it gets now."""

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.raw_clients import (
    get,
    post_head,
    read_response,
    seconds_until_closed,
    tls_connect,
)
from tests.support.reviews import sample_review
from tests.support.service import (
    SAMPLE_REVIEWS,
    RunningService,
    free_port,
    start_service,
    stop_service,
)

REVIEW = (SAMPLE_REVIEWS / "policy-valid-example.json").read_bytes()
SLACK = 6.0
"""Added to every deadline a test waits for: the machine is shared and may be slow."""


@contextlib.contextmanager
def running(tmp_path: Path, args: list[str]) -> Iterator[RunningService]:
    service = start_service(tmp_path, args)
    try:
        yield service
    finally:
        stop_service(service)


def connect(service: RunningService) -> socket.socket:
    return tls_connect(service.port, service.ca_file)


def post_review(sock: socket.socket, body: bytes = REVIEW) -> tuple[int, bytes]:
    sock.sendall(post_head(len(body)) + body)
    answer = read_response(sock)
    return answer.status, answer.body


def test_a_review_post_beyond_max_connections_gets_503(tmp_path: Path) -> None:
    with running(tmp_path, ["--max-connections", "2"]) as service:
        first, second = connect(service), connect(service)
        try:
            assert get(first).status == 200 and get(second).status == 200
            with connect(service) as third:
                status, body = post_review(third)
            assert status == 503
            assert json.loads(body) == {"error": "more than 2 open connections "
                                        "(--max-connections): retry on another connection later"}
            assert post_review(first)[0] == 200  # the connections within the cap are served
        finally:
            first.close()
            second.close()


def test_a_review_post_while_others_send_their_bodies_gets_503(tmp_path: Path) -> None:
    with running(tmp_path, ["--max-concurrent-requests", "2"]) as service:
        held = [connect(service) for _ in range(2)]
        try:
            for sock in held:
                sock.sendall(post_head(len(REVIEW)) + REVIEW[: len(REVIEW) // 2])
            deadline = time.monotonic() + SLACK
            while True:  # until both half-sent reviews count as in progress
                with connect(service) as sock:
                    status, body = post_review(sock)
                if status == 503 or time.monotonic() > deadline:
                    break
            assert status == 503
            assert json.loads(body) == {"error": "more than 2 requests in progress "
                                        "(--max-concurrent-requests): retry later"}
            held[0].sendall(REVIEW[len(REVIEW) // 2:])  # in progress: answered in the end
            assert read_response(held[0]).status == 200
        finally:
            for sock in held:
                sock.close()


def test_probes_and_metrics_answer_whatever_the_webhook_port_carries(tmp_path: Path) -> None:
    """80 webhook clients send most of a body and wait (default limits: 64 requests in
    progress): the probe and metrics ports have limits of their own."""
    probes, metrics = free_port(), free_port()
    with running(tmp_path, ["--health-probe-bind-address", f"127.0.0.1:{probes}",
                            "--metrics-bind-address", f"127.0.0.1:{metrics}"]) as service:
        stalled = []
        try:
            for _ in range(80):
                sock = connect(service)
                sock.sendall(post_head(len(REVIEW)) + REVIEW[:-10])
                stalled.append(sock)
            with connect(service) as sock:  # the webhook port itself is full
                assert get(sock).status == 503
            for path in ("/healthz", "/readyz"):
                answer = httpx.get(f"http://127.0.0.1:{probes}{path}", timeout=5)
                assert (answer.status_code, answer.text) == (200, "ok\n")
            answer = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5)
            assert answer.status_code == 200
            assert "migration_policy_webhook_reviews_total" in answer.text
        finally:
            for sock in stalled:
                sock.close()


def test_an_answer_then_crlf_then_silence_is_closed_within_the_deadlines(
        tmp_path: Path) -> None:
    with running(tmp_path, ["--keep-alive-timeout", "2", "--request-read-timeout", "2"]
                 ) as service, connect(service) as sock:
        assert post_review(sock)[0] == 200
        sock.sendall(b"\r\n")
        # the stray bytes start a read deadline (2 s), swept once a second
        assert seconds_until_closed(sock, limit=2 + 1 + SLACK) >= 1


def test_an_update_whose_object_is_beyond_uint64_is_answered_in_the_protocol(
        service: RunningService) -> None:
    review = sample_review("policy-valid-example.json")
    request = review["request"]
    request["operation"] = "UPDATE"
    request["oldObject"] = request["object"]
    request["object"] = "OBJECT"
    body = json.dumps(review).encode().replace(b'"OBJECT"', b"18446744073709551616")
    with connect(service) as sock:
        status, answer = post_review(sock, body)
    assert status == 200
    response = json.loads(answer)["response"]
    assert response["uid"] == request["uid"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("request.object must be a JSON object")


@pytest.mark.parametrize("path", ["/healthz", "/validate-migrationpolicy"])
def test_pipelined_requests_get_one_answer_each(service: RunningService, path: str) -> None:
    """Three requests in one write (uvicorn 0.29 answered one of them, then failed)."""
    one = (post_head(len(REVIEW), path) + REVIEW if path != "/healthz"
           else f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    with connect(service) as sock:
        sock.sendall(one * 3)
        statuses = [read_response(sock).status for _ in range(3)]
    assert statuses == [200, 200, 200]
