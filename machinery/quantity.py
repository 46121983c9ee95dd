"""Kubernetes resource quantities (``100m``, ``2Gi``, ``1e3``): parse, exact arithmetic, canonical form.

Used by validation (container resources, limit ranges), the scheduler (fit checks in milli-CPU
and bytes) and the kubelet. Values are held as exact :class:`fractions.Fraction` numbers, so
``0.1 + 0.2 == 0.3`` holds, and are rounded up to nano units (``1n``) as Kubernetes does.

:meth:`Quantity.__str__` prints the canonical form Kubernetes serialises:

* the suffix family of the parsed string is kept (decimal SI ``k/M/G``, binary SI ``Ki/Mi``,
  or decimal exponent ``e3``);
* a binary-SI value that is below 1024 in magnitude or not a whole number is printed as
  decimal SI (``0.5Ki`` -> ``512``, ``1.1Gi`` -> ``1181116006400m``);
* the mantissa is the integer with the largest exponent (a multiple of 3 for decimal forms,
  of 1024 for binary) that represents the value exactly (``1000`` -> ``1k``, ``1.5`` -> ``1500m``,
  ``1.5Gi`` -> ``1536Mi``).

Invalid strings raise :class:`ValueError` with the messages Kubernetes' validation shows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from functools import total_ordering
from typing import Final

FORMAT_ERROR: Final = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
SUFFIX_ERROR: Final = "unable to parse quantity's suffix"

_SYNTAX = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$")
_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")
_NANO = Fraction(1, 10**9)


class QuantityFormat(Enum):
    """The suffix family a quantity was written in; it decides how the value prints."""

    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


_DECIMAL_SUFFIXES: Final[dict[str, int]] = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
}
_DECIMAL_BY_EXP: Final[dict[int, str]] = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES: Final[dict[str, int]] = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_BINARY_BY_EXP: Final[dict[int, str]] = {v: k for k, v in _BINARY_SUFFIXES.items()}


def _round_up_to_nano(value: Fraction) -> Fraction:
    """Round away from zero to a whole number of nano units (Kubernetes never loses a request)."""
    scaled = value / _NANO
    if scaled.denominator == 1:
        return value
    whole = math.ceil(abs(scaled))
    return Fraction(whole if value > 0 else -whole) * _NANO


def _ceil_away(value: Fraction) -> int:
    magnitude = math.ceil(abs(value))
    return magnitude if value >= 0 else -magnitude


def _parse_suffix(suffix: str) -> tuple[Fraction, QuantityFormat]:
    if suffix in _DECIMAL_SUFFIXES:
        return Fraction(10) ** _DECIMAL_SUFFIXES[suffix], QuantityFormat.DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return Fraction(1024) ** _BINARY_SUFFIXES[suffix], QuantityFormat.BINARY_SI
    if _EXPONENT.match(suffix):
        return Fraction(10) ** int(suffix[1:]), QuantityFormat.DECIMAL_EXPONENT
    raise ValueError(SUFFIX_ERROR)


@total_ordering
@dataclass(frozen=True, eq=False)
class Quantity:
    """An exact quantity and the format it prints in. Equality and order compare values only."""

    amount: Fraction
    format: QuantityFormat = QuantityFormat.DECIMAL_SI

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", _round_up_to_nano(Fraction(self.amount)))

    @classmethod
    def parse(cls, text: str) -> Quantity:
        """Parse ``text`` as Kubernetes does; raise :class:`ValueError` when it is not a quantity."""
        text = text.strip() if isinstance(text, str) else text
        if not isinstance(text, str) or not text:
            raise ValueError(FORMAT_ERROR)
        match = _SYNTAX.match(text)
        if match is None or not _NUMBER.match(match.group(1)):
            raise ValueError(FORMAT_ERROR)
        number, suffix = match.groups()
        multiplier, fmt = _parse_suffix(suffix)
        return cls(Fraction(number) * multiplier, fmt)

    @classmethod
    def from_milli(cls, milli: int, fmt: QuantityFormat = QuantityFormat.DECIMAL_SI) -> Quantity:
        """A quantity of ``milli`` thousandths (``from_milli(250)`` prints ``250m``)."""
        return cls(Fraction(milli, 1000), fmt)

    @classmethod
    def from_value(cls, value: int, fmt: QuantityFormat = QuantityFormat.DECIMAL_SI) -> Quantity:
        """A whole-number quantity (``from_value(2**30, BINARY_SI)`` prints ``1Gi``)."""
        return cls(Fraction(value), fmt)

    # -- reading -----------------------------------------------------------------------------
    def value(self) -> int:
        """The value rounded up (away from zero) to an integer, like ``Quantity.Value()``."""
        return _ceil_away(self.amount)

    def milli_value(self) -> int:
        """The value in thousandths rounded up (away from zero), like ``Quantity.MilliValue()``."""
        return _ceil_away(self.amount * 1000)

    def is_zero(self) -> bool:
        return self.amount == 0

    # -- arithmetic (the result keeps the left operand's format, as Kubernetes' Add does) ------
    def _fmt_with(self, other: Quantity) -> QuantityFormat:
        return other.format if self.is_zero() else self.format

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.amount + other.amount, self._fmt_with(other))

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(self.amount - other.amount, self._fmt_with(other))

    def __neg__(self) -> Quantity:
        return Quantity(-self.amount, self.format)

    def __mul__(self, factor: int) -> Quantity:
        return Quantity(self.amount * factor, self.format)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Quantity):
            return self.amount == other.amount
        return NotImplemented

    def __lt__(self, other: Quantity) -> bool:
        return self.amount < other.amount

    def __hash__(self) -> int:
        return hash(self.amount)

    # -- printing ------------------------------------------------------------------------------
    def __str__(self) -> str:
        if self.amount == 0:
            return "0"
        sign = "-" if self.amount < 0 else ""
        magnitude = abs(self.amount)
        if self.format is QuantityFormat.BINARY_SI and magnitude >= 1024 and magnitude.denominator == 1:
            mantissa, exp = int(magnitude), 0
            while mantissa % 1024 == 0 and exp < max(_BINARY_BY_EXP):
                mantissa //= 1024
                exp += 1
            return f"{sign}{mantissa}{_BINARY_BY_EXP.get(exp, '')}"
        mantissa, exp10 = _decimal_canonical(magnitude)
        if self.format is QuantityFormat.DECIMAL_EXPONENT:
            return f"{sign}{mantissa}{'' if exp10 == 0 else f'e{exp10}'}"
        if exp10 > 18:
            mantissa, exp10 = mantissa * 10 ** (exp10 - 18), 18
        return f"{sign}{mantissa}{_DECIMAL_BY_EXP[exp10]}"

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"


def _decimal_canonical(magnitude: Fraction) -> tuple[int, int]:
    """(mantissa, exponent) with exponent a multiple of 3, as large as keeps the mantissa whole."""
    nanos = int(magnitude / _NANO)  # exact: values are rounded to nano units on construction
    exp = -9
    while nanos % 10 == 0:
        nanos //= 10
        exp += 1
    shift = exp % 3
    return nanos * 10**shift, exp - shift


def parse_quantity(value: str | int | float) -> Quantity:
    """Parse a quantity as it appears in JSON (a string, or a bare number as clients sometimes send)."""
    if isinstance(value, bool):
        raise ValueError(FORMAT_ERROR)
    if isinstance(value, int):
        return Quantity.from_value(value)
    if isinstance(value, float):
        return Quantity.parse(repr(value))
    return Quantity.parse(value)
