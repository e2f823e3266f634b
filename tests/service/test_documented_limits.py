"""README's "Limits" table and the defaults of its "Flags of `serve`" table, pinned: every
documented value is written here as a literal (never imported from app/), checked against the
README's own row, and against the code: `Settings()`, `serve --help`, the constant where
nothing cheaper shows it, and the real service over TLS at the limit and just past it.

A change to a limit must so change three places that agree: the code, the README, and here.
"""

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.admission import review as admission_review
from app.policy import findings
from app.serving import edge, request_limits, review_endpoint
from app.settings import Settings
from app.state.lookups import LookupLimits
from tests.support.raw_clients import get, request_head, tls_connect
from tests.support.reviews import sample_review
from tests.support.service import REPO, RunningService, running_service

README = (REPO / "README.md").read_text()
VALIDATE = "/validate-migrationpolicy"
KIB = 1024
MIB = 1024 * KIB


def table(heading: str) -> dict[str, list[str]]:
    """A README table under `heading`, by its first cell: the other cells, stripped."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("flag", "limit", "---"):
            rows[cells[0]] = cells[1:]
    return rows


# The "Flags of `serve`" table: flag cell -> (default cell, Settings fields and their
# defaults, what `serve --help` says of each flag).
FLAGS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "`--state`": ("`samples/cluster`", {"state": str(REPO / "samples" / "cluster")},
                  {"--state": "the bundled samples/cluster"}),
    "`--kubeconfig`": ("in-cluster", {"kubeconfig": None}, {"--kubeconfig": "in-cluster"}),
    "`--precedence`": ("`documented`", {"precedence": "documented"},
                       {"--precedence": "documented"}),
    "`--annotation-prefix`": ("`migrations.kubevirt.io/`",
                              {"annotation_prefix": "migrations.kubevirt.io/"},
                              {"--annotation-prefix": "migrations.kubevirt.io/"}),
    "`--feature-gates`": ("none", {"feature_gates": frozenset()}, {"--feature-gates": "none"}),
    "`--deny-duplicate-selectors`": ("off", {"deny_duplicate_selectors": False},
                                     {"--deny-duplicate-selectors": "off"}),
    "`--tls-cert-file`, `--tls-private-key-file`": (
        "development certificate in `--certs-dir` (`certs/`)",
        {"tls_cert_file": None, "tls_private_key_file": None, "certs_dir": "certs"},
        {"--tls-cert-file": "a development certificate in --certs-dir",
         "--certs-dir": "certs"}),
    "`--client-ca-file`": ("none", {"client_ca_file": None}, {}),
    "`--host`, `--port`": ("every address, `8443`", {"host": "", "port": 8443},
                           {"--host": "'', every address", "--port": "8443"}),
    "`--max-body-bytes`": ("8 MiB", {"max_body_bytes": 8 * MIB},
                           {"--max-body-bytes": "8388608"}),
    "`--enforcement`": ("`deny`", {"enforcement": "deny"}, {"--enforcement": "deny"}),
    "`--health-probe-bind-address`, `--metrics-bind-address`": (
        "`0` (off)", {"health_probe_bind_address": "0", "metrics_bind_address": "0"},
        {"--health-probe-bind-address": "0", "--metrics-bind-address": "0"}),
    "`--logging-format`": ("`text`", {"logging_format": "text"}, {"--logging-format": "text"}),
    "`--log-level`": ("`info`", {"log_level": "info"}, {"--log-level": "info"}),
    "`--request-read-timeout`": ("10 s", {"request_read_timeout": 10.0},
                                 {"--request-read-timeout": "10.0"}),
    "`--keep-alive-timeout`": ("120 s", {"keep_alive_timeout": 120.0},
                               {"--keep-alive-timeout": "120.0"}),
    "`--max-connections`, `--max-concurrent-requests`": (
        "1000, 64", {"max_connections": 1000, "max_concurrent_requests": 64},
        {"--max-connections": "1000", "--max-concurrent-requests": "64"}),
    "`--shutdown-grace-period`": ("15 s", {"shutdown_grace_period": 15.0},
                                  {"--shutdown-grace-period": "15.0"}),
    "`--watch-idle-timeout`": ("90 s", {"watch_idle_timeout": 90.0},
                               {"--watch-idle-timeout": "90.0"}),
    "`--max-staleness`": ("300 s", {"max_staleness": 300.0}, {"--max-staleness": "300.0"}),
    "`--impact-warnings`": ("`true`", {"impact_warnings": True}, {"--impact-warnings": "true"}),
    "`--coverage-interval`": ("30 s", {"coverage_interval": 30.0},
                              {"--coverage-interval": "30.0"}),
    "`--per-policy-metrics`": ("`true`", {"per_policy_metrics": True},
                               {"--per-policy-metrics": "true"}),
}


def test_every_flag_row_is_pinned() -> None:
    """A flag added to (or dropped from) the README table without a pinned default here."""
    assert sorted(table("Flags of `serve`")) == sorted(FLAGS)


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_the_readme_states_the_flag_default(flag: str) -> None:
    assert table("Flags of `serve`")[flag][0] == FLAGS[flag][0]


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_settings_has_the_documented_default(flag: str) -> None:
    """Catches a default changed in app/settings.py but not in the README."""
    settings = Settings()
    for field, expected in FLAGS[flag][1].items():
        actual = getattr(settings, field)
        if hasattr(actual, "value"):  # an enum
            actual = actual.value
        assert (str(actual) if field in ("state", "certs_dir") else actual) == expected, field


@pytest.fixture(scope="module")
def serve_help() -> dict[str, str]:
    """`serve --help`, as a user runs it: each option's text, whitespace collapsed."""
    done = subprocess.run([sys.executable, "-m", "app", "serve", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "COLUMNS": "1000"})
    assert done.returncode == 0, done.stderr
    options = done.stdout.split("\noptions:\n", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + options)
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries if entry}


@pytest.mark.parametrize("flag", sorted(row for row in FLAGS if FLAGS[row][2]))
def test_serve_help_shows_the_documented_default(flag: str, serve_help: dict[str, str]) -> None:
    """Catches a help text that says another default than the one used (or none)."""
    for option, shown in FLAGS[flag][2].items():
        assert f"(default: {shown})" in serve_help[option], serve_help[option]


# The "Limits" table: limit cell -> its default cell.
LIMITS = {
    "request body": "8 MiB",
    "bodies being received, one listener's requests together": "32 MiB (at least "
                                                               "`--max-body-bytes`)",
    "receiving the TLS handshake, then each request from its first byte (any byte) to the end "
    "of its body": "10 s",
    "a client that takes none of our answer": "10 s",
    "idle keep-alive connection": "120 s",
    "open connections, per listener": "1000",
    "requests in progress, per listener (body reception included)": "64",
    "pipelined requests of one connection with the app": "8",
    "graceful stop after SIGTERM": "15 s",
    "header section (and, after a chunked body, its framing and trailers), header count, URL":
        "64 KiB, 100, 8 KiB",
    "a connection closed (by us, or by the transport on the peer's EOF) that is not gone": "2 s",
    "causes in a denial": "100, then one saying how many more",
    "a value quoted in a message": "80 characters, then its length",
    "`status.message`; the causes as JSON": "64 KiB; 96 KiB",
    "warnings": "20 from validation (64 in any answer), each under 120 characters",
    "request uid": "1024 characters",
    "the JSONPatch of a migration": "128 KiB",
    "a body larger than 64 KiB": "",
    "direct GETs of VMIs the cache lacks": "5 a second (bursts of 10), 4 at once, 1 s each, "
                                           "not-found kept 5 s",
}


def test_every_limit_row_is_pinned() -> None:
    """A limit added to (or dropped from) the README table without a test here."""
    assert sorted(table("Limits")) == sorted(LIMITS)


@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_the_readme_states_the_limit(limit: str) -> None:
    assert table("Limits")[limit][0] == LIMITS[limit]


def test_the_flagged_limits_are_the_settings_defaults() -> None:
    """The Limits rows with a flag: the same defaults as the flags table (8 MiB, 10 s, 120 s,
    1000, 64, 15 s)."""
    settings = Settings()
    assert settings.max_body_bytes == 8 * MIB
    assert settings.request_read_timeout == 10.0
    assert settings.keep_alive_timeout == 120.0
    assert (settings.max_connections, settings.max_concurrent_requests) == (1000, 64)
    assert settings.shutdown_grace_period == 15.0


def test_the_limits_without_a_flag_or_a_cheap_boundary() -> None:
    """The code's constants for the rows whose boundary would take a slow or racy test here
    (their behaviour is tested in tests/service/test_connections.py, test_large_reviews.py
    and tests/live_cluster/test_kube_state_lookups.py): catches a constant changed without the
    README."""
    assert request_limits.BODY_BUDGET_BYTES == 32 * MIB
    assert edge.MAX_PIPELINED == 8
    assert edge.CLOSE_GRACE_SECONDS == 2.0
    assert (findings.SUMMARY_BUDGET, findings.CAUSES_BUDGET) == (64 * KIB, 96 * KIB)
    assert findings.MAX_WARNINGS == 20
    assert findings.MAX_WARNING_LENGTH < 120
    assert admission_review.MAX_WARNINGS == 64
    assert admission_review.MAX_PATCH_LENGTH == 128 * KIB
    assert review_endpoint.OFF_LOOP_BYTES == 64 * KIB
    limits = LookupLimits()
    assert (limits.rate, limits.burst, limits.concurrency, limits.timeout,
            limits.negative_ttl) == (5.0, 10, 4, 1.0, 5.0)


# At the limit and just past it, on the real service over TLS.

def status_of(service: RunningService, head: bytes) -> int:
    """The status the service answers `head` (a GET's request line and headers) with."""
    with tls_connect(service.port, service.ca_file) as sock:
        sock.sendall(head)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_a_url_of_8_kib_is_served_and_one_byte_more_gets_414(service: RunningService) -> None:
    """Catches an off-by-one (a URL of exactly the limit refused) and a limit moved."""
    url = "/healthz?" + "a" * (8 * KIB - len("/healthz?"))
    with tls_connect(service.port, service.ca_file) as sock:
        assert get(sock, url).status == 200
    assert status_of(service, request_head(url + "a")) == 414


def test_100_header_fields_are_served_and_101_get_431(service: RunningService) -> None:
    """Host and 99 more are 100 fields; catches a count that starts after Host, or an
    off-by-one."""
    fields = {f"X-Field-{number}": "v" for number in range(99)}
    assert status_of(service, request_head(headers=fields)) == 200
    assert status_of(service, request_head(headers={**fields, "X-Field-99": "v"})) == 431


def head_of_size(size: int) -> bytes:
    """A GET /healthz whose header section is `size` bytes as the service counts it: the URL
    and each field with its `: ` and CRLF (the request line's method and version, and the
    blank line, are not counted); padded by one field."""
    counted = len("/healthz") + len("Host") + len("localhost") + 4 + len("X-Pad") + 4
    return request_head(headers={"X-Pad": "p" * (size - counted)})


def test_a_header_section_of_64_kib_is_served_and_one_byte_more_gets_431(
        service: RunningService) -> None:
    """Catches a limit on one field's value rather than on the section, an off-by-one, and a
    limit moved."""
    assert status_of(service, head_of_size(64 * KIB)) == 200
    assert status_of(service, head_of_size(64 * KIB + 1)) == 431


def test_a_body_of_8_mib_is_read_and_one_byte_more_gets_413(client: httpx.Client) -> None:
    """At the limit the body is read and judged (400: not an AdmissionReview), past it 413.
    Catches `>=` for `>`."""
    padding = b'{"pad": "' + b"x" * (8 * MIB - len(b'{"pad": ""}')) + b'"}'
    assert len(padding) == 8 * MIB
    assert client.post(VALIDATE, content=padding).status_code == 400
    over = padding[:-2] + b'x"}'
    assert client.post(VALIDATE, content=over).status_code == 413


POLICY = sample_review("policy-valid-example.json")


def policy_review(**spec: Any) -> dict[str, Any]:
    review = copy.deepcopy(POLICY)
    review["request"]["object"]["spec"].update(spec)
    return review


def test_a_uid_of_1024_characters_is_answered_and_1025_gets_400(client: httpx.Client) -> None:
    review = policy_review()
    review["request"]["uid"] = "u" * 1024
    assert client.post(VALIDATE, json=review).status_code == 200
    review["request"]["uid"] = "u" * 1025
    assert client.post(VALIDATE, json=review).status_code == 400


def bad_keys(count: int) -> dict[str, Any]:
    """A policy with `count` invalid label keys: one problem each."""
    return policy_review(selectors={"namespaceSelector": {
        f"bad key {number}!": "v" for number in range(count)}})


def causes(client: httpx.Client, review: dict[str, Any]) -> list[dict[str, str]]:
    answer = client.post(VALIDATE, json=review)
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["allowed"] is False
    return response["status"]["details"]["causes"]  # type: ignore[no-any-return]


def test_100_causes_are_listed_and_the_101st_problem_is_counted(client: httpx.Client) -> None:
    """Catches a cap of 99 or 101, and the count cause missing or added below the cap."""
    listed = causes(client, bad_keys(100))
    assert len(listed) == 100
    assert "more problem" not in listed[-1]["message"]
    listed = causes(client, bad_keys(101))
    assert len(listed) == 101
    assert listed[-1]["message"].startswith("1 more problem not listed (only the first 100 are)")


def test_a_value_of_80_characters_is_quoted_whole_and_a_longer_one_by_its_start_and_length(
        client: httpx.Client) -> None:
    """The value as written in JSON, a string's quotes included: a string of 78 characters
    is 80 quoted, kept whole; one of 79 is quoted by its start, in 80 characters, and its
    length. Catches a shortening that starts elsewhere, or one that loses the length."""
    whole = "x" * 78
    [cause] = causes(client, policy_review(bandwidthPerMigration=whole))
    assert f'"{whole}" is not a Kubernetes quantity' in cause["message"]
    [cause] = causes(client, policy_review(bandwidthPerMigration="x" * 79))
    shortened = '"' + "x" * 75 + '..."'
    assert len(shortened) == 80
    assert cause["message"].startswith(f"{shortened} (79 characters) is not a")


@pytest.fixture(scope="module")
def warn_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """`--enforcement warn`: every problem a warning."""
    with running_service(tmp_path_factory.mktemp("warn"),
                         ["--enforcement", "warn", "--impact-warnings=false"]) as running:
        yield running


def test_64_warnings_in_an_answer_then_one_saying_how_many_more(
        warn_service: RunningService) -> None:
    """With `--enforcement warn` every problem is a warning; the sample policy has one more
    (its bandwidth below 1Mi). Catches a cap of the answer other than 64, the count missing,
    and a warning of 120 characters or more."""
    with warn_service.client() as http:
        def warnings(count: int) -> list[str]:
            answer = http.post(VALIDATE, json=bad_keys(count))
            assert answer.status_code == 200
            return answer.json()["response"]["warnings"]  # type: ignore[no-any-return]
        at = warnings(63)
        assert len(at) == 64
        assert not any("more warnings not shown" in warning for warning in at)
        past = warnings(64)
        assert len(past) == 65
        assert past[-1] == "1 more warnings not shown"
        assert all(len(warning) < 120 for warning in at + past)
