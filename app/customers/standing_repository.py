"""Every statement a standing change (R3) or an erasure (D3) makes to what the customer holds: their live
subscriptions, pending payments and credit (their running trial: app/trials/repository.py)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import credit_entries, subscriptions
from policies import LIVE_SUBSCRIPTION, CreditKind, SubscriptionStatus

_LIVE = sorted(LIVE_SUBSCRIPTION)


class LiveSubscription(Protocol):
    """R3/B5: what lifting a suspension asks of a live subscription (`policies.charge_due_at_lifting`)."""

    id: str
    status: str
    cancel_at_period_end: bool
    current_period_end: _dt.datetime | None
    next_retry_at: _dt.datetime | None


async def lock_live_claims(conn: AsyncConnection, customer_id: str) -> list[_dt.datetime | None]:
    """R3: the claims (`claimed_until`) on the customer's live subscriptions, which stay locked by this transaction
    (after the customer, the order termination follows): a batch claiming them now waits, or skips them."""
    result = await conn.execute(
        select(subscriptions.c.claimed_until)
        .where(subscriptions.c.customer_id == customer_id, subscriptions.c.status.in_(_LIVE))
        .order_by(subscriptions.c.id)
        .with_for_update()
    )
    return list(result.scalars().all())


async def lock_live_subscriptions(conn: AsyncConnection, customer_id: str) -> list[LiveSubscription]:
    """R3/B5: the customer's live subscriptions, locked by this transaction, as lifting a suspension reads them."""
    result = await conn.execute(
        select(
            subscriptions.c.id,
            subscriptions.c.status,
            subscriptions.c.cancel_at_period_end,
            subscriptions.c.current_period_end,
            subscriptions.c.next_retry_at,
        )
        .where(subscriptions.c.customer_id == customer_id, subscriptions.c.status.in_(_LIVE))
        .with_for_update()
    )
    return cast(list[LiveSubscription], list(result.all()))


async def release_charges(conn: AsyncConnection, subscription_ids: Sequence[str], now: _dt.datetime) -> None:
    """R3/B5: the lifting at `now` released the held charge of these subscriptions (`retries_counted_from`)."""
    await conn.execute(
        update(subscriptions).where(subscriptions.c.id.in_(subscription_ids)).values(charge_released_at=now)
    )


async def end_live_subscriptions(
    conn: AsyncConnection, customer_id: str, ended_reason: str, now: _dt.datetime
) -> Sequence[Row[Any]]:
    """R3/D3: every live subscription of the customer ends now; the subscriptions as they end (full rows)."""
    result = await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.customer_id == customer_id, subscriptions.c.status.in_(_LIVE))
        .values(status=SubscriptionStatus.CANCELED, ended_at=now, ended_reason=ended_reason, next_retry_at=None)
        .returning(*subscriptions.c)
    )
    return result.all()


async def forfeit_credit(
    conn: AsyncConnection, entry_id: str, customer_id: str, balance: int, currency: str, **fields: Any
) -> None:
    """R3: the customer's `balance` of credit in `currency` is forfeited (one `forfeit` entry taking it back)."""
    await conn.execute(
        insert(credit_entries).values(
            id=entry_id,
            customer_id=customer_id,
            kind=CreditKind.FORFEIT,
            amount=-balance,
            currency=currency,
            payment_id=None,
            policy_version=None,
            **fields,
        )
    )
