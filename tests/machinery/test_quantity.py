"""Kubernetes resource quantities: parsing, canonical printing, rounding, arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machinery.quantity import FORMAT_ERROR, SUFFIX_ERROR, Quantity, QuantityFormat, parse_quantity


@pytest.mark.parametrize(
    ("text", "canonical", "value", "milli"),
    [
        pytest.param("100m", "100m", 1, 100, id="milli-cpu"),
        pytest.param("1", "1", 1, 1000, id="one"),
        pytest.param("1.5", "1500m", 2, 1500, id="fraction-becomes-milli"),
        pytest.param("0.1", "100m", 1, 100, id="tenth"),
        pytest.param("2Gi", "2Gi", 2 * 1024**3, 2 * 1024**3 * 1000, id="gibibytes"),
        pytest.param("500Mi", "500Mi", 500 * 1024**2, 500 * 1024**2 * 1000, id="mebibytes"),
        pytest.param("1.5Gi", "1536Mi", 1536 * 1024**2, 1536 * 1024**2 * 1000, id="binary-rescaled"),
        pytest.param("0.5Ki", "512", 512, 512000, id="small-binary-prints-decimal"),
        pytest.param("1.1Gi", "1181116006400m", 1181116007, 1181116006400, id="inexact-binary-prints-milli"),
        pytest.param("1e3", "1e3", 1000, 1000000, id="exponent"),
        pytest.param("12e2", "1200", 1200, 1200000, id="exponent-normalised"),
        pytest.param("1k", "1k", 1000, 1000000, id="kilo"),
        pytest.param("1000", "1k", 1000, 1000000, id="thousand-is-1k"),
        pytest.param("1500", "1500", 1500, 1500000, id="no-exact-kilo"),
        pytest.param("1M", "1M", 10**6, 10**9, id="mega"),
        pytest.param("0.1n", "1n", 1, 1, id="rounds-up-to-nano"),
        pytest.param("-1.5", "-1500m", -2, -1500, id="negative-rounds-away-from-zero"),
        pytest.param("0", "0", 0, 0, id="zero"),
        pytest.param("0Gi", "0", 0, 0, id="zero-binary"),
        pytest.param("1E", "1E", 10**18, 10**21, id="exa"),
        pytest.param("1Ei", "1Ei", 2**60, 2**60 * 1000, id="exbi"),
        pytest.param("+2", "2", 2, 2000, id="plus-sign"),
    ],
)
def test_parse_and_canonical_form(text: str, canonical: str, value: int, milli: int) -> None:
    q = Quantity.parse(text)
    assert str(q) == canonical
    assert q.value() == value
    assert q.milli_value() == milli
    assert Quantity.parse(canonical) == q


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("abc", FORMAT_ERROR, id="letters"),
        pytest.param("", FORMAT_ERROR, id="empty"),
        pytest.param("1.2.3", FORMAT_ERROR, id="two-dots"),
        pytest.param("1Kb", FORMAT_ERROR, id="bad-chars"),
        pytest.param("1ki", SUFFIX_ERROR, id="lowercase-binary"),
        pytest.param("1e", SUFFIX_ERROR, id="bare-e"),
        pytest.param("1mm", SUFFIX_ERROR, id="double-suffix"),
    ],
)
def test_invalid_quantities(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Quantity.parse(text)
    assert str(info.value) == message


def test_format_error_names_kubernetes_regex() -> None:
    assert "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'" in FORMAT_ERROR


def test_exact_arithmetic_and_ordering() -> None:
    total = Quantity.parse("100m") + Quantity.parse("200m")
    assert total == Quantity.parse("300m")
    assert str(total) == "300m"
    assert Quantity.parse("1Gi") > Quantity.parse("1G")
    assert Quantity.parse("1") - Quantity.parse("250m") == Quantity.from_milli(750)
    assert str(Quantity.parse("1Gi") * 2) == "2Gi"
    assert str(Quantity.from_value(2**30, QuantityFormat.BINARY_SI)) == "1Gi"
    assert hash(Quantity.parse("1000m")) == hash(Quantity.parse("1"))


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        pytest.param(2, "2", id="int"),
        pytest.param(0.5, "500m", id="float"),
        pytest.param("1Ki", "1Ki", id="str"),
    ],
)
def test_parse_quantity_accepts_json_numbers(raw: str | int | float, canonical: str) -> None:
    assert str(parse_quantity(raw)) == canonical


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["m", "", "k", "Ki", "Mi", "e3"]))
def test_canonical_form_reparses_to_same_value(number: int, suffix: str) -> None:
    q = Quantity.parse(f"{number}{suffix}")
    assert Quantity.parse(str(q)) == q
