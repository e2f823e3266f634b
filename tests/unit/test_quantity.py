"""Kubernetes quantities: the corners of the resource.Quantity grammar, and exact values."""

import re
from decimal import Decimal

import pytest
from kubernetes.utils import parse_quantity as kubernetes_client_parse_quantity

from app.k8s.quantity import (
    QUANTITY_PATTERN,
    QuantityError,
    decimal_places,
    integer_quantity,
    is_quantity,
    parse_quantity,
    whole_quantity,
)

# The pattern CRD schemas carry for int-or-string quantities, copied verbatim.
CRD_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

VALID = [
    # plain numbers, signs, fractions
    "0", "1", "+1", "-1", "-0", "+0", "007", "0.000", "1.", ".5", "1.5", "+.5", "-.5",
    "-1.", "123456789",
    # every binary suffix
    "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei", "1.5Gi", ".5Ki", "217Ki", "-1Gi", "1.Mi",
    # every decimal suffix
    "1n", "1u", "1m", "1k", "1M", "1G", "1T", "1P", "1E", "12.5m", "1.k", "-.5G",
    # exponents
    "1e3", "1E3", "1e+3", "1E+3", "1e-3", "1E-3", "1.5e3", ".5e1", "1e0", "1e-0", "1e03",
    "-1.5e-3", "0e0",
    # fractional exponents: the grammar (and the CRD pattern) accept them
    "1e1.5", "1e.5", "1e1.", "1e+.5", "2E-1.5", "0e1.5",
    # huge values
    "9223372036854775807", "9223372036854775808", "18446744073709551616", "1e400",
    "1e-400", "1" * 100, "9" * 1000 + "Ei", "1e999999999999999999", "1e" + "9" * 40,
]

INVALID = [
    # empty, blank, lone signs and points
    "", " ", ".", "+", "-", "+.", "-.", "+-1", "--1", "++1", "1..5", "1.5.", "..5",
    # separators
    "1,5", "1,000", "1_000", "1 000", "1'000",
    # whitespace around or inside
    " 1", "1 ", "1 Gi", "\n1", "1\n", "\t1", "1\t", "\r1", "\u00a01", "1Ki ", "1\u2009Ki",
    # unicode digits and lookalikes
    "\uff11", "\u0663", "\u0967", "\u00bd", "\u00b2", "\uff11Gi", "1\uff4b", "1\u00b5",
    "1\u03bc", "1\u212a",
    # wrong-case or unknown suffixes
    "1K", "1ki", "1KI", "1kI", "1mi", "1gi", "1ti", "1pi", "1ei", "1MI", "1GI", "1Ni",
    "1ni", "1ui", "1i", "1KiB", "1GB", "1Gb", "1b", "1B", "1g", "1t", "1p", "1x",
    # doubled or misplaced suffixes
    "1mm", "1kk", "1Kii", "1MiGi", "1Ki3", "1k3", "1e3k", "1e3Ki", "Gi1",
    # broken exponents
    "1e", "1E+", "1e-", "1e+", "1ee3", "1e3e3", "1e--3", "1e+-3", "1e1..", "1e3.5.",
    "1e.", "1e+.", ".e3", "e3", "E3",
    # a suffix without a number
    "Ki", "k", "m", "i", "-Ki", ".Ki", "1.e",
    # not numbers at all
    "NaN", "nan", "Inf", "+Inf", "-Inf", "inf", "Infinity", "0x10", "0X10", "0b1", "0o7",
    "1/2", "1%", "$1", "abc", "one", "1Gi,", "\x00", "1\x00", "true", "null",
]

TABLE = [(text, True) for text in VALID] + [(text, False) for text in INVALID]
TABLE_IDS = [repr(text)[:40] for text, _ in TABLE]


def test_the_table_is_large_and_has_no_duplicates():
    texts = [text for text, _ in TABLE]
    assert len(texts) >= 120
    assert len(set(texts)) == len(texts)


WHOLE = ["0", "1", "217Ki", "64Mi", "1Gi", "5Ei", "1k", "3E", "007", "9" * 30 + "Ei"]


@pytest.mark.parametrize("text", [text for text, _ in TABLE] + WHOLE + ["9" * 31],
                         ids=TABLE_IDS + WHOLE[:-1] + ["30-nines-Ei", "31-nines"])
def test_integer_quantity_is_the_exact_value_or_nothing(text):
    """The quick path validation tries first: digits and a suffix that keeps them whole."""
    value = integer_quantity(text)
    if value is not None:
        assert isinstance(value, int)
        assert parse_quantity(text).value == value
    if text in WHOLE:
        assert value is not None


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (23, 23), (-1, -1), ("64Mi", 64 << 20), ("1k", 1000), ("1.5Gi", None),
    ("-1Gi", None), ("1 GB", None), (True, None), (False, None), (1.0, None), (None, None),
    ({"Mi": 1}, None)])
def test_whole_quantity_reads_integers_and_whole_strings_only(value, expected):
    """A boolean is an int to Python, but not a quantity."""
    assert whole_quantity(value) == expected


@pytest.mark.parametrize(("text", "valid"), TABLE, ids=TABLE_IDS)
def test_grammar(text, valid):
    assert is_quantity(text) is valid
    if valid:
        assert parse_quantity(text).text == text
    else:
        with pytest.raises(QuantityError):
            parse_quantity(text)


@pytest.mark.parametrize(("text", "valid"), TABLE, ids=TABLE_IDS)
def test_crd_pattern_agrees(text, valid):
    """The webhook never accepts what the CRD schema refuses, nor the reverse."""
    assert (re.fullmatch(CRD_PATTERN, text) is not None) is valid
    assert (re.fullmatch(QUANTITY_PATTERN, text) is not None) is valid


def test_trailing_newline_is_why_we_fullmatch():
    """Python's `$` matches before a final newline; Go's, which the API server uses, does not."""
    assert re.search(CRD_PATTERN, "1\n") is not None
    assert not is_quantity("1\n")


EXACT = [
    ("0", "0"),
    ("-0", "0"),
    ("1", "1"),
    ("+1", "1"),
    ("-1", "-1"),
    ("007", "7"),
    ("1.", "1"),
    (".5", "0.5"),
    ("-.5", "-0.5"),
    ("1Ki", "1024"),
    ("1Mi", "1048576"),
    ("1Gi", "1073741824"),
    ("1Ti", "1099511627776"),
    ("1Pi", "1125899906842624"),
    ("1Ei", "1152921504606846976"),
    ("1.5Gi", "1610612736"),
    (".5Ki", "512"),
    ("217Ki", "222208"),
    ("-1Gi", "-1073741824"),
    ("1n", "0.000000001"),
    ("1u", "0.000001"),
    ("1m", "0.001"),
    ("12.5m", "0.0125"),
    ("1k", "1000"),
    ("1M", "1000000"),
    ("1G", "1000000000"),
    ("1T", "1000000000000"),
    ("1P", "1000000000000000"),
    ("1E", "1000000000000000000"),
    ("1e3", "1000"),
    ("1E+3", "1000"),
    ("1e-3", "0.001"),
    ("-1.5e-3", "-0.0015"),
    ("1e0", "1"),
    ("1e1.", "10"),
    ("0e1.5", "0"),
    ("9223372036854775808", str(2**63)),
    ("18446744073709551616", str(2**64)),
    ("1e400", "1e400"),
    ("1e-400", "1e-400"),
    ("1" * 100, "1" * 100),
    ("1" * 100 + "Ei", str(int("1" * 100) * 2**60)),
    ("0.4" + "0" * 70 + "1", "0.4" + "0" * 70 + "1"),
    ("1." + "0" * 80 + "1", "1." + "0" * 80 + "1"),
    ("1e999999999999999999", "1e999999999999999999"),
    ("1e" + "9" * 40, "Infinity"),
]


@pytest.mark.parametrize(("text", "expected"), EXACT, ids=[t[:30] for t, _ in EXACT])
def test_exact_value(text, expected):
    value = parse_quantity(text).value
    assert isinstance(value, Decimal)
    assert value == Decimal(expected)


def test_fractional_exponent_value_is_close():
    assert abs(parse_quantity("1e1.5").value - Decimal("31.6227766016837933")) < Decimal("1e-15")


NEGATIVE = [
    ("-1", True),
    ("-1n", True),
    ("-.5", True),
    ("-1e-3", True),
    ("-1Ki", True),
    ("-1e-400", True),
    ("-0", False),
    ("-0.0", False),
    ("-.0", False),
    ("-0Ki", False),
    ("-0e5", False),
    ("-0e-5", False),
    ("+0", False),
    ("0", False),
    ("+1", False),
    ("1Gi", False),
]


@pytest.mark.parametrize(("text", "negative"), NEGATIVE, ids=[t for t, _ in NEGATIVE])
def test_negative(text, negative):
    assert parse_quantity(text).negative is negative


FRACTIONAL_EXPONENT = [
    ("1e1.5", True),
    ("1e.5", True),
    ("1e1.0", True),  # Go's parser refuses any '.' in the exponent
    ("1e1.", True),
    ("0e1.5", True),
    ("1e3", False),
    ("1E-3", False),
    ("1.5e3", False),
    ("1.5Ki", False),
    ("1.5", False),
]


@pytest.mark.parametrize(("text", "fractional"), FRACTIONAL_EXPONENT,
                         ids=[t for t, _ in FRACTIONAL_EXPONENT])
def test_fractional_exponent_flag(text, fractional):
    assert parse_quantity(text).fractional_exponent is fractional


DECIMAL_PLACES = [
    ("0", 0),
    ("0.000", 0),
    ("0.4", 1),
    ("0.400", 1),
    ("0.123", 3),
    ("0.1234", 4),
    ("1E-3", 3),
    ("1e-4", 4),
    ("1.5e2", 0),
    ("1000", 0),
    ("1E+3", 0),
    ("0.4" + "0" * 70 + "1", 72),
]


@pytest.mark.parametrize(("text", "places"), DECIMAL_PLACES,
                         ids=[t[:20] for t, _ in DECIMAL_PLACES])
def test_decimal_places(text, places):
    assert decimal_places(Decimal(text)) == places
    assert decimal_places(parse_quantity(text).value) == places


# The official Python client accepts all of these; a cluster refuses them all.
KUBERNETES_CLIENT_ACCEPTS = [
    "1K", "NaN", "Inf", "+Inf", "Infinity", "1_000", " 1", "1 ", "1 Gi", "\n1", "1\n", "\t1",
    "1 k", "\uff11", "\u0663",
]


@pytest.mark.parametrize("text", KUBERNETES_CLIENT_ACCEPTS,
                         ids=[repr(t) for t in KUBERNETES_CLIENT_ACCEPTS])
def test_why_not_the_kubernetes_client_parser(text):
    kubernetes_client_parse_quantity(text)  # does not raise
    assert not is_quantity(text)
    assert re.fullmatch(CRD_PATTERN, text) is None
