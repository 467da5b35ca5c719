"""Waiting, inside the event loop, for what a test's own thread signals."""

from __future__ import annotations

import asyncio
import threading


async def until_set(event: threading.Event, poll: float = 0.01) -> None:
    """Return once `event` is set, without blocking the loop. The event is set by the test's thread, outside this
    loop: an `asyncio.Event` cannot be set from there, so this polls."""
    while not event.is_set():  # noqa: ASYNC110 - a threading.Event set from another thread cannot be awaited
        await asyncio.sleep(poll)
