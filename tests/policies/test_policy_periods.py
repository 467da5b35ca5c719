"""B4: periods anchored on the acquisition date, computed from the anchor."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from policies import add_periods, period_bounds


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    "anchor, interval, count, expected",
    [
        pytest.param(utc(2028, 1, 31, 9, 30), "month", 0, utc(2028, 1, 31, 9, 30), id="B4-zero-periods"),
        pytest.param(utc(2028, 1, 31, 9, 30), "month", 1, utc(2028, 2, 29, 9, 30), id="B4-31-jan-to-29-feb-leap"),
        pytest.param(utc(2028, 1, 31, 9, 30), "month", 2, utc(2028, 3, 31, 9, 30), id="B4-back-to-31-mar"),
        pytest.param(utc(2028, 1, 31, 9, 30), "month", 3, utc(2028, 4, 30, 9, 30), id="B4-30-apr"),
        pytest.param(utc(2027, 1, 31), "month", 1, utc(2027, 2, 28), id="B4-31-jan-to-28-feb-common"),
        pytest.param(utc(2027, 1, 31), "month", 12, utc(2028, 1, 31), id="B4-twelve-months"),
        pytest.param(utc(2027, 12, 15), "month", 1, utc(2028, 1, 15), id="B4-year-rollover"),
        pytest.param(utc(2027, 8, 31), "month", 6, utc(2028, 2, 29), id="B4-into-leap-feb"),
        pytest.param(utc(2024, 2, 29), "year", 1, utc(2025, 2, 28), id="B4-29-feb-yearly-common"),
        pytest.param(utc(2024, 2, 29), "year", 4, utc(2028, 2, 29), id="B4-29-feb-yearly-leap"),
        pytest.param(utc(2024, 2, 29), "year", 100, utc(2124, 2, 29), id="B4-29-feb-century-leap"),
        pytest.param(utc(2096, 2, 29), "year", 4, utc(2100, 2, 28), id="B4-2100-not-leap"),
        pytest.param(
            utc(2026, 5, 10, 23, 59, 59, 999999),
            "year",
            2,
            utc(2028, 5, 10, 23, 59, 59, 999999),
            id="B4-time-of-day-kept",
        ),
    ],
)
def test_B4_month_end_clamping(anchor, interval, count, expected):
    assert add_periods(anchor, interval, count) == expected


def test_B4_not_chained_from_the_clamped_date():
    anchor = utc(2028, 1, 31)
    chained = add_periods(add_periods(anchor, "month", 1), "month", 1)
    assert chained == utc(2028, 3, 29)  # what chaining would wrongly give
    assert add_periods(anchor, "month", 2) == utc(2028, 3, 31)


def test_B4_tzinfo_preserved():
    plus_two = timezone(timedelta(hours=2))
    anchor = datetime(2027, 1, 31, 12, tzinfo=plus_two)
    assert add_periods(anchor, "month", 1).tzinfo is plus_two


@pytest.mark.parametrize(
    "anchor, interval, count, error",
    [
        pytest.param(datetime(2027, 1, 1), "month", 1, ValueError, id="B4-naive-anchor"),
        pytest.param(utc(2027, 1, 1), "month", -1, ValueError, id="B4-negative-count"),
        pytest.param(utc(2027, 1, 1), "week", 1, ValueError, id="B4-unknown-interval"),
        pytest.param(utc(2027, 1, 1), "month", 1.0, TypeError, id="B4-float-count"),
        pytest.param(utc(2027, 1, 1), "month", True, TypeError, id="B4-bool-count"),
    ],
)
def test_B4_add_periods_refuses_bad_input(anchor, interval, count, error):
    with pytest.raises(error):
        add_periods(anchor, interval, count)


@pytest.mark.parametrize(
    "anchor, interval, index, expected",
    [
        pytest.param(utc(2028, 1, 31), "month", 0, (utc(2028, 1, 31), utc(2028, 2, 29)), id="B4-first-period"),
        pytest.param(utc(2028, 1, 31), "month", 1, (utc(2028, 2, 29), utc(2028, 3, 31)), id="B4-second-period"),
        pytest.param(utc(2024, 2, 29), "year", 0, (utc(2024, 2, 29), utc(2025, 2, 28)), id="B4-yearly-first"),
        pytest.param(utc(2024, 2, 29), "year", 3, (utc(2027, 2, 28), utc(2028, 2, 29)), id="B4-yearly-fourth"),
    ],
)
def test_B4_period_bounds(anchor, interval, index, expected):
    assert period_bounds(anchor, interval, index) == expected


def test_B4_period_bounds_refuses_negative_index():
    with pytest.raises(ValueError):
        period_bounds(utc(2027, 1, 1), "month", -1)
