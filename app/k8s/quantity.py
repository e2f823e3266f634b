"""Kubernetes resource quantities, parsed by the grammar of `resource.Quantity`.

The grammar is the one documented in k8s.io/apimachinery/pkg/api/resource/quantity.go and
enforced in a cluster by the `pattern` that CRD schemas carry for int-or-string quantities::

    <quantity>        ::= <signedNumber><suffix>
    <signedNumber>    ::= <number> | <sign><number>
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>

Go's scanner is looser than this in places (it takes "-" alone as zero); the grammar wins.
Values are exact (`decimal.Decimal`), never floats.
"""

import re
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import Any

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
QUANTITY_PATTERN = (
    rf"^[+-]?{_NUMBER}(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?{_NUMBER})?$"
)
"""The pattern, as a CRD schema writes it (usable in an OpenAPI `pattern`)."""

# The same grammar with possessive digit runs: no suffix starts with a digit, so giving
# digits back never helps a match, and a long text that does not match fails in linear time.
_DIGITS_NUMBER = r"(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)"
_QUANTITY = re.compile(
    rf"(?P<number>[+-]?{_DIGITS_NUMBER})"
    rf"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE](?P<exponent>[+-]?{_DIGITS_NUMBER}))?"
)

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# The common case, digits and a suffix that keeps them whole ("217Ki", "64Mi", "1000"):
# exact in plain integers, no Decimal needed.
_MAX_INTEGER_DIGITS = 30
_BINARY_SCALE = {suffix: 1 << shift for suffix, shift in _BINARY.items()}
_DECIMAL_SCALE = {suffix: 10**shift for suffix, shift in _DECIMAL.items() if shift > 0}
# Wide enough for any exponent a person writes; decimal signals nothing it can represent.
_EXACT = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])
_MAX_SHIFT = Decimal(2 * MAX_EMAX)

MEBI = 1 << 20


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed quantity: the text as written and its exact value."""

    text: str
    value: Decimal
    fractional_exponent: bool = False

    @property
    def negative(self) -> bool:
        return self.value < 0


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


def parse_quantity(text: str) -> Quantity:
    """Parse `text` by the quantity grammar; raise QuantityError if it does not match."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise QuantityError(text)
    exact = _exact_for(text)
    number = exact.create_decimal(match["number"])
    suffix = match["suffix"] or ""
    exponent_text = match["exponent"]
    if exponent_text is not None:
        # Go's parser takes only a whole exponent: "1e3", never "1e1.5" nor "1e3.".
        fractional = "." in exponent_text
        exponent = _EXACT.create_decimal(exponent_text)
        if not number:
            return Quantity(text, number, fractional_exponent=fractional)
        if exponent != exponent.to_integral_value():
            value = _EXACT.multiply(number, _EXACT.power(Decimal(10), exponent))
        else:
            # Past the context's limits the value overflows to infinity or underflows to 0.
            shift = int(max(-_MAX_SHIFT, min(_MAX_SHIFT, exponent)))
            value = exact.scaleb(number, Decimal(shift))
        return Quantity(text, value, fractional_exponent=fractional)
    if suffix in _BINARY:
        return Quantity(text, exact.multiply(number, Decimal(1 << _BINARY[suffix])))
    return Quantity(text, exact.scaleb(number, Decimal(_DECIMAL.get(suffix, 0))))


def _exact_for(text: str) -> Context:
    """A context with digits enough for `text`'s number, times 2**60, to stay exact."""
    if len(text) <= _EXACT.prec - 20:
        return _EXACT
    wide = _EXACT.copy()
    wide.prec = len(text) + 20
    return wide


def integer_quantity(text: str) -> int | None:
    """The value of `text` when it is digits with an optional suffix that keeps it whole
    (the common case, and exactly `parse_quantity(text).value`); None for anything else."""
    scale = _BINARY_SCALE.get(text[-2:])
    if scale is not None:
        digits = text[:-2]
    else:
        scale = _DECIMAL_SCALE.get(text[-1:])
        digits = text if scale is None else text[:-1]
    if not (digits.isdigit() and digits.isascii() and len(digits) <= _MAX_INTEGER_DIGITS):
        return None
    return int(digits) * (scale or 1)


def whole_quantity(value: Any) -> int | None:
    """A JSON value's amount when it is an integer, or a string that `integer_quantity`
    reads; None for anything else (a boolean, a float, a fraction, a malformed string)."""
    kind = type(value)
    return value if kind is int else integer_quantity(value) if kind is str else None


def is_quantity(text: str) -> bool:
    """Whether `text` matches the quantity grammar exactly."""
    return _QUANTITY.fullmatch(text) is not None


def decimal_places(value: Decimal) -> int:
    """How many digits `value` has after the decimal point, trailing zeros ignored."""
    if not value or not value.is_finite():
        return 0
    _, digits, exponent = value.as_tuple()
    trailing_zeros = len(digits) - len(bytes(digits).rstrip(b"\0"))
    return max(0, -(int(exponent) + trailing_zeros))
