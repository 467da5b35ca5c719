"""B4: billing periods anchored on the acquisition instant, computed from the anchor, never chained."""

from __future__ import annotations

import calendar
from datetime import datetime

from ._checks import require_aware, require_int
from .states import Interval

_MONTHS_PER_INTERVAL: dict[str, int] = {Interval.MONTH: 1, Interval.YEAR: 12}


def _months(interval: str) -> int:
    try:
        return _MONTHS_PER_INTERVAL[interval]
    except (KeyError, TypeError):
        raise ValueError(f"interval must be 'month' or 'year', got {interval!r}") from None


def add_periods(anchor: datetime, interval: Interval, count: int) -> datetime:
    """B4: anchor + count calendar months/years, from the anchor, day clamped to the target month's last day.

    31 Jan + 1 month = 28/29 Feb, + 2 months = 31 Mar; 29 Feb 2024 + 1 year = 28 Feb 2025, + 4 years = 29 Feb 2028.
    Time of day and tzinfo are preserved. count >= 0.
    """
    require_aware(anchor, "anchor")
    months = _months(interval) * require_int(count, "count", minimum=0)
    years_ahead, month_index = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years_ahead, month_index + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, interval: Interval, index: int) -> tuple[datetime, datetime]:
    """B4: (start, end) of period number `index` (0 = the first): (anchor + index periods, anchor + index+1)."""
    require_int(index, "index", minimum=0)
    return add_periods(anchor, interval, index), add_periods(anchor, interval, index + 1)
