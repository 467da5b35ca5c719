"""B4/P2/T7: shared input checks for the pure policy functions (no I/O, no clock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def require_aware(value: Any, name: str) -> datetime:
    """B4/T7: `value` must be a timezone-aware datetime (UTC); naive ones raise ValueError."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value!r}")
    return value


def require_optional_aware(value: Any, name: str) -> datetime | None:
    """B4/T7: like require_aware, but None is allowed."""
    return None if value is None else require_aware(value, name)


def require_int(value: Any, name: str, minimum: int | None = None) -> int:
    """B4/P2: counts and money are ints (never float or bool); below `minimum` raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
