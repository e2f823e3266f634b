"""README's "Limits" table and the defaults of its "Flags of `serve`" table, pinned: every
documented value is written here as a literal (never imported from app/), checked against the
README's own row, and against the code: `Settings()`, `serve --help`, and the real service
over TLS at the limit and just past it. Each row of the Limits table names the tests that
hold it at its boundary and just past it (`LIMIT_TESTS`): here, in
tests/service/test_documented_flags.py (non-default flags), tests/unit/
test_documented_boundaries.py (in process, fake clocks), or a test that already did so with
the figures written out (tests/unit/test_edge.py, test_connections.py, test_shutdown.py).
Likewise each row of the flags table names the tests that exercise the flag with values
written out (`FLAG_TESTS`: a number at its boundary and just past it, a choice with the
effect of each documented value), and each endpoint of the README's "Endpoints:" paragraph,
and what "Bad input" says a wrong path or method gets, the tests that hold it
(`ENDPOINT_TESTS`); one checker fails a row without a test or a named test that is gone.

A change to a limit must so change three places that agree: the code, the README, and here.
"""

import asyncio
import base64
import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest

from app.policy.precedence import Precedence
from app.serving.app import create_service
from app.settings import Settings
from app.state.files import DirectoryState
from tests.support.raw_clients import (
    bodies_refused_past,
    get,
    read_until,
    request_head,
    tls_connect,
)
from tests.support.reviews import MUTATE, VALIDATE, sample_review
from tests.support.service import REPO, SAMPLE_CLUSTER, RunningService, running_service

README = (REPO / "README.md").read_text()
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


# The test files that LIMIT_TESTS, FLAG_TESTS and ENDPOINT_TESTS name more than once.
HERE = "tests/service/test_documented_limits.py"
FLAGGED = "tests/service/test_documented_flags.py"
IN_PROCESS = "tests/unit/test_documented_boundaries.py"
EDGE = "tests/unit/test_edge.py"
CONNECTIONS = "tests/service/test_connections.py"
SHUTDOWN = "tests/service/test_shutdown.py"
MUTATE_HTTP = "tests/service/test_mutate_http.py"
VALIDATE_HTTP = "tests/service/test_validate_http.py"
BAD_INPUT = "tests/service/test_bad_input.py"
USAGE = "tests/commands/test_usage_errors.py"
TLS = "tests/service/test_tls.py"
SERVICE_ENDPOINTS = "tests/service/test_service_endpoints.py"
DUPLICATES = "tests/service/test_duplicate_selectors.py"
IMPACT = "tests/service/test_impact_http.py"
COVERAGE = "tests/service/test_coverage_metrics.py"
LOGS = "tests/service/test_logs.py"
REVIEW_LOG = "tests/service/test_review_log.py"
LIVE = "tests/live_cluster/test_kube_state.py"

# Where each row is held at its boundary and just past it, with the figure written as a
# literal: here, or in the test that already does (not repeated here).
LIMIT_TESTS: dict[str, list[tuple[str, str]]] = {
    "request body": [
        (HERE, "test_a_body_of_8_mib_is_read_and_one_byte_more_gets_413"),
        (FLAGGED, "test_a_max_body_bytes_of_1_mib_reads_1_mib_and_refuses_one_byte_more"),
        (FLAGGED, "test_a_chunked_body_is_counted_against_a_max_body_bytes_of_1_mib")],
    "bodies being received, one listener's requests together": [
        (HERE, "test_bodies_of_32_mib_are_received_at_once_and_one_byte_more_gets_503"),
        (FLAGGED, "test_below_32_mib_the_body_budget_stays_32_mib"),
        (FLAGGED, "test_a_max_body_bytes_over_32_mib_raises_the_body_budget_to_it")],
    "receiving the TLS handshake, then each request from its first byte (any byte) to the end "
    "of its body": [
        (EDGE, "test_partial_headers_are_cut_at_the_read_deadline_not_before"),
        (EDGE, "test_a_half_sent_body_is_cut_at_the_read_deadline"),
        (EDGE, "test_a_connection_that_sends_nothing_is_closed_at_the_read_deadline"),
        (CONNECTIONS, "test_a_tls_handshake_that_never_comes_is_cut"),
        (CONNECTIONS, "test_the_defaults_are_120_s_keep_alive_and_10_s_read")],
    "a client that takes none of our answer": [
        (EDGE, "test_a_client_that_takes_none_of_the_answer_is_aborted_at_the_read_deadline"),
        (EDGE, "test_a_client_that_resumes_reading_is_not_aborted")],
    "idle keep-alive connection": [
        (EDGE, "test_an_idle_connection_is_closed_at_the_keep_alive_timeout_not_before"),
        (CONNECTIONS, "test_an_idle_connection_is_kept_for_the_keep_alive_timeout"),
        (CONNECTIONS, "test_the_defaults_are_120_s_keep_alive_and_10_s_read")],
    "open connections, per listener": [
        (EDGE, "test_a_connection_beyond_the_cap_is_answered_503_and_closed"),
        (CONNECTIONS, "test_connections_beyond_max_connections_get_503")],
    "requests in progress, per listener (body reception included)": [
        (EDGE, "test_beyond_max_concurrent_requests_is_503_bodies_being_received_included"),
        (CONNECTIONS, "test_requests_beyond_max_concurrent_requests_get_503")],
    "pipelined requests of one connection with the app": [
        (EDGE, "test_50_pipelined_requests_reach_the_app_at_most_8_at_a_time_and_all_are_answered"),
        (EDGE, "test_the_eighth_pipelined_request_gets_its_body"),
        (EDGE, "test_a_request_held_behind_8_in_the_app_is_not_cut_by_the_read_deadline")],
    "graceful stop after SIGTERM": [
        (SHUTDOWN, "test_a_stalled_request_is_cut_at_the_end_of_the_grace_period"),
        (SHUTDOWN, "test_with_the_defaults_a_slow_client_does_not_hold_the_exit_past_15_s")],
    "header section (and, after a chunked body, its framing and trailers), header count, URL": [
        (HERE, "test_a_header_section_of_64_kib_is_served_and_one_byte_more_gets_431"),
        (HERE, "test_100_header_fields_are_served_and_101_get_431"),
        (HERE, "test_a_url_of_8_kib_is_served_and_one_byte_more_gets_414"),
        (EDGE, "test_a_trailer_field_that_never_ends_is_refused_before_it_is_all_sent")],
    "a connection closed (by us, or by the transport on the peer's EOF) that is not gone": [
        (EDGE, "test_a_connection_that_does_not_finish_closing_is_aborted_2_s_later"),
        (EDGE,
         "test_a_connection_the_app_closed_that_does_not_finish_closing_is_aborted_2_s_later"),
        (EDGE, "test_a_connection_the_transport_closes_itself_is_aborted_after_the_grace")],
    "causes in a denial": [
        (HERE, "test_100_causes_are_listed_and_the_101st_problem_is_counted")],
    "a value quoted in a message": [
        (HERE,
         "test_a_value_of_80_characters_is_quoted_whole_and_a_longer_one_by_its_start_and_length")],
    "`status.message`; the causes as JSON": [
        (IN_PROCESS,
         "test_status_message_lists_every_problem_up_to_64_kib_less_room_for_the_count"),
        (IN_PROCESS,
         "test_causes_filling_96_kib_of_json_are_all_listed_and_one_byte_more_is_counted"),
        (IN_PROCESS, "test_with_both_budgets_full_the_answer_stays_under_256_kib")],
    "warnings": [
        (IN_PROCESS, "test_20_warnings_from_validation_are_kept_and_a_21st_is_counted"),
        (IN_PROCESS, "test_a_warning_of_119_characters_is_kept_whole_and_one_of_120_is_cut_to_119"),
        (HERE, "test_64_warnings_in_an_answer_then_one_saying_how_many_more")],
    "request uid": [
        (HERE, "test_a_uid_of_1024_characters_is_answered_and_1025_gets_400")],
    "the JSONPatch of a migration": [
        (HERE, "test_a_patch_of_128_kib_is_sent_and_one_longer_is_not")],
    "a body larger than 64 KiB": [
        (IN_PROCESS,
         "test_a_body_of_64_kib_is_judged_on_the_loop_and_one_byte_more_in_a_worker_thread")],
    "direct GETs of VMIs the cache lacks": [
        (IN_PROCESS, "test_10_gets_at_once_then_5_a_second"),
        (IN_PROCESS, "test_4_gets_at_once_and_a_5th_is_refused_until_one_ends"),
        (IN_PROCESS, "test_each_get_is_given_1_s"),
        (IN_PROCESS, "test_a_lookup_waiting_for_another_ones_get_gives_up_after_1_s"),
        (IN_PROCESS, "test_a_not_found_answer_is_kept_5_s"),
        ("tests/live_cluster/test_kube_state_lookups.py",
         "test_a_missing_vmi_is_remembered_missing_for_a_few_seconds")],
}


def assert_every_row_names_existing_tests(rows: Iterable[str],
                                          named: dict[str, list[tuple[str, str]]]) -> None:
    """Every row of a README table names at least one test, and each named test exists (a
    top-level `def` in its file): a row added without a test, or a named test renamed or
    removed, fails (pytest alone would not say that a row had lost its test)."""
    assert sorted(named) == sorted(rows)
    for row, tests in named.items():
        assert tests, row
        for path, name in tests:
            source = (REPO / path).read_text()
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{row}: {path}::{name}"


def test_every_limit_row_is_held_at_its_boundary_by_a_named_test() -> None:
    """Each row names the tests that hold it at its boundary and just past it."""
    assert_every_row_names_existing_tests(LIMITS, LIMIT_TESTS)


# Where each flag of the "Flags of `serve`" table is exercised with a value written as a
# literal: a number held at its boundary and just past it (a time, within its documented
# check and a margin), a choice shown with the effect of each documented value.
FLAG_TESTS: dict[str, list[tuple[str, str]]] = {
    "`--state`": [
        (MUTATE_HTTP, "test_policies_changed_on_disk_change_the_next_decision"),
        (LIVE, "test_relists_after_410_gone_and_applies_what_changed_meanwhile"),
        (USAGE, "test_missing_state_directory")],
    "`--kubeconfig`": [
        (LIVE, "test_state_kube_outside_a_cluster_needs_a_kubeconfig"),
        (LIVE, "test_state_kube_with_a_missing_kubeconfig_names_it"),
        (LIVE, "test_resumes_from_the_last_resource_version_after_a_dropped_connection"),
        ("tests/cluster/test_credentials.py", "test_a_wrong_token_is_never_ready")],
    "`--precedence`": [
        (MUTATE_HTTP, "test_sample_migration_is_stamped_with_its_policy"),
        (MUTATE_HTTP, "test_kubevirt_precedence_flag")],
    "`--annotation-prefix`": [
        (MUTATE_HTTP, "test_sample_migration_is_stamped_with_its_policy"),
        (MUTATE_HTTP, "test_missing_namespace_and_experimental_and_prefix")],
    "`--feature-gates`": [
        (FLAGGED, "test_a_gated_field_is_accepted_with_its_gate_and_refused_without"),
        (FLAGGED, "test_without_feature_gates_every_gated_field_is_refused"),
        (USAGE, "test_unknown_feature_gate_without_pydantic_words")],
    "`--deny-duplicate-selectors`": [
        (DUPLICATES, "test_equal_selectors_warn_and_name_the_winner"),
        (DUPLICATES, "test_deny_duplicate_selectors_flag")],
    "`--tls-cert-file`, `--tls-private-key-file`": [
        (TLS, "test_generated_ca_verifies_the_server_for_its_names"),
        (TLS, "test_rewritten_files_are_served_to_new_connections"),
        (TLS, "test_reload_waits_for_a_matching_pair_and_keeps_the_old_certificate_meanwhile"),
        (FLAGGED, "test_the_new_serial_is_logged_after_a_rotation"),
        (USAGE, "test_missing_tls_files_are_named")],
    "`--client-ca-file`": [
        (TLS, "test_a_client_certificate_signed_by_the_client_ca_is_accepted"),
        (TLS, "test_without_a_client_certificate_the_connection_is_refused"),
        (TLS, "test_a_client_certificate_from_another_ca_is_refused"),
        (TLS, "test_a_changed_client_ca_file_is_reloaded"),
        (USAGE, "test_missing_client_ca_is_named")],
    "`--host`, `--port`": [
        (SERVICE_ENDPOINTS, "test_every_address_means_ipv4_and_ipv6"),
        (FLAGGED, "test_host_0_0_0_0_listens_on_ipv4_alone"),
        (USAGE, "test_port_in_use_says_what_to_do")],
    "`--max-body-bytes`": [
        (HERE, "test_a_body_of_8_mib_is_read_and_one_byte_more_gets_413"),
        (FLAGGED, "test_a_max_body_bytes_of_1_mib_reads_1_mib_and_refuses_one_byte_more"),
        (FLAGGED, "test_a_chunked_body_is_counted_against_a_max_body_bytes_of_1_mib")],
    "`--enforcement`": [
        (VALIDATE_HTTP, "test_all_problems_in_one_answer"),
        (HERE, "test_64_warnings_in_an_answer_then_one_saying_how_many_more"),
        ("tests/service/test_metrics.py",
         "test_an_invalid_policy_admitted_in_warn_mode_counts_as_warned"),
        (IMPACT, "test_enforcement_warn_still_gives_the_impact_of_an_invalid_policy")],
    "`--health-probe-bind-address`, `--metrics-bind-address`": [
        (SERVICE_ENDPOINTS, "test_probes_are_served_over_plain_http"),
        (SERVICE_ENDPOINTS, "test_metrics_are_served_over_plain_http_on_every_address"),
        (SERVICE_ENDPOINTS, "test_a_taken_probe_port_is_a_usage_error_naming_the_flag")],
    "`--logging-format`": [
        (REVIEW_LOG, "test_every_answer_is_one_line_with_its_fields"),
        (LOGS, "test_serve_logs_json_lines_from_start_to_stop")],
    "`--log-level`": [
        ("tests/service/test_disconnects.py",
         "test_a_client_hanging_up_is_counted_and_logged_once_at_debug"),
        (CONNECTIONS, "test_the_defaults_are_120_s_keep_alive_and_10_s_read"),
        (LOGS, "test_serve_log_level_warning_hides_the_startup_lines"),
        (FLAGGED, "test_log_level_warning_logs_warnings_and_error_only_errors")],
    "`--request-read-timeout`": [
        (CONNECTIONS, "test_headers_sent_slowly_are_cut_at_the_read_deadline"),
        (CONNECTIONS, "test_a_half_sent_body_is_cut_without_an_answer"),
        (CONNECTIONS, "test_a_connection_that_sends_nothing_is_cut"),
        (CONNECTIONS, "test_the_defaults_are_120_s_keep_alive_and_10_s_read"),
        (EDGE, "test_partial_headers_are_cut_at_the_read_deadline_not_before")],
    "`--keep-alive-timeout`": [
        (CONNECTIONS, "test_an_idle_connection_is_kept_for_the_keep_alive_timeout"),
        (CONNECTIONS, "test_the_defaults_are_120_s_keep_alive_and_10_s_read"),
        (EDGE, "test_an_idle_connection_is_closed_at_the_keep_alive_timeout_not_before")],
    "`--max-connections`, `--max-concurrent-requests`": [
        (CONNECTIONS, "test_connections_beyond_max_connections_get_503"),
        (CONNECTIONS, "test_requests_beyond_max_concurrent_requests_get_503"),
        (EDGE, "test_a_connection_beyond_the_cap_is_answered_503_and_closed"),
        (EDGE, "test_beyond_max_concurrent_requests_is_503_bodies_being_received_included")],
    "`--shutdown-grace-period`": [
        (SHUTDOWN, "test_sigterm_answers_in_flight_requests_and_closes_the_rest"),
        (SHUTDOWN, "test_a_stalled_request_is_cut_at_the_end_of_the_grace_period"),
        (SHUTDOWN, "test_with_the_defaults_a_slow_client_does_not_hold_the_exit_past_15_s")],
    "`--watch-idle-timeout`": [
        ("tests/live_cluster/test_kube_state_recovery.py",
         "test_a_silent_watch_is_resumed_within_the_idle_timeout")],
    "`--max-staleness`": [
        ("tests/live_cluster/test_kube_state_freshness.py",
         "test_a_cache_the_api_has_not_confirmed_for_too_long_is_said_to_be_stale")],
    "`--impact-warnings`": [
        (IMPACT, "test_the_sample_policy_on_create_gets_its_impact_last"),
        (IMPACT, "test_impact_warnings_false_gives_none")],
    "`--coverage-interval`": [
        (IMPACT, "test_a_new_vmi_in_the_state_directory_shows_in_the_impact"),
        (COVERAGE, "test_a_vmi_and_a_policy_changed_in_the_directory_show_after_a_pass"),
        (FLAGGED, "test_no_coverage_pass_runs_before_the_coverage_interval_is_over")],
    "`--per-policy-metrics`": [
        (COVERAGE, "test_per_policy_figures_are_what_coverage_prints"),
        (COVERAGE, "test_without_per_policy_metrics_only_the_statuses_are_left")],
}


def test_every_flag_row_is_exercised_by_a_named_test() -> None:
    assert_every_row_names_existing_tests(FLAGS, FLAG_TESTS)


# The "Endpoints:" paragraph under the flags table, and what "Bad input" says of the rest.
ENDPOINTS = ("POST /validate-migrationpolicy", "POST /mutate-virtualmachineinstancemigration",
             "GET /healthz", "GET /readyz", "GET /metrics")
READY = ("503 until the cluster state has synced and the first coverage pass has made its "
         "view of the VMIs, and from the moment SIGTERM arrives")
ELSE = "a wrong path or method gets 404 or 405 listing the endpoints"
ENDPOINT_TESTS: dict[str, list[tuple[str, str]]] = {
    "POST /validate-migrationpolicy": [
        (VALIDATE_HTTP, "test_sample_review"),
        (VALIDATE_HTTP, "test_all_problems_in_one_answer")],
    "POST /mutate-virtualmachineinstancemigration": [
        (MUTATE_HTTP, "test_sample_migration_is_stamped_with_its_policy"),
        (MUTATE_HTTP, "test_stale_owned_annotations_are_removed")],
    "GET /healthz": [
        (SERVICE_ENDPOINTS, "test_health_and_readiness"),
        (SERVICE_ENDPOINTS, "test_probes_are_served_over_plain_http")],
    "GET /readyz": [
        (SERVICE_ENDPOINTS, "test_health_and_readiness"),
        (HERE,
         "test_readyz_is_503_until_the_first_coverage_pass_and_from_shutdown"),
        (SHUTDOWN, "test_sigterm_answers_in_flight_requests_and_closes_the_rest"),
        ("tests/cluster/test_kube_state_permissions.py",
         "test_not_ready_until_every_kind_has_listed")],
    "GET /metrics": [
        ("tests/service/test_metrics_doc.py", "test_a_documented_series_is_served_as_documented"),
        ("tests/service/test_metrics_doc.py", "test_nothing_else_is_served")],
    ELSE: [
        (HERE, "test_a_path_not_served_gets_404_listing_the_endpoints"),
        (HERE, "test_a_method_not_served_gets_405_listing_the_endpoints"),
        (USAGE, "test_wrong_path_or_method_lists_the_endpoints"),
        (BAD_INPUT, "test_other_methods")],
}


def endpoints_paragraph() -> str:
    """The README's "Endpoints:" paragraph, whitespace collapsed."""
    paragraph = README.split("\nEndpoints: ", 1)[1].split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def test_every_endpoint_of_the_readme_is_pinned() -> None:
    """An endpoint added to (or dropped from) the README's paragraph without a test here."""
    listed = re.findall(r"`((?:GET|POST|PUT|PATCH|DELETE|HEAD) /[^`]*)`",
                        endpoints_paragraph())
    assert listed == list(ENDPOINTS)
    assert f"`GET /readyz` ({READY})" in endpoints_paragraph()
    bad_input = README.split("\n### Bad input\n", 1)[1].split("\n## ", 1)[0]
    assert ELSE in " ".join(bad_input.split())


def test_every_endpoint_is_held_by_a_named_test() -> None:
    assert_every_row_names_existing_tests([*ENDPOINTS, ELSE], ENDPOINT_TESTS)


# At the limit and just past it, on the real service over TLS.

def status_of(service: RunningService, head: bytes) -> int:
    """The status the service answers `head` (a GET's request line and headers) with."""
    with tls_connect(service.port, service.ca_file) as sock:
        sock.sendall(head)
        reply = read_until(sock, b"\r\n")
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


# Bodies being received, one listener's requests together: 32 MiB.

@pytest.fixture(scope="module")
def budget_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The default limits, with a read deadline that a loaded machine cannot reach while
    the test holds its bodies (the budget is not the deadline's test). Of its own: bodies
    held by the test are released only after it hangs up."""
    with running_service(tmp_path_factory.mktemp("budget"),
                         ["--request-read-timeout", "120"]) as running:
        yield running


def test_bodies_of_32_mib_are_received_at_once_and_one_byte_more_gets_503(
        budget_service: RunningService) -> None:
    """Four reviews of 8 MiB (the default --max-body-bytes) being received hold 32 MiB:
    each taken in; one more byte, 503. Catches a budget other than 32 MiB, `>=` for `>`,
    and a body not counted until it is read."""
    status, error = bodies_refused_past(budget_service, [8 * MIB] * 4)
    assert status == 503
    assert error == ("request bodies being received would take more than the 33554432 bytes "
                     "they may hold at once: retry later")
    with budget_service.client() as http:  # released once their clients hung up
        assert http.post(VALIDATE, json=POLICY).status_code == 200


# The JSONPatch of a migration: 128 KiB.

MIGRATION = sample_review("migration-db-vmi.json")
STALE = "migrations.kubevirt.io/stale-"


def stamped(client: httpx.Client, stale_length: int) -> dict[str, Any]:
    """The response to the db-vmi migration with one stale annotation under the prefix
    (the patch removes it), its key `stale_length` characters after the prefix."""
    review = copy.deepcopy(MIGRATION)
    review["request"]["object"]["metadata"]["annotations"] = {STALE + "s" * stale_length: "x"}
    answer = client.post(MUTATE, json=review)
    assert answer.status_code == 200
    response: dict[str, Any] = answer.json()["response"]
    assert response["allowed"] is True
    return response


def test_a_patch_of_128_kib_is_sent_and_one_longer_is_not(client: httpx.Client) -> None:
    """The patch is sent base64-encoded: 128 KiB of it, 131,072 characters, encode a JSON
    patch of 98,304 bytes. A stale annotation's key is sized (from the patch with a short
    one) so that the patch is exactly that: sent. One character more, and the patch would
    take 131,076 (base64 goes by 4): not sent, the migration allowed with a warning. Catches
    a limit other than 128 KiB, `>=` for `>`, and a limit on the JSON rather than the
    encoded patch."""
    short = stamped(client, 100)
    short_length = len(base64.b64decode(short["patch"]))
    at = stamped(client, 100 + 98_304 - short_length)
    assert len(at["patch"]) == 128 * KIB
    assert len(base64.b64decode(at["patch"])) == 98_304
    past = stamped(client, 100 + 98_304 - short_length + 1)
    assert "patch" not in past and "patchType" not in past
    assert past["warnings"][-1] == (
        "no migration policy applied: the patch would take 7 operations, 131076 bytes: "
        "remove stale annotations first")


# The endpoints: what is not one of them, and readiness.

LISTED = ", ".join(ENDPOINTS)
"""The README's endpoints (`test_every_endpoint_of_the_readme_is_pinned` holds ENDPOINTS to
it) as the service's 404 and 405 must list them, in the README's order."""


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"), ("POST", "/validate"), ("POST", "/validate-migrationpolicy/"),
    ("GET", "/healthz/"), ("GET", "/metrics/x"), ("PUT", "/mutate")])
def test_a_path_not_served_gets_404_listing_the_endpoints(
        client: httpx.Client, method: str, path: str) -> None:
    """Catches a path matched by its prefix or with a trailing slash (redirected), and a
    404 in the framework's words (`Not Found`) that says nothing of what is served."""
    answer = client.request(method, path, content=b"{}")
    assert answer.status_code == 404
    assert answer.json() == {"error": f"no such path {path}: {LISTED}"}


@pytest.mark.parametrize(("method", "path"), [
    (method, path) for path in (VALIDATE, MUTATE) for method in ("GET", "PUT", "DELETE")
] + [("POST", path) for path in ("/healthz", "/readyz", "/metrics")])
def test_a_method_not_served_gets_405_listing_the_endpoints(
        client: httpx.Client, method: str, path: str) -> None:
    """A webhook takes only POST (and says `Allow: POST`); the probes and metrics only GET.
    Catches a webhook that judges a GET, a probe answering any method, and a 405 that lists
    no endpoint."""
    answer = client.request(method, path, content=b"{}")
    assert answer.status_code == 405
    if path in (VALIDATE, MUTATE):
        assert answer.headers["allow"] == "POST"
        assert answer.json() == {"error": f"only POST is allowed on {path}: {LISTED}"}
    else:
        assert answer.json() == {"error": f"POST is not allowed on {path}: {LISTED}"}


def test_readyz_is_503_until_the_first_coverage_pass_and_from_shutdown() -> None:
    """README: 503 until the state has synced and the first coverage pass has made its view
    of the VMIs, and from SIGTERM. The HTTPS app `serve` runs, built by create_service on
    the sample cluster (a directory: synced once read), in process: on the real service
    the first pass over the samples ends before a client could ask, so its order cannot
    be seen there. The pass is the keeper's own (what its `run` does in a worker thread);
    shutdown is what SIGTERM begins. Catches readiness on the state alone (impact warnings
    would read no view), and a service still ready while it stops."""
    state = DirectoryState(SAMPLE_CLUSTER, Precedence.DOCUMENTED)
    running = create_service(Settings(), state)

    async def probes() -> list[tuple[str, int, str]]:
        seen = []
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as http:
            async def probe(path: str) -> None:
                answer = await http.get(path)
                seen.append((path, answer.status_code, answer.text))
            assert state.is_ready()
            await probe("/readyz")
            await probe("/healthz")
            await asyncio.to_thread(running.coverage.refresh)
            await probe("/readyz")
            running.begin_shutdown()
            await probe("/readyz")
            await probe("/healthz")
        return seen

    assert asyncio.run(probes()) == [
        ("/readyz", 503, "cluster state not synced yet\n"), ("/healthz", 200, "ok\n"),
        ("/readyz", 200, "ok\n"), ("/readyz", 503, "shutting down\n"), ("/healthz", 200, "ok\n")]
