"""Ids (`app/ids.py`): 26 Crockford base32 digits of a 128-bit value (48-bit milliseconds, 80 random bits), so ids
sort as their values do, which cursor pagination relies on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.ids import _ALPHABET, _b32, new_id

VALUES = st.integers(min_value=0, max_value=2**128 - 1)


def spelt_digit_by_digit(value: int) -> str:
    """The definition: the least significant 5 bits are the last digit, and so on for 26 digits."""
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


@given(VALUES)
def test_an_id_spells_its_value_in_crockford_base32(value: int) -> None:
    assert _b32(value) == spelt_digit_by_digit(value)


@given(VALUES, VALUES)
def test_ids_sort_as_their_values(a: int, b: int) -> None:
    assert (_b32(a) < _b32(b)) == (a < b)


def test_new_ids_are_strictly_increasing_within_a_process() -> None:
    ids = [new_id("pay") for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(i.startswith("pay_") and len(i) == 30 and set(i[4:]) <= set(_ALPHABET) for i in ids)
    assert _b32(0) == "0" * 26 and _b32(2**128 - 1) == "7" + "z" * 25
