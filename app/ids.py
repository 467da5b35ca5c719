"""Opaque, time-ordered ids (`cus_01J...`): lists sort newest first by id, which cursor pagination relies on."""

from __future__ import annotations

import os
import threading

from app.clock import SystemClock

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]  # every 10-bit value as two digits
_lock = threading.Lock()
_last = 0


def _b32(value: int) -> str:
    """The 128-bit `value` as 26 Crockford base32 digits, most significant first (130 bits: two leading zeros),
    spelt two digits at a time."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def new_id(prefix: str) -> str:
    """`prefix_` + 48-bit millisecond time + 80 random bits, strictly increasing within this process."""
    global _last
    with _lock:
        value = SystemClock.epoch_ms() << 80 | int.from_bytes(os.urandom(10), "big")
        if value <= _last:
            value = _last + 1
        _last = value
    return f"{prefix}_{_b32(value)}"
