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

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
QUANTITY_PATTERN = (
    rf"^[+-]?{_NUMBER}(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?{_NUMBER})?$"
)
"""The pattern, as a CRD schema writes it (usable in an OpenAPI `pattern`)."""

_QUANTITY = re.compile(
    rf"(?P<number>[+-]?{_NUMBER})"
    rf"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE](?P<exponent>[+-]?{_NUMBER}))?"
)

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# Wide enough for any exponent a person writes; decimal signals nothing it can represent.
_EXACT = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])

MEBI = Decimal(1 << 20)


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
    number = _EXACT.create_decimal(match["number"])
    suffix = match["suffix"] or ""
    exponent_text = match["exponent"]
    if exponent_text is not None and number:
        exponent = _EXACT.create_decimal(exponent_text)
        value = _EXACT.multiply(number, _EXACT.power(Decimal(10), exponent))
        return Quantity(text, value, fractional_exponent=exponent != exponent.to_integral_value())
    if exponent_text is not None:
        return Quantity(text, number, fractional_exponent="." in exponent_text)
    if suffix in _BINARY:
        return Quantity(text, _EXACT.multiply(number, Decimal(1 << _BINARY[suffix])))
    return Quantity(text, _EXACT.scaleb(number, _DECIMAL.get(suffix, 0)))


def is_quantity(text: str) -> bool:
    """Whether `text` matches the quantity grammar exactly."""
    return _QUANTITY.fullmatch(text) is not None


def decimal_places(value: Decimal) -> int:
    """How many digits `value` has after the decimal point, trailing zeros ignored."""
    exponent = value.normalize(_EXACT).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0
