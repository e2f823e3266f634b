"""Log lines as text and as JSON: what a record becomes, and no client input starts a line."""

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.serving.logs import configure_logging, escape, fields
from app.settings import LoggingFormat, LogLevel
from tests.support.service import start_service, stop_service

FORGED = "x\n2026-01-01 00:00:00,000 INFO app.serving.app: forged"

REVIEW_FIELDS = {
    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "webhook": "validate-migrationpolicy",
    "operation": "CREATE", "namespace": "", "name": "my policy", "allowed": False,
    "policy": None, "causes": 3, "duration_ms": 1.25,
}


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """Restores the root logger after the test configured it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_text_shows_fields_as_key_value(logged: io.StringIO) -> None:
    configure_logging(LoggingFormat.TEXT, LogLevel.INFO, logged)
    logging.getLogger("app.serving.app").info("review answered", extra=fields(**REVIEW_FIELDS))
    [line] = lines(logged)
    assert " INFO app.serving.app: review answered " in line
    assert line.endswith(
        ' uid=705ab4f5-6393-11e8-b7cc-42010a800002 webhook=validate-migrationpolicy '
        'operation=CREATE namespace="" name="my policy" allowed=false policy=null causes=3 '
        'duration_ms=1.25')


def test_text_escapes_client_strings_in_message_and_fields(logged: io.StringIO) -> None:
    configure_logging(LoggingFormat.TEXT, LogLevel.INFO, logged)
    log = logging.getLogger("app.serving.app")
    log.info("no such path %s", FORGED, extra=fields(uid=FORGED, name="a\rb\x1b[31m\u2028c"))
    log.warning("plain extra", extra={"user": 'quote " and \\ backslash'})
    first, second = lines(logged)
    assert first.count("INFO") == 3  # the real level and the forged ones, on the same line
    assert "no such path x\\n2026-01-01" in first
    assert "uid=\"x\\n2026-01-01 00:00:00,000 INFO app.serving.app: forged\"" in first
    assert "name=a\\rb\\x1b[31m\\u2028c" in first
    assert second.endswith('plain extra user="quote \\" and \\\\ backslash"')


def test_text_indents_tracebacks(logged: io.StringIO) -> None:
    configure_logging(LoggingFormat.TEXT, LogLevel.INFO, logged)
    try:
        raise ValueError(FORGED)
    except ValueError:
        logging.getLogger("app.serving.app").exception("internal error")
    first, *rest = lines(logged)
    assert first.endswith("ERROR app.serving.app: internal error")
    assert rest[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in rest)
    assert rest[-1] == "    2026-01-01 00:00:00,000 INFO app.serving.app: forged"


def test_json_one_object_a_line_with_the_fields(logged: io.StringIO) -> None:
    configure_logging(LoggingFormat.JSON, LogLevel.INFO, logged)
    log = logging.getLogger("app.serving.app")
    log.info("review answered", extra=fields(**{**REVIEW_FIELDS, "uid": FORGED, "level": "forged"}))
    log.info("plain extra", extra={"resource": "namespaces"})
    first, second = (json.loads(line) for line in lines(logged))
    assert first["level"] == "info"  # a caller's field does not replace the record's own
    assert first["logger"] == "app.serving.app"
    assert first["msg"] == "review answered"
    assert first["ts"].endswith("+00:00")
    assert first["uid"] == FORGED
    assert {key: first[key] for key in REVIEW_FIELDS if key != "uid"} == {
        key: value for key, value in REVIEW_FIELDS.items() if key != "uid"}
    assert "fields" not in first
    assert second["resource"] == "namespaces"


def test_json_carries_the_traceback_in_one_line(logged: io.StringIO) -> None:
    configure_logging(LoggingFormat.JSON, LogLevel.INFO, logged)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("app.serving.app").exception("internal error")
    [line] = lines(logged)
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["exc_info"].endswith("ValueError: boom")


@pytest.mark.parametrize("log_format", list(LoggingFormat))
def test_level_filters(logged: io.StringIO, log_format: LoggingFormat) -> None:
    configure_logging(log_format, LogLevel.WARNING, logged)
    log = logging.getLogger("app.state.reflector")
    log.info("not shown")
    log.warning("shown")
    assert [line for line in lines(logged) if "shown" in line] == lines(logged)
    assert len(lines(logged)) == 1
    configure_logging(log_format, LogLevel.DEBUG, logged)
    log.debug("now shown")
    assert "now shown" in lines(logged)[-1]


def test_escape_leaves_printable_text_alone() -> None:
    assert escape("hpc/db-vmi é ✓") == "hpc/db-vmi é ✓"
    assert escape("\x00\x7f\x85\t") == "\\x00\\x7f\\x85\\t"


def test_serve_logs_json_lines_from_start_to_stop(tmp_path: Path) -> None:
    service = start_service(tmp_path, ["--logging-format", "json"])
    stop_service(service)
    records = [json.loads(line) for line in service.log().splitlines() if line]
    assert records
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys(), record
    loggers = {record["logger"] for record in records}
    assert "app.serving.tls" in loggers  # the serving certificate, named at start
    assert "app.serving.serve" in loggers  # the listeners and the runtime, named at start


def test_serve_log_level_warning_hides_the_startup_lines(tmp_path: Path) -> None:
    service = start_service(tmp_path, ["--log-level", "warning"])
    stop_service(service)
    assert "serving certificate" not in service.log()
    assert "INFO" not in service.log()
