"""The per-review log line: kept as fields, formatted and written when its batch is."""

import io
import json
import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.serving.logs import text_value
from app.serving.review_log import FLUSH_LINES, LOGGER, ReviewLog
from app.settings import LoggingFormat

ASCTIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}"


@pytest.fixture(autouse=True)
def info_enabled():
    logger = logging.getLogger(LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


def answer(log: ReviewLog, uid: str, **fields: object) -> None:
    values = {"webhook": "/validate-migrationpolicy", "operation": "CREATE",
              "namespace": "", "name": "db-policy", "allowed": True, "policy": None,
              "causes": None, "duration_ms": 0.0125, **fields}
    log.answered(uid, *values.values())


def test_nothing_is_written_until_the_batch_is_flushed():
    stream = io.StringIO()
    log = ReviewLog(LoggingFormat.TEXT, stream)
    answer(log, "u-1")
    assert stream.getvalue() == ""
    log.flush()
    [line] = stream.getvalue().splitlines()
    assert re.fullmatch(
        ASCTIME + r" INFO app\.review: answered uid=u-1 webhook=/validate-migrationpolicy "
        r'operation=CREATE namespace="" name=db-policy allowed=true duration_ms=0\.013', line)


def test_a_full_batch_is_written_at_once_in_order():
    stream = io.StringIO()
    log = ReviewLog(LoggingFormat.TEXT, stream)
    for number in range(FLUSH_LINES - 1):
        answer(log, f"u-{number}")
    assert stream.getvalue() == ""
    answer(log, "last", allowed=False, causes=2, policy="gold policy")
    lines = stream.getvalue().splitlines()
    assert len(lines) == FLUSH_LINES
    assert [re.search(r"uid=(\S+)", line)[1] for line in lines] == [
        *(f"u-{number}" for number in range(FLUSH_LINES - 1)), "last"]
    assert 'allowed=false policy="gold policy" causes=2 ' in lines[-1]


def test_json_lines_carry_every_field():
    stream = io.StringIO()
    log = ReviewLog(LoggingFormat.JSON, stream)
    answer(log, 'x"\n', namespace="hpc", policy="p", causes=1, allowed=False)
    log.flush()
    [entry] = map(json.loads, stream.getvalue().splitlines())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00", entry.pop("ts"))
    assert entry == {"level": "info", "logger": LOGGER, "msg": "answered", "uid": 'x"\n',
                     "webhook": "/validate-migrationpolicy", "operation": "CREATE",
                     "namespace": "hpc", "name": "db-policy", "allowed": False,
                     "policy": "p", "causes": 1, "duration_ms": 0.013}


def test_nothing_is_kept_when_info_is_off():
    logging.getLogger(LOGGER).setLevel(logging.WARNING)
    stream = io.StringIO()
    log = ReviewLog(LoggingFormat.TEXT, stream)
    answer(log, "u-1")
    log.flush()
    assert stream.getvalue() == ""


@given(st.text())
def test_a_value_is_written_as_it_is_only_when_it_needs_neither_escape_nor_quotes(text: str):
    """text_value's quick test for the common case agrees with the full token grammar."""
    plain = re.fullmatch(r'[^\\\x00-\x1f\x7f-\x9f\u2028\u2029 "=]+', text) is not None
    assert (text_value(text) == text) is plain
    assert not any(char in text_value(text) for char in "\n\r\u2028\u2029")
