"""What validation finds: causes that deny, warnings that do not."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

_MAX_QUOTED = 80
MAX_WARNING_LENGTH = 119
"""The API server truncates longer warnings; ours stay below."""


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
        return f"{self.field}: {self.message}"


@dataclass(slots=True)
class Findings:
    """Every problem and warning found in one object, in the order found."""

    causes: list[Cause] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, kind: CauseType, path: str, message: str) -> None:
        self.causes.append(Cause(kind, path, message))

    def warn(self, message: str) -> None:
        if len(message) > MAX_WARNING_LENGTH:
            message = message[: MAX_WARNING_LENGTH - 3] + "..."
        self.warnings.append(message)

    @property
    def valid(self) -> bool:
        return not self.causes

    def summary(self) -> str:
        """All problems in one line: what curl users and older kubectl show."""
        return "; ".join(cause.line() for cause in self.causes)


def quote(value: Any) -> str:
    """A value as the user wrote it in JSON, shortened if long: `"-1Gi"`, `true`, `5`."""
    if isinstance(value, dict):
        text = "an object {...}"
    elif isinstance(value, list):
        text = "a list [...]"
    else:
        text = orjson.dumps(value).decode()
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 4] + '..."'


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
