"""README "Flags of `serve`" rows at values other than their defaults, on the real service
over TLS (issue 22): `--max-body-bytes` (the body limit and the bodies-being-received
budget that follows it), `--feature-gates` with valid gates, the serving certificate
reloaded with its new serial logged, `--log-level` warning and error, `--coverage-interval`
keeping a pass from running before it is over; and a policy's explicit
`allowWorkloadDisruption`, stamped as set rather than following `allowPostCopy`.

Every figure is a literal from the README, never imported from app/. The defaults of these
flags are pinned in tests/service/test_documented_limits.py.
"""

import base64
import copy
import datetime
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import orjson
import pytest

from tests.support.live_cluster import METRICS_PREFIX, scrape
from tests.support.raw_clients import (
    bodies_refused_past,
    get,
    probe,
    refusal_of_body,
    tls_connect,
)
from tests.support.reviews import MUTATE, VALIDATE, post_review, review_of_size, sample_review
from tests.support.service import (
    SAMPLE_CLUSTER,
    RunningService,
    make_certs,
    running_service,
    start_service,
    stop_service,
)
from tests.support.tools import openssl_binary

MIB = 1024 * 1024
POLICY = sample_review("policy-valid-example.json")
DEADLINE = 30.0
"""How long a test waits for what the service does on its own (a reload): generous, for a
loaded machine; the wait ends as soon as it is seen."""


# --max-body-bytes 1 MiB: the body limit moves, the body budget stays 32 MiB.

def with_max_body_bytes(tmp_path_factory: pytest.TempPathFactory,
                        size: int) -> Iterator[RunningService]:
    """`--max-body-bytes SIZE`, with a read deadline the test's held bodies never reach."""
    with running_service(tmp_path_factory.mktemp(f"max-body-{size}"), [
            "--max-body-bytes", str(size), "--request-read-timeout", "120"]) as running:
        yield running


@pytest.fixture(scope="module")
def one_mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    yield from with_max_body_bytes(tmp_path_factory, MIB)


def test_a_max_body_bytes_of_1_mib_reads_1_mib_and_refuses_one_byte_more(
        one_mib: RunningService) -> None:
    """A review of exactly 1 MiB is read and judged; one byte more is 413 at once, naming
    the limit set. Catches the flag ignored (8 MiB kept), `>=` for `>`, and a message
    naming another limit."""
    with one_mib.client() as http:
        answer = http.post(VALIDATE, content=review_of_size(MIB),
                           headers={"content-type": "application/json"})
        assert answer.status_code == 200
        assert answer.json()["response"]["uid"] == POLICY["request"]["uid"]
        assert answer.json()["response"]["allowed"] is True
    assert refusal_of_body(one_mib, MIB + 1) == (
        413, "the body is larger than the limit of 1048576 bytes")


def chunks(body: bytes) -> Iterator[bytes]:
    """`body` in pieces of 64 KiB: httpx sends an iterator chunked, without a length."""
    for start in range(0, len(body), 65536):
        yield body[start:start + 65536]


def test_a_chunked_body_is_counted_against_a_max_body_bytes_of_1_mib(
        one_mib: RunningService) -> None:
    """Without a Content-Length the body is counted as it arrives: 1 MiB read, one byte
    more 413. Catches a chunked body let past the limit (only declared lengths checked)."""
    with one_mib.client() as http:
        answer = http.post(VALIDATE, content=chunks(review_of_size(MIB)),
                           headers={"content-type": "application/json"})
        assert answer.status_code == 200
        assert answer.json()["response"]["allowed"] is True
    with one_mib.client() as http:
        answer = http.post(VALIDATE, content=chunks(review_of_size(MIB + 1)),
                           headers={"content-type": "application/json"})
        assert answer.status_code == 413
        assert answer.json() == {"error": "the body is larger than the limit of 1048576 bytes"}


def test_below_32_mib_the_body_budget_stays_32_mib(one_mib: RunningService) -> None:
    """32 reviews of 1 MiB being received at once hold 32 MiB: each taken in; one more byte,
    503. Catches a budget that shrinks with the body limit (say, 4 bodies of the limit)."""
    status, error = bodies_refused_past(one_mib, [MIB] * 32)
    assert status == 503
    assert error == ("request bodies being received would take more than the 33554432 bytes "
                     "they may hold at once: retry later")


# --max-body-bytes 40 MiB: the body budget follows it.

@pytest.fixture(scope="module")
def forty_mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    yield from with_max_body_bytes(tmp_path_factory, 40 * MIB)


def test_a_max_body_bytes_over_32_mib_raises_the_body_budget_to_it(
        forty_mib: RunningService) -> None:
    """With 40 MiB bodies allowed, the budget is 40 MiB (README: at least --max-body-bytes):
    bodies of 40 MiB less a byte and of one byte are taken in together (past 32 MiB); one
    more byte, 503 naming 40 MiB. A body of 40 MiB and a byte is 413. Catches a budget that
    stays 32 MiB (a body the limit allows could never be received) or that is not capped
    at the limit set."""
    status, error = bodies_refused_past(forty_mib, [40 * MIB - 1, 1])
    assert status == 503
    assert error == ("request bodies being received would take more than the 41943040 bytes "
                     "they may hold at once: retry later")
    assert refusal_of_body(forty_mib, 40 * MIB + 1) == (
        413, "the body is larger than the limit of 41943040 bytes")


# --feature-gates: a gated field accepted with its gate, refused without.

STALL = "MigrationStallDetection"
TUNING = "MigrationDowntimeTuning"
GATED = {
    "maxDowntimeMs": ({"maxDowntimeMs": 300}, {STALL, TUNING}, f"{STALL} or {TUNING}"),
    "stallDetector": ({"experimental": {"stallDetector": {"stallMargin": 5}}}, {STALL}, STALL),
    "downtimeTuning": ({"experimental": {"downtimeTuning": {"initialMs": 150}}}, {TUNING},
                       TUNING),
}
"""A field behind a gate: the spec that sets it, the gates any one of which allows it, and
how its refusal names them."""


@pytest.fixture(scope="module", params=[STALL, TUNING, f"{STALL},{TUNING}"])
def gated(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[set[str], RunningService]]:
    """The service with `--feature-gates` set to each valid value, and the gates it names."""
    with running_service(tmp_path_factory.mktemp("gates"),
                         ["--feature-gates", request.param]) as running:
        yield set(request.param.split(",")), running


def validated(client: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    review = copy.deepcopy(POLICY)
    review["request"]["object"]["spec"].update(spec)
    return post_review(client, VALIDATE, review)


@pytest.mark.parametrize("field", sorted(GATED))
def test_a_gated_field_is_accepted_with_its_gate_and_refused_without(
        gated: tuple[set[str], RunningService], field: str) -> None:
    """Catches `--feature-gates` not reaching validation, one gate taken for the other,
    and a list of gates of which only the first is read."""
    gates, running = gated
    spec, allowing, named = GATED[field]
    with running.client() as http:
        response = validated(http, spec)
    if gates & allowing:
        assert response["allowed"] is True, response
        return
    assert response["allowed"] is False
    [cause] = response["status"]["details"]["causes"]
    assert cause["type"] == "FieldValueForbidden"
    assert f"needs the {named} feature gate" in cause["message"]


@pytest.mark.parametrize("field", sorted(GATED))
def test_without_feature_gates_every_gated_field_is_refused(
        client: httpx.Client, field: str) -> None:
    """The default (`none`): the contrast that shows the gates above are what allowed."""
    spec, _, named = GATED[field]
    response = validated(client, spec)
    assert response["allowed"] is False
    [cause] = response["status"]["details"]["causes"]
    assert f"needs the {named} feature gate" in cause["message"]


# allowWorkloadDisruption set explicitly: stamped as set, not as allowPostCopy.

def stamped(client: httpx.Client, name: str = "migration-db-vmi.json") -> dict[str, str]:
    """The annotations a sample migration has once its patch is applied, without the
    prefix."""
    review = sample_review(name)
    response = post_review(client, MUTATE, review, allowed=True)
    patch = orjson.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(review["request"]["object"], patch)
    annotations: dict[str, str] = patched["metadata"]["annotations"]
    return {key.removeprefix("migrations.kubevirt.io/"): value
            for key, value in annotations.items()}


def stamp(client: httpx.Client, name: str) -> dict[str, str]:
    """The two post-copy annotations `stamped` gives."""
    return {key: value for key, value in stamped(client, name).items()
            if key.endswith(("allowPostCopy", "allowWorkloadDisruption"))}


@pytest.fixture(scope="module")
def explicit_disruption(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The sample cluster with each of the two post-copy policies setting
    allowWorkloadDisruption unlike its allowPostCopy."""
    tmp = tmp_path_factory.mktemp("disruption")
    state = tmp / "state"
    shutil.copytree(SAMPLE_CLUSTER, state)
    policies = (state / "policies.yaml").read_text()
    assert policies.count("  allowPostCopy: false\n") == 1  # my-awesome-policy
    assert policies.count("  allowPostCopy: true\n") == 1  # gold-tier-db-policy
    (state / "policies.yaml").write_text(policies.replace(
        "  allowPostCopy: false\n", "  allowPostCopy: false\n  allowWorkloadDisruption: true\n",
    ).replace(
        "  allowPostCopy: true\n", "  allowPostCopy: true\n  allowWorkloadDisruption: false\n"))
    with running_service(tmp, ["--state", str(state)]) as running:
        yield running


@pytest.mark.parametrize(("name", "post_copy"), [("migration-db-vmi.json", "false"),
                                                 ("migration-gold-db-vmi.json", "true")])
def test_an_explicit_allow_workload_disruption_is_stamped_as_set_not_as_allow_post_copy(
        explicit_disruption: RunningService, client: httpx.Client, name: str,
        post_copy: str) -> None:
    """README: allowWorkloadDisruption follows allowPostCopy only when a policy sets the
    latter alone. Set both, unlike each other: each stamped as set (the sample policies,
    which set allowPostCopy alone, stamp the two alike). Catches the follow rule applied
    whatever the policy sets."""
    other = "true" if post_copy == "false" else "false"
    with explicit_disruption.client() as http:
        assert stamp(http, name) == {"allowPostCopy": post_copy,
                                     "allowWorkloadDisruption": other}
    assert stamp(client, name) == {"allowPostCopy": post_copy,
                                   "allowWorkloadDisruption": post_copy}


# --tls-cert-file: a rotation is logged with the new serial.


def openssl(cert: Path, field: str) -> str:
    """`openssl x509 -noout -FIELD -in CERT`'s value: how docs/install.md compares it."""
    done = subprocess.run([openssl_binary(), "x509", "-noout", f"-{field}", "-in", str(cert)],
                          capture_output=True, text=True, timeout=30, check=True)
    name, _, value = done.stdout.strip().partition("=")
    assert name == {"serial": "serial", "enddate": "notAfter"}[field], done.stdout
    return value


def logged_as(cert: Path) -> str:
    """`serial S, valid until YYYY-MM-DD HH:MM UTC`, as openssl reads `cert`."""
    ends = datetime.datetime.strptime(openssl(cert, "enddate"), "%b %d %H:%M:%S %Y %Z")
    return f"serial {openssl(cert, 'serial')}, valid until {ends:%Y-%m-%d %H:%M} UTC"


def test_the_new_serial_is_logged_after_a_rotation(tmp_path: Path) -> None:
    """The routine renewal (docs/install.md): the same CA, a new serving certificate written
    over the files. The service logs the serial it starts with, then, without a restart,
    the new serial and end as `openssl x509 -serial` shows them. Catches a reload not
    logged, a line naming the old certificate, and a serial in another form than openssl's
    (the runbook compares the two)."""
    live = make_certs(tmp_path / "live")
    renewed = make_certs(tmp_path / "renewed", "--ca-cert", str(live / "ca.crt"),
                         "--ca-key", str(live / "ca.key"), "--days", "30")
    first, second = logged_as(live / "tls.crt"), logged_as(renewed / "tls.crt")
    assert first.split(",")[0] != second.split(",")[0]
    cert = live / "tls.crt"
    service = start_service(tmp_path, ["--tls-cert-file", str(cert),
                                       "--tls-private-key-file", str(live / "tls.key")],
                            ca_file=live / "ca.crt")
    try:
        assert f"serving certificate {cert}: {first}" in service.log()
        cert.write_bytes((renewed / "tls.crt").read_bytes())
        (live / "tls.key").write_bytes((renewed / "tls.key").read_bytes())
        reloaded = f"serving certificate reloaded from {cert}: {second}"
        deadline = time.monotonic() + DEADLINE
        while reloaded not in service.log():
            assert time.monotonic() < deadline, f"not logged: {reloaded}\n{service.log()}"
            time.sleep(0.1)
        with service.client() as http:
            assert http.get("/healthz").status_code == 200
    finally:
        stop_service(service)


# --log-level warning and error: a warning (a connection refused for --max-connections) and
# an error (a broken state file) both logged at `warning`, the error alone at `error`.

def until(probe_once: Callable[[], Any], what: str) -> Any:
    """`probe_once()` once it is true; fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not (found := probe_once()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def served_connection(service: RunningService) -> Any:
    """A connection the service has served (not refused for the cap: a connection closed
    just before may still count for a moment), kept open."""
    def attempt() -> Any:
        sock = tls_connect(service.port, service.ca_file)
        if get(sock).status == 200:
            return sock
        sock.close()
        return None
    return until(attempt, "a connection within --max-connections")


@pytest.mark.parametrize("level", ["warning", "error"])
def test_log_level_warning_logs_warnings_and_error_only_errors(
        tmp_path: Path, level: str) -> None:
    """The 503's warning is written before the 503 is sent, and the broken file's error a
    state poll later: once the error is in the log, the warning is there or never will be.
    Catches `--log-level error` that lets warnings through (or lets nothing through), and
    `warning` that drops warnings or lets info through."""
    state = tmp_path / "state"
    shutil.copytree(SAMPLE_CLUSTER, state)
    with running_service(tmp_path, ["--log-level", level, "--state", str(state),
                                    "--max-connections", "1"]) as running:
        with served_connection(running):
            refused = probe(running.port, running.ca_file)
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
        assert b"more than 1 open connections (--max-connections)" in refused
        (state / "broken.yaml").write_text("kind: [unclosed\n")
        until(lambda: "not reloaded, keeping the last good state" in running.log(),
              "the broken file's error")
        log = running.log()
    levels = set(re.findall(r"^\S+ \S+ ([A-Z]+) ", log, re.MULTILINE))
    assert "ERROR" in levels
    assert ("answered 503 to" in log) is (level == "warning")
    assert levels == ({"WARNING", "ERROR"} if level == "warning" else {"ERROR"}), levels


# --coverage-interval: after a pass, none runs until the interval is over.

DB_EVERYWHERE = """
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata:
  name: db-everywhere
spec:
  bandwidthPerMigration: {bandwidth}
  selectors:
    virtualMachineInstanceSelector:
      workload-type: db
"""


def governed(http: httpx.Client) -> dict[str, float]:
    """policy -> `policy_governed_vmis`, from /metrics (empty before the first pass)."""
    return {dict(labels)["policy"]: number
            for (name, labels), number in scrape(http).items()
            if name == METRICS_PREFIX + "policy_governed_vmis"}


def test_no_coverage_pass_runs_before_the_coverage_interval_is_over(tmp_path: Path) -> None:
    """With `--coverage-interval 3600`, the pass at start is the only one: the state is
    changed (the example policy's file gone, a policy for every db VMI added), the next
    decisions follow it, a second change is taken too (a state poll, 0.5 s, later; the
    coverage keeper looks for changes as often), and the coverage metrics still count the
    state the service started with. The interval is reached in
    tests/service/test_coverage_metrics.py and test_impact_http.py (a change counted after
    a pass, with 0.2 s). Catches passes run at every change, or at every check for one,
    whatever the interval."""
    state = tmp_path / "state"
    shutil.copytree(SAMPLE_CLUSTER, state)
    with running_service(tmp_path, ["--state", str(state), "--coverage-interval", "3600"]) \
            as running, running.client() as http:
        before = until(lambda: governed(http), "the first pass's figures")
        assert "my-awesome-policy" in before and "db-everywhere" not in before
        (state / "extra.yaml").write_text(DB_EVERYWHERE.format(bandwidth="2Gi"))
        (state / "policies.yaml").unlink()
        until(lambda: stamped(http).get("policy") == "db-everywhere",
              "the new policy to decide")
        (state / "extra.yaml").write_text(DB_EVERYWHERE.format(bandwidth="3Gi"))
        until(lambda: stamped(http).get("bandwidthPerMigration") == "3Gi",
              "the second change to decide")
        assert governed(http) == before


# --host 0.0.0.0: IPv4 alone (the default, '', is IPv4 and IPv6).

def test_host_0_0_0_0_listens_on_ipv4_alone(tmp_path: Path) -> None:
    """README: `0.0.0.0` or `::` for one family. Catches 0.0.0.0 taken for every address
    (a dual-stack socket). (`::` alone cannot be shown here: the test launcher waits for
    readiness over 127.0.0.1.)"""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback to be refused on")
    with running_service(tmp_path, ["--host", "0.0.0.0"]) as running:
        with tls_connect(running.port, running.ca_file, host="127.0.0.1") as sock:
            assert get(sock).status == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("::1", running.port), timeout=10).close()
        assert f"over HTTPS on 0.0.0.0:{running.port}" in running.log()
