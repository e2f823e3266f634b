"""What validation finds: causes that deny, warnings that do not.

Bounded whatever comes in, so that an answer stays small (contract §1, at most 256 KiB):
at most `MAX_CAUSES` causes are listed, and their fields and messages together take at most
`CAUSES_BUDGET` bytes as JSON; whatever else is found is only counted, and one last cause
says how many more problems there are. `summary()` stops at `SUMMARY_BUDGET` bytes,
warnings at `MAX_WARNINGS`, and values from the input are quoted shortened (`quote`,
`field_name`). Counting what is not listed costs at most a regular-expression match per
item: linear in the input, which the body limit bounds, so the count is always exact.
"""

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from app.k8s.json_values import OutOfRangeNumber

MAX_CAUSES = 100
"""Causes listed; the one after them says how many more problems there are."""
CAUSES_BUDGET = 96 * 1024
"""Bytes that the listed causes' fields and messages may take, encoded as JSON."""
SUMMARY_BUDGET = 64 * 1024
"""Bytes that `summary()` may take, encoded as JSON."""
MAX_WARNINGS = 20
MAX_WARNING_LENGTH = 119
"""The API server truncates longer warnings; ours stay below."""

_MAX_QUOTED = 80
_MAX_NAME = 320
"""Longest input key kept whole in a field path: a label key may be 317 characters."""
_MAX_MESSAGE = 2000
"""A safety net: messages are short by construction."""


class CauseType(StrEnum):
    """The `metav1.CauseType` values this webhook reports."""

    INVALID = "FieldValueInvalid"
    REQUIRED = "FieldValueRequired"
    NOT_SUPPORTED = "FieldValueNotSupported"
    TYPE_INVALID = "FieldValueTypeInvalid"
    FORBIDDEN = "FieldValueForbidden"


@dataclass(frozen=True, slots=True)
class Cause:
    """One problem with one field, as a `metav1.StatusCause`."""

    type: CauseType
    field: str
    message: str

    def line(self) -> str:
        """`<field>: <message>`, the form kubectl prints and status.message lists."""
        return f"{self.field}: {self.message}" if self.field else self.message


class Findings:
    """Every problem and warning found in one object, in the order found, within bounds."""

    __slots__ = (
        "_causes",
        "_omitted",
        "_omitted_at",
        "_omitted_warnings",
        "_size",
        "_warnings",
    )

    def __init__(self) -> None:
        self._causes: list[Cause] = []
        self._warnings: list[str] = []
        self._size = 0
        self._omitted = 0
        self._omitted_at = ""
        self._omitted_warnings = 0

    def add(self, kind: CauseType, path: str, message: str) -> None:
        """Record a problem: listed while there is room, counted once there is not."""
        if self._omitted or len(self._causes) >= MAX_CAUSES:
            self.omit(path)
            return
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        path, message = _encodable(path), _encodable(message)
        size = len(orjson.dumps(path)) + len(orjson.dumps(message))
        if self._size + size > CAUSES_BUDGET:
            self.omit(path)
            return
        self._size += size
        self._causes.append(Cause(kind, path, message))

    @property
    def full(self) -> bool:
        """Whether further problems are only counted: checkers then skip their messages."""
        return bool(self._omitted) or len(self._causes) >= MAX_CAUSES

    def omit(self, path: str, count: int = 1) -> None:
        """Count `count` problems at or under `path` without listing them."""
        if count <= 0:
            return
        if not self._omitted:
            self._omitted_at = path
        elif not _is_within(path, self._omitted_at):
            self._omitted_at = _common_ancestor(path, self._omitted_at)
        self._omitted += count

    def warn(self, message: str) -> None:
        if len(message) > MAX_WARNING_LENGTH:
            message = message[: MAX_WARNING_LENGTH - 3] + "..."
        if len(self._warnings) < MAX_WARNINGS:
            self._warnings.append(_encodable(message))
        else:
            self._omitted_warnings += 1

    @property
    def causes(self) -> list[Cause]:
        """The listed causes, then, if problems were only counted, one that says how many."""
        if not self._omitted:
            return self._causes
        noun = "problem" if self._omitted == 1 else "problems"
        more = Cause(
            CauseType.INVALID, self._omitted_at,
            f"{self._omitted} more {noun} not listed (only the first {len(self._causes)} "
            "are): fix those, then apply again to see the rest",
        )
        return [*self._causes, more]

    @property
    def warnings(self) -> list[str]:
        if not self._omitted_warnings:
            return self._warnings
        return [*self._warnings, f"{self._omitted_warnings} more warnings not shown"]

    @property
    def valid(self) -> bool:
        return not self._causes and not self._omitted

    def summary(self) -> str:
        """All problems in one line: what curl users and older kubectl show."""
        causes = self.causes
        lines: list[str] = []
        size = 0
        for index, cause in enumerate(causes):
            line = cause.line()
            size += len(orjson.dumps(line))
            if size > SUMMARY_BUDGET - 100:
                rest = max(0, len(self._causes) - index) + self._omitted
                lines.append(f"and {rest} more problems")
                break
            lines.append(line)
        return "; ".join(lines)


def _encodable(text: str) -> str:
    """`text`, with what UTF-8 cannot encode (lone surrogates) escaped."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


def _is_within(path: str, ancestor: str) -> bool:
    return not ancestor or path == ancestor or (
        path.startswith(ancestor) and path[len(ancestor)] in ".["
    )


def _common_ancestor(first: str, second: str) -> str:
    """The longest field path that both paths are at or under ("" for the object)."""
    end = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        end += 1
    if not all(end == len(path) or path[end] in ".[" for path in (first, second)):
        end = max(first.rfind(".", 0, end), first.rfind("[", 0, end), 0)
    common = first[:end]
    bracket = common.rfind("[")
    if bracket > common.rfind("]"):  # cut inside a [key]: the path ends before it
        common = common[:bracket]
    return common


def quote(value: Any, limit: int = _MAX_QUOTED) -> str:
    """A value as the user wrote it in JSON, shortened if long: `"-1Gi"`, `true`, `5`.

    A value longer than `limit` is quoted by its first characters and its length,
    `"aaaa..." (4000000 characters)`; a number too large for a double by its text as
    written (`1e400`).
    """
    if isinstance(value, str):
        return _quote_string(value, limit)
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, OutOfRangeNumber):
        return shorten(_encodable(value.text), limit)
    if isinstance(value, int):
        return shorten(str(value), limit)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return orjson.dumps(value).decode()
    if isinstance(value, dict):
        return "an object {...}"
    if isinstance(value, list):
        return "a list [...]"
    try:  # values YAML makes and JSON has not: dates, times
        return shorten(orjson.dumps(value).decode(), limit)
    except TypeError:
        return _quote_string(str(value), limit)


def _quote_string(value: str, limit: int) -> str:
    head = value[:limit]
    try:
        text = orjson.dumps(head).decode()
    except TypeError:  # a lone surrogate: escape it
        text = orjson.dumps(_encodable(head)).decode()
    if len(value) <= limit and len(text) <= limit:
        return text
    return f'{text[: limit - 4]}..." ({len(value)} characters)'


def shorten(text: str, limit: int = _MAX_QUOTED) -> str:
    """`text` (a number, a name) as it goes into a message: its start and length if long."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 4]}... ({len(text)} characters)"


def field_name(name: str) -> str:
    """A key from the input as it goes into a field path: its start and length if long."""
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[: _MAX_QUOTED - 4]}... ({len(name)} characters)"


def describe(value: Any) -> str:
    """A value with its JSON type, for type errors: `the string "yes"`, `the number 1.5`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {quote(value)}"
    if isinstance(value, int | float):
        return f"the number {quote(value)}"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    return quote(value)
