"""The one line per answered review, over a real `serve`, in text and JSON."""

import json
import time

import orjson
import pytest

from tests.support.reviews import sample_review
from tests.support.service import start_service, stop_service

FORGED = "x\n2026-12-02 00:00:00,000 ERROR app: forged"


def review(name: str, uid: str) -> bytes:
    body = sample_review(name)
    body["request"]["uid"] = uid
    return orjson.dumps(body)


def answered_lines(log: str, marker: str) -> list[str]:
    return [line for line in log.splitlines() if "answered" in line and marker in line]


def wait_for(service, marker: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = answered_lines(service.log(), marker)
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"no {count} answered lines with {marker!r} in:\n{service.log()}")


@pytest.fixture(scope="module", params=["text", "json"])
def logged(request, tmp_path_factory):
    service = start_service(tmp_path_factory.mktemp(f"log-{request.param}"),
                            ["--logging-format", request.param])
    with service.client() as client:
        for name, uid in (("policy-valid-example.json", "uid-valid"),
                          ("policy-negative-bandwidth.json", "uid-denied"),
                          ("migration-db-vmi.json", "uid-patched"),
                          ("policy-valid-example.json", FORGED)):
            path = "mutate-virtualmachineinstancemigration" if "migration" in name \
                else "validate-migrationpolicy"
            assert client.post(f"/{path}", content=review(name, uid)).status_code == 200
    yield request.param, service
    stop_service(service)


def test_every_answer_is_one_line_with_its_fields(logged):
    fmt, service = logged
    lines = wait_for(service, "uid", 4)
    if fmt == "json":
        entries = {entry["uid"]: entry for entry in map(json.loads, lines)}
        valid, denied, patched = (entries[uid] for uid in ("uid-valid", "uid-denied",
                                                            "uid-patched"))
        assert valid["level"] == "info" and valid["logger"] == "app.review"
        assert valid["msg"] == "answered" and "ts" in valid
        assert (valid["webhook"], valid["operation"], valid["allowed"], valid["causes"]) == (
            "/validate-migrationpolicy", "CREATE", True, None)
        assert (denied["allowed"], denied["causes"], denied["name"]) == (
            False, 1, "negative-bandwidth")
        assert (patched["policy"], patched["namespace"], patched["allowed"]) == (
            "my-awesome-policy", "hpc", True)
        assert isinstance(patched["duration_ms"], float)
        assert FORGED in entries
    else:
        denied = next(line for line in lines if "uid=uid-denied" in line)
        assert " INFO app.review: answered " in denied
        for field in ("webhook=/validate-migrationpolicy", "operation=CREATE",
                      "name=negative-bandwidth", "allowed=false", "causes=1", "duration_ms="):
            assert field in denied
        patched = next(line for line in lines if "uid=uid-patched" in line)
        assert "policy=my-awesome-policy" in patched and "namespace=hpc" in patched


def test_a_client_string_never_starts_a_line(logged):
    _, service = logged
    wait_for(service, "uid", 4)
    assert not any(line.startswith("2026-12-02 00:00:00,000") for line in
                   service.log().splitlines())
    assert "forged" in service.log()


def test_nothing_of_the_object_is_logged(logged):
    _, service = logged
    wait_for(service, "uid", 4)
    log = service.log()
    assert "217Ki" not in log  # the policy's bandwidth, and the value stamped on the migration
