"""Field checkers: the building blocks the MigrationPolicy schema is written with.

Each checker validates one JSON value at one field path and records what is wrong in
`Findings`, with a message that quotes the value and says what is accepted. Feature-gated
fields compare the new value with the old object's, as KubeVirt does: a gated field may be
kept as it is while its gate is off, but not set or changed.
"""

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from app.findings import CauseType, Findings, describe, quote
from app.labels import label_value_problems, qualified_name_problems
from app.quantity import QuantityError, decimal_places, is_quantity, parse_quantity

INT64_MAX = 2**63 - 1
_BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


@dataclass(frozen=True, slots=True)
class Context:
    """What a check may need besides the value: the enabled feature gates."""

    feature_gates: frozenset[str]
    findings: Findings


class Checker(Protocol):
    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None: ...


def gated_change_refused(
    gates: tuple[str, ...], value: Any, old: Any, path: str, ctx: Context
) -> bool:
    """Record a problem if a field behind `gates` is set or changed while all are off."""
    if not gates or value == old or any(gate in ctx.feature_gates for gate in gates):
        return False
    names = " or ".join(gates)
    change = f"setting it to {quote(value)}"
    if isinstance(value, dict):
        change = "setting or changing it"
    ctx.findings.add(
        CauseType.FORBIDDEN,
        path,
        f"{change} needs the {names} feature gate: "
        f"enable it (--feature-gates {','.join(gates)}) or remove the field",
    )
    return True


@dataclass(frozen=True)
class Boolean:
    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if not isinstance(value, bool):
            hint = " (without quotes)" if isinstance(value, str) else ""
            ctx.findings.add(
                CauseType.TYPE_INVALID, path,
                f"must be true or false{hint}, got {describe(value)}",
            )


@dataclass(frozen=True)
class Integer:
    minimum: int
    maximum: int
    unit: str
    example: int
    gates: tuple[str, ...] = ()

    def accepted(self) -> str:
        if self.maximum >= INT64_MAX:
            return f"a whole number of {self.unit}, {self.minimum} or more, such as {self.example}"
        return (f"a whole number of {self.unit} from {self.minimum} to {self.maximum}, "
                f"such as {self.example}")

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = ""
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                hint = " (write the number without quotes)"
            ctx.findings.add(
                CauseType.TYPE_INVALID, path,
                f"must be {self.accepted()}, got {describe(value)}{hint}",
            )
            return
        if value < self.minimum or value > self.maximum:
            problem = "is negative" if value < 0 <= self.minimum else "is out of range"
            ctx.findings.add(CauseType.INVALID, path,
                             f"{value} {problem}: use {self.accepted()}")
            return
        gated_change_refused(self.gates, value, old, path, ctx)


@dataclass(frozen=True)
class Quantity:
    """A Kubernetes quantity: a string by the quantity grammar, or a JSON integer."""

    minimum: Decimal
    example: str
    maximum: Decimal | None = None
    exclusive_minimum: bool = False
    max_decimal_places: int | None = None
    zero_means: str = ""

    def accepted(self) -> str:
        if self.zero_means:
            return f"0 ({self.zero_means}) or a larger quantity, such as {self.example}"
        low = f"above {self.minimum}" if self.exclusive_minimum else f"{self.minimum} or more"
        high = f" and at most {self.maximum}" if self.maximum is not None else ""
        return f"a quantity {low}{high}, such as {self.example}"

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if isinstance(value, bool) or not isinstance(value, int | str):
            hint = f" (write it as a string: \"{value}\")" if isinstance(value, float) else ""
            example = self.example if self.example.startswith('"') else f'"{self.example}"'
            ctx.findings.add(
                CauseType.TYPE_INVALID, path,
                f"must be a quantity string such as {example} or a whole number, "
                f"got {describe(value)}{hint}",
            )
            return
        text = str(value)
        try:
            quantity = parse_quantity(text)
        except QuantityError:
            ctx.findings.add(CauseType.INVALID, path,
                             f"{quote(value)} is not a Kubernetes quantity: {quantity_hint(text)}")
            return
        amount = quantity.value
        below = amount <= self.minimum if self.exclusive_minimum else amount < self.minimum
        if quantity.negative or below or (self.maximum is not None and amount > self.maximum):
            problem = "is negative" if quantity.negative else "is out of range"
            ctx.findings.add(CauseType.INVALID, path,
                             f"{quote(value)} {problem}: use {self.accepted()}")
        elif self.max_decimal_places is not None and (
            decimal_places(amount) > self.max_decimal_places
        ):
            ctx.findings.add(
                CauseType.INVALID, path,
                f"{quote(value)} has more than {self.max_decimal_places} decimal places: "
                f"round it, e.g. {amount:.{self.max_decimal_places}f}",
            )


def quantity_hint(text: str) -> str:
    """What to write instead of `text`, which is not a quantity."""
    if any(char.isspace() for char in text):
        compact = "".join(text.split())
        rest = "" if is_quantity(compact) else f", and {quantity_hint(compact)}"
        return f"remove the spaces{rest}"
    for suffix in (*_BINARY_SUFFIXES, "K"):
        lower = suffix.lower()
        if text.endswith((lower, suffix.upper())) and text[: -len(suffix)].replace(".", "", 1):
            if suffix == "K":
                return "write k (1000) or Ki (1024); suffixes are case-sensitive"
            return f"suffixes are case-sensitive: write {suffix}, e.g. \"{text[:-2]}{suffix}\""
    if text.upper().endswith("B"):
        return "quantities have no B: write Ki, Mi or Gi (bytes are implied), e.g. \"64Mi\""
    return ("write a number with an optional suffix (Ki Mi Gi Ti Pi Ei, n u m k M G T P E) "
            "or exponent (e3), e.g. \"64Mi\"")


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if value not in self.values or not isinstance(value, str):
            choices = " or ".join(f'"{choice}"' for choice in self.values)
            ctx.findings.add(CauseType.NOT_SUPPORTED, path,
                             f"{quote(value)} is not supported: use {choices}")


@dataclass(frozen=True)
class LabelMap:
    """A selector: label key to label value, both strings."""

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if not isinstance(value, dict):
            ctx.findings.add(
                CauseType.TYPE_INVALID, path,
                f"must be a map of label keys to string values, got {describe(value)}",
            )
            return
        for key, label in value.items():
            for problem in qualified_name_problems(key):
                ctx.findings.add(CauseType.INVALID, path, f"label key {quote(key)}: {problem}")
            entry = f"{path}[{key}]"
            if not isinstance(label, str):
                shown = quote(label)
                ctx.findings.add(
                    CauseType.TYPE_INVALID, entry,
                    f"label values must be strings, got {describe(label)}: "
                    f"quote it in YAML ({key}: \"{shown}\")",
                )
                continue
            for problem in label_value_problems(label):
                ctx.findings.add(CauseType.INVALID, entry, f"label value {quote(label)} {problem}")


@dataclass(frozen=True)
class Object:
    """A JSON object with known fields; others are reported, with a suggestion."""

    fields: Mapping[str, Checker]
    required: frozenset[str] = field(default_factory=frozenset)
    gates: tuple[str, ...] = ()

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if not isinstance(value, dict):
            ctx.findings.add(CauseType.TYPE_INVALID, path,
                             f"must be an object of fields, got {describe(value)}")
            return
        old_fields = old if isinstance(old, dict) else {}
        gated_change_refused(self.gates, value, old, path, ctx)
        for name in sorted(self.required):
            if value.get(name) is None:
                ctx.findings.add(CauseType.REQUIRED, f"{path}.{name}",
                                 f"required field is missing: {required_hint(name)}")
        for name, child in value.items():
            checker = self.fields.get(name)
            if checker is None:
                ctx.findings.add(CauseType.NOT_SUPPORTED, f"{path}.{name}",
                                 self.unknown_field_message(name, path))
            elif child is not None:
                checker.check(child, old_fields.get(name), f"{path}.{name}", ctx)

    def unknown_field_message(self, name: str, path: str) -> str:
        known = sorted(self.fields)
        close = [k for k in known if k.lower() == name.lower()] or difflib.get_close_matches(
            name, known, n=1, cutoff=0.75
        )
        if close:
            return f"unknown field {quote(name)}: did you mean \"{close[0]}\"?"
        return f"unknown field {quote(name)}: the fields of {path} are {', '.join(known)}"


def required_hint(name: str) -> str:
    if name == "selectors":
        return ("add selectors with namespaceSelector and/or virtualMachineInstanceSelector "
                "({} matches every VMI)")
    return f"add {name}"
