"""The idempotency keys' background bookkeeping (review finding 10c): one worker per app, a bounded queue, back-off
while the database is away, and nothing left running after shutdown."""

from __future__ import annotations

import asyncio

from app.bookkeeping import Bookkeeping


async def test_the_queue_is_bounded_and_one_worker_backs_off_while_the_database_is_away() -> None:
    book = Bookkeeping(limit=3, first_delay=0.01, max_delay=0.08, give_up_after=60)
    attempts: list[str] = []
    down = True

    async def release(name: str) -> None:
        attempts.append(name)
        if down:
            raise ConnectionRefusedError("database unreachable")

    accepted = [book.submit(("release", n), release, f"k{n}") for n in range(5)]
    assert accepted == [True, True, True, False, False]  # bounded: the rest are left to expire as abandoned
    assert book.submit(("release", 0), release, "k0")  # the same operation again takes no new place
    assert (book.pending, book.running) == (3, True)
    await asyncio.sleep(0.4)
    # Each pass stops at the first item still failing, and the passes back off (0.01 s doubling to 0.08 s): a few
    # attempts, all on the first item, not 3 items every 10 ms.
    assert 3 <= len(attempts) <= 10 and set(attempts) == {"k0"}
    down = False
    for _ in range(50):
        if not book.pending:
            break
        await asyncio.sleep(0.02)
    assert book.pending == 0 and attempts[-3:] == ["k0", "k1", "k2"]
    await asyncio.sleep(0.01)
    assert not book.running  # ended with the queue empty; started again by the next submission
    await book.aclose()


async def test_shutdown_makes_a_last_attempt_and_leaves_no_worker() -> None:
    book = Bookkeeping(first_delay=10, last_attempt_seconds=1)
    done: list[str] = []

    async def complete(name: str) -> None:
        done.append(name)

    book.submit(("complete", "k"), complete, "k")
    assert book.running and not done  # the worker waits before its first pass
    await book.aclose()
    assert (done, book.pending, book.running) == (["k"], 0, False)
    assert not book.submit(("complete", "late"), complete, "late")  # nothing new after shutdown
    assert not book.running
