"""Log lines, as text or JSON (`--logging-format`), where no client input starts a new line.

Callers pass structured fields with `extra=fields(...)` (`log.info("answered",
extra=fields(uid=uid, name=name))`; plain `extra={...}` works too, but logging refuses keys
that a LogRecord has, such as `name`): the text format appends them as `key=value`, escaped;
the JSON format makes them fields of the line's object, beside `ts`, `level`, `logger` and
`msg`.
"""

import logging
import re
import sys
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from app.settings import LoggingFormat, LogLevel

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ESCAPES = {ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
_ESCAPES.update({
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
    if code not in _ESCAPES
})
_TRANSLATION = str.maketrans(_ESCAPES)
_PLAIN_TOKEN = re.compile(
    "[^" + "".join(f"\\u{code:04x}" for code in (*_ESCAPES, ord(" "), ord('"'), ord("=")))
    + "]+"
).fullmatch
"""Whether a string needs neither escapes nor quotes as a `key=value` token."""

_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime", "taskName"}
"""What every LogRecord has; anything else on a record came from `extra=`."""


FIELDS = "fields"
"""The `extra=` key under which `fields()` puts its values."""


def fields(**values: object) -> dict[str, dict[str, object]]:
    """`extra=` for a log call: any field names, `name` included."""
    return {FIELDS: values}


def escape(text: str) -> str:
    """`text` on one line: backslash, control characters and line separators as escapes."""
    return text.translate(_TRANSLATION)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with `extra=` (or `fields()`), in the order given."""
    found: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key == FIELDS and isinstance(value, dict):
            found.update(value)
        elif key not in _RECORD_ATTRIBUTES:
            found[key] = value
    return found


def field_value(value: object) -> str:
    """A field's value as one `key=value` token: escaped, quoted when needed."""
    if type(value) is str:
        return text_value(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float):
        return str(value)
    return text_value(str(value))


def text_value(text: str) -> str:
    """A string field's value as one `key=value` token (`field_value` of a str)."""
    if text.isprintable() and not (" " in text or '"' in text or "=" in text
                                   or "\\" in text):
        return text or '""'  # the common case, a name or a uid (every escaped character
        # but the backslash is unprintable): a few scans in C, no copy
    if _PLAIN_TOKEN(text):
        return text
    text = escape(text)
    if any(char in text for char in ' "='):
        return '"' + text.replace('"', '\\"') + '"'
    return text


class TextFormatter(logging.Formatter):
    """One line a record: the message and `key=value` fields escaped; a traceback's lines
    indented, so that none of them reads as a record of its own."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        line = super().formatMessage(record)
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{escape(key)}={field_value(value)}"
                                   for key, value in fields.items())
        return line

    def formatException(self, ei: Any) -> str:
        return "\n".join("    " + line for line in super().formatException(ei).splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    " + line for line in stack_info.splitlines())


class JsonLineFormatter(JsonFormatter):
    """One JSON object a line: `ts` (ISO 8601, UTC), `level`, `logger`, `msg`, the extras."""

    def __init__(self) -> None:
        super().__init__("{levelname}{name}{message}", style="{", timestamp="ts",
                         rename_fields={"levelname": "level", "name": "logger",
                                        "message": "msg"})

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()
        given = log_data.pop(FIELDS, None)
        if isinstance(given, dict):
            for key, value in given.items():
                log_data.setdefault(key, value)  # ts, level, logger and msg stay what they are


def configure_logging(format: LoggingFormat, level: LogLevel,
                      stream: TextIO | None = None) -> None:
    """Send every logger's records to `stream` (stderr) in `format`, from `level` up."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter() if format is LoggingFormat.JSON
                         else TextFormatter())
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)
