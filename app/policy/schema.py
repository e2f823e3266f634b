"""Field checkers: the building blocks the MigrationPolicy schema is written with.

Each checker validates one JSON value at one field path and records what is wrong in
`Findings`, with a message that quotes the value and says what is accepted. Feature-gated
fields compare the new value with the old object's, as KubeVirt does: a gated field may be
kept as it is while its gate is off, but not set or changed.

Checkers are built once, at import: whatever can be worked out ahead (sorted field names,
their list for messages) is, and each check first tries the cheap test that a well-formed
value passes, so that a valid policy costs a few microseconds. Work stays bounded on
hostile input: once `Findings` is full, problems are only counted; comparisons of old and
new values are iterative, safe at any depth.
"""

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from types import MappingProxyType
from typing import Any, Protocol

from app.k8s.json_values import OutOfRangeNumber
from app.k8s.labels import (
    LABEL_VALUE_MAX_LENGTH,
    label_value_problems,
    match_label_value,
    match_plain_label_key,
    qualified_name_problem_count,
    qualified_name_problems,
)
from app.k8s.quantity import (
    QuantityError,
    decimal_places,
    is_quantity,
    parse_quantity,
    whole_quantity,
)
from app.policy.findings import CauseType, Findings, describe, field_name, quote, shorten

INT64_MAX = 2**63 - 1
TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
"""The fields of an object with a spec and a status."""
_BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_SPACE = re.compile(r"\s")
MAX_SUGGESTED_NAME = 64
"""Unknown names longer than this get no did-you-mean: none could be close to a known
field (difflib's ratio needs a length within 5/3 of the 31 characters of the longest)."""


class Context:
    """What a check may need besides the value: the enabled feature gates, the findings."""

    __slots__ = ("feature_gates", "findings")

    def __init__(self, feature_gates: frozenset[str], findings: Findings) -> None:
        self.feature_gates = feature_gates
        self.findings = findings


class Checker(Protocol):
    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None: ...


def json_equal(first: Any, second: Any) -> bool:
    """`first == second` for JSON values, without recursion: safe at any depth."""
    pairs = [(first, second)]
    while pairs:
        a, b = pairs.pop()
        if a is b:
            continue
        if isinstance(a, dict):
            if not isinstance(b, dict) or len(a) != len(b):
                return False
            for key, item in a.items():
                if key not in b:
                    return False
                pairs.append((item, b[key]))
        elif isinstance(a, list):
            if not isinstance(b, list) or len(a) != len(b):
                return False
            pairs.extend(zip(a, b, strict=True))
        elif isinstance(b, dict | list) or a != b:
            return False
    return True


def gated_change_refused(
    gates: tuple[str, ...], value: Any, old: Any, path: str, ctx: Context
) -> bool:
    """Record a problem if a field behind `gates` is set or changed while all are off."""
    if not gates or any(gate in ctx.feature_gates for gate in gates) or json_equal(value, old):
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


def _too_large(value: Any) -> bool:
    """A JSON number beyond int64 as the parser gives it: a float that is whole, or
    `OutOfRangeNumber` for one that even a double cannot hold (`1e400`)."""
    return isinstance(value, float) and (
        isinstance(value, OutOfRangeNumber) or (value.is_integer() and abs(value) > INT64_MAX)
    )


@dataclass(frozen=True)
class Boolean:
    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if value is True or value is False:
            return
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
        if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
            self._not_an_integer(value, path, ctx)
            return
        if value < self.minimum or value > self.maximum:
            problem = "is negative" if value < 0 <= self.minimum else "is out of range"
            ctx.findings.add(CauseType.INVALID, path,
                             f"{quote(value)} {problem}: use {self.accepted()}")
            return
        if self.gates:
            gated_change_refused(self.gates, value, old, path, ctx)

    def _not_an_integer(self, value: Any, path: str, ctx: Context) -> None:
        if _too_large(value):
            problem = "is negative" if value < 0 <= self.minimum else "is out of range"
            ctx.findings.add(CauseType.INVALID, path,
                             f"{quote(value)} {problem}: use {self.accepted()}")
            return
        hint = ""
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            hint = " (write the number without quotes)"
        ctx.findings.add(
            CauseType.TYPE_INVALID, path,
            f"must be {self.accepted()}, got {describe(value)}{hint}",
        )


@dataclass(frozen=True)
class Quantity:
    """A Kubernetes quantity: a string by the quantity grammar, or a JSON integer."""

    minimum: Decimal
    example: str
    maximum: Decimal | None = None
    exclusive_minimum: bool = False
    max_decimal_places: int | None = None
    zero_means: str = ""
    _lowest: int = field(init=False, repr=False)
    _highest: int | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The range as whole numbers, for the common case: a whole amount.
        lowest = int(self.minimum.to_integral_value(ROUND_FLOOR if self.exclusive_minimum
                                                    else ROUND_CEILING))
        object.__setattr__(self, "_lowest", lowest + 1 if self.exclusive_minimum else lowest)
        highest = self.maximum
        object.__setattr__(self, "_highest", None if highest is None
                           else int(highest.to_integral_value(ROUND_FLOOR)))

    def accepted(self) -> str:
        if self.zero_means:
            return f"0 ({self.zero_means}) or a larger quantity, such as {self.example}"
        low = f"above {self.minimum}" if self.exclusive_minimum else f"{self.minimum} or more"
        high = f" and at most {self.maximum}" if self.maximum is not None else ""
        return f"a quantity {low}{high}, such as {self.example}"

    def _in_range(self, amount: int | Decimal) -> bool:
        below = amount <= self.minimum if self.exclusive_minimum else amount < self.minimum
        return not below and (self.maximum is None or amount <= self.maximum)

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        # The common case first: a whole number, written as digits and a suffix, in range.
        whole = whole_quantity(value)
        if whole is not None and whole >= self._lowest and (
            self._highest is None or whole <= self._highest
        ):
            return
        if isinstance(value, bool) or not isinstance(value, int | str):
            self._not_a_quantity(value, path, ctx)
            return
        text = str(value)
        try:
            quantity = parse_quantity(text)
        except QuantityError:
            ctx.findings.add(CauseType.INVALID, path,
                             f"{quote(value)} is not a Kubernetes quantity: {quantity_hint(text)}")
            return
        amount = quantity.value
        if quantity.negative or not self._in_range(amount):
            problem = "is negative" if quantity.negative else "is out of range"
            ctx.findings.add(CauseType.INVALID, path,
                             f"{quote(value)} {problem}: use {self.accepted()}")
        elif self.max_decimal_places is not None and (
            decimal_places(amount) > self.max_decimal_places
        ):
            rounded = shorten(f"{amount:.{self.max_decimal_places}f}")
            ctx.findings.add(
                CauseType.INVALID, path,
                f"{quote(value)} has more than {self.max_decimal_places} decimal places: "
                f"round it, e.g. {rounded}",
            )

    def _not_a_quantity(self, value: Any, path: str, ctx: Context) -> None:
        if _too_large(value):
            written = (f'("{shorten(value.text)}")' if isinstance(value, OutOfRangeNumber)
                       else "(in quotes), as you wrote it")
            ctx.findings.add(
                CauseType.INVALID, path,
                f"{quote(value)} is too large for a number here (at most "
                f"{INT64_MAX}): write it as a string {written}",
            )
            return
        hint = ""
        if isinstance(value, float) and math.isfinite(value):
            hint = f" (write it as a string: \"{value}\")"
        example = self.example if self.example.startswith('"') else f'"{self.example}"'
        ctx.findings.add(
            CauseType.TYPE_INVALID, path,
            f"must be a quantity string such as {example} or a whole number, "
            f"got {describe(value)}{hint}",
        )


def quantity_hint(text: str) -> str:
    """What to write instead of `text`, which is not a quantity."""
    if _SPACE.search(text):
        compact = "".join(text.split())
        rest = "" if is_quantity(compact) else f", and {quantity_hint(compact)}"
        return f"remove the spaces{rest}"
    for suffix in (*_BINARY_SUFFIXES, "K"):
        lower = suffix.lower()
        if text.endswith((lower, suffix.upper())) and text[: -len(suffix)].replace(".", "", 1):
            if suffix == "K":
                return "write k (1000) or Ki (1024); suffixes are case-sensitive"
            return f"suffixes are case-sensitive: write {suffix}, e.g. {quote(text[:-2] + suffix)}"
    if text.upper().endswith("B"):
        return "quantities have no B: write Ki, Mi or Gi (bytes are implied), e.g. \"64Mi\""
    return ("write a number with an optional suffix (Ki Mi Gi Ti Pi Ei, n u m k M G T P E) "
            "or exponent (e3), e.g. \"64Mi\"")


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if type(value) is str and value in self.values:
            return
        if value not in self.values or not isinstance(value, str):
            choices = " or ".join(f'"{choice}"' for choice in self.values)
            ctx.findings.add(CauseType.NOT_SUPPORTED, path,
                             f"{quote(value)} is not supported: use {choices}")


def _not_a_string(what: str, key: str, value: Any) -> str:
    if isinstance(value, dict | list):  # nothing to quote: one string belongs there
        return f"{what} values must be strings, got {describe(value)}: give one string"
    shown = quote(value)
    quoted = shown if shown.startswith('"') else f'"{shown}"'  # a YAML date is quoted already
    return (f"{what} values must be strings, got {describe(value)}: "
            f"quote it in YAML ({field_name(key)}: {quoted})")


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
        findings = ctx.findings
        entries = iter(value.items())
        for key, label in entries:
            # well-formed: a key without a prefix, a value that is empty or letters and
            # digits (str methods, cheaper than a match), or else one that matches
            if type(key) is str and type(label) is str and match_plain_label_key(key) and (
                not label or (label.isalnum() and label.isascii()
                              and len(label) <= LABEL_VALUE_MAX_LENGTH)
                or match_label_value(label)
            ):
                continue
            if findings.full:  # only count the rest, in one tight loop
                findings.omit(path, _label_problem_count([(key, label)]) +
                              _label_problem_count(entries))
                return
            _label_problems(key, label, path, findings)


def _label_problems(key: Any, label: Any, path: str, findings: Findings) -> None:
    """Record what is wrong with one selector entry."""
    if not isinstance(key, str):
        findings.add(CauseType.TYPE_INVALID, path,
                     f"label keys must be strings, got {describe(key)}: quote it in YAML")
        key = str(key)
    else:
        for problem in qualified_name_problems(key):
            findings.add(CauseType.INVALID, path, f"label key {quote(key)}: {problem}")
    entry = f"{path}[{field_name(key)}]"
    if not isinstance(label, str):
        findings.add(CauseType.TYPE_INVALID, entry, _not_a_string("label", key, label))
        return
    for problem in label_value_problems(label):
        findings.add(CauseType.INVALID, entry, f"label value {quote(label)} {problem}")


def _label_problem_count(entries: Iterable[tuple[Any, Any]]) -> int:
    """How many causes `_label_problems` would record for these entries, none written."""
    count = 0
    for key, label in entries:
        if type(key) is not str:
            count += 1
        elif match_plain_label_key(key) is None:
            count += qualified_name_problem_count(key) if "/" in key else 1
        if type(label) is not str or match_label_value(label) is None:
            count += 1
    return count


@dataclass(frozen=True)
class StringMap:
    """A map of strings to strings, such as metadata.annotations; only types are checked."""

    what: str
    """What its entries are, for messages: "label", "annotation"."""

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if not isinstance(value, dict):
            ctx.findings.add(
                CauseType.TYPE_INVALID, path,
                f"must be a map of {self.what} keys to string values, got {describe(value)}",
            )
            return
        findings = ctx.findings
        for key, item in value.items():
            if type(item) is str:
                continue
            if findings.full:
                findings.omit(path)
            else:
                findings.add(CauseType.TYPE_INVALID, f"{path}[{field_name(str(key))}]",
                             _not_a_string(self.what, str(key), item))


@dataclass(frozen=True)
class Object:
    """A JSON object with known fields; others are reported, with a suggestion."""

    fields: Mapping[str, Checker]
    required: frozenset[str] = field(default_factory=frozenset)
    gates: tuple[str, ...] = ()
    _required: tuple[str, ...] = field(init=False, repr=False)
    _known: tuple[str, ...] = field(init=False, repr=False)
    _by_lowercase: Mapping[str, str] = field(init=False, repr=False)
    _checks: Mapping[str, Callable[[Any, Any, str, Context], None]] = field(
        init=False, repr=False)

    def __post_init__(self) -> None:
        known = tuple(sorted(self.fields))
        by_lowercase: dict[str, str] = {}
        for name in known:
            by_lowercase.setdefault(name.lower(), name)
        # a plain dict of bound methods: the lookup the loop below makes for every field
        checks = {name: checker.check for name, checker in self.fields.items()}
        object.__setattr__(self, "_checks", checks)
        object.__setattr__(self, "_required", tuple(sorted(self.required)))
        object.__setattr__(self, "_known", known)
        object.__setattr__(self, "_by_lowercase", MappingProxyType(by_lowercase))

    def check(self, value: Any, old: Any, path: str, ctx: Context) -> None:
        if not isinstance(value, dict):
            ctx.findings.add(CauseType.TYPE_INVALID, path,
                             f"must be an object of fields, got {describe(value)}")
            return
        if self.gates:
            gated_change_refused(self.gates, value, old, path, ctx)
        for name in self._required:
            if value.get(name) is None:
                ctx.findings.add(CauseType.REQUIRED, f"{path}.{name}",
                                 f"required field is missing: {required_hint(name)}")
        checks = self._checks
        old_fields = old if isinstance(old, dict) else None
        for name, child in value.items():
            check = checks.get(name)
            if check is None:
                self._unknown_field(name, path, ctx.findings)
            elif child is not None:
                check(child, None if old_fields is None else old_fields.get(name),
                      f"{path}.{name}", ctx)

    def _unknown_field(self, name: str, path: str, findings: Findings) -> None:
        if findings.full:
            findings.omit(path)
        else:
            findings.add(CauseType.NOT_SUPPORTED, f"{path}.{field_name(name)}",
                         self.unknown_field_message(name, path))

    def unknown_field_message(self, name: str, path: str) -> str:
        close = None
        if len(name) <= MAX_SUGGESTED_NAME:
            close = self._by_lowercase.get(name.lower()) or next(
                iter(difflib.get_close_matches(name, self._known, n=1, cutoff=0.75)), None
            )
        if close:
            return f"unknown field {quote(name)}: did you mean \"{close}\"?"
        return f"unknown field {quote(name)}: the fields of {path} are {', '.join(self._known)}"


def required_hint(name: str) -> str:
    if name == "selectors":
        return ("add selectors with namespaceSelector and/or virtualMachineInstanceSelector "
                "({} matches every VMI)")
    return f"add {name}"
