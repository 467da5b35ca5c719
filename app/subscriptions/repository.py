"""Every statement about subscriptions (and the trials a purchase forfeits, T6).

Rows come back as SQLAlchemy `Row`s typed by the protocols below: attribute access is checked by mypy and costs
nothing at run time (no object is built per row: the renewal batch reads thousands). The statements the money
path runs on every charge are built once, at import: executing the same statement object skips building the
construct and computing its cache key on every call (SQLAlchemy memoizes the key on the object).

Locking order: a settlement locks the subscription, then the payment (app/payments/repository.py): the one order
every writer of both follows (cancellation, termination, erasure, other settlements), so one racing another waits
instead of deadlocking. A batch locks its subscriptions, then its payments, each in ascending id order.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any, Literal, Protocol, cast

from sqlalchemy import ColumnElement, Select, bindparam, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.claims import claim_batch, claimable
from app.customers.repository import get_owned
from app.models import customers, payments, plan_changes, plans, subscriptions, trials
from policies.states import (
    LIVE_SUBSCRIPTION,
    CustomerStatus,
    EndedReason,
    PaymentPurpose,
    PlanChangeStatus,
    SubscriptionStatus,
    TrialStatus,
)

# The statuses of a live subscription (`policies.states.LIVE_SUBSCRIPTION`), as a tuple for SQL `IN`, in a fixed
# order (the statement's parameters stay the same from call to call).
LIVE = tuple(sorted(LIVE_SUBSCRIPTION))


class SubscriptionRow(Protocol):
    """A row of `subscriptions`, every column (app/models/billing.py)."""

    id: str
    customer_id: str
    plan_id: str
    plan_code: str
    interval: str
    status: str
    price_amount: int
    currency: str
    tax_amount: int
    payment_method: str
    anchor_at: _dt.datetime | None
    period_index: int
    anchor_index: int  # C3: the index of the period that starts at anchor_at
    current_period_start: _dt.datetime | None
    current_period_end: _dt.datetime | None
    cancel_at_period_end: bool
    canceled_at: _dt.datetime | None
    ended_at: _dt.datetime | None
    ended_reason: str | None
    failed_attempts: int
    next_retry_at: _dt.datetime | None
    claimed_until: _dt.datetime | None
    charge_released_at: _dt.datetime | None
    policy_version: str
    created_at: _dt.datetime


class NamedSubscription(SubscriptionRow, Protocol):
    """A subscription with its plan's name (for the notices that name it)."""

    plan_name: str


class SettlingSubscription(NamedSubscription, Protocol):
    """A subscription locked for a settlement, with what a settlement writes about it: its plan's name (receipts,
    failure notices), its customer's e-mail (T5: the identity marked by a purchase) and standing, and whether the
    customer has a running trial (T6: a purchase forfeits it)."""

    customer_email: str | None
    customer_status: str
    has_running_trial: bool


class PaymentsSubscription(SettlingSubscription, Protocol):
    """`lock_of_payment`'s answer: the subscription of a payment, locked; `locked_payment_id` names the payment."""

    locked_payment_id: str


class EndingSubscription(NamedSubscription, Protocol):
    """C1: a subscription whose scheduled cancellation takes effect, with its customer's standing."""

    customer_status: str


class DueSubscription(SubscriptionRow, Protocol):
    """B2/B5: a subscription whose renewal or retry is due, with what its charge needs of its customer."""

    country: str | None
    gateway_customer_id: str | None
    customer_status: str


class ExpiringPurchase(Protocol):
    """B1: an incomplete purchase past its expiry."""

    id: str
    customer_id: str
    policy_version: str


class TrialRow(Protocol):
    """A row of `trials` (the columns a forfeit reads; the whole row is read for its event)."""

    id: str
    customer_id: str
    status: str
    ends_at: _dt.datetime
    ended_at: _dt.datetime | None


# Reads ---------------------------------------------------------------------------------------------------------

LIST_ORDER = subscriptions.c.id  # the column a customer's subscription list pages by


async def get_visible(
    conn: AsyncConnection, principal: Principal, subscription_id: str, *, for_update: bool = False
) -> SubscriptionRow:
    return cast(
        SubscriptionRow,
        await get_owned(conn, principal, subscriptions, subscription_id, "subscription", for_update=for_update),
    )


class ReadSubscription(SubscriptionRow, Protocol):
    has_pending_change: bool  # C3/C4: whether a plan change is pending (then `plan_changes.repository.shown`)


# C3/C4: read with the subscription, so the common read (no change pending) stays one round trip.
HAS_PENDING_CHANGE = (
    exists()
    .where(plan_changes.c.subscription_id == subscriptions.c.id, plan_changes.c.status == PlanChangeStatus.PENDING)
    .label("has_pending_change")
)


async def get_visible_for_read(conn: AsyncConnection, principal: Principal, subscription_id: str) -> ReadSubscription:
    """`get_visible`, and whether a plan change is pending, in one statement (the GET's hot path)."""
    row = await get_owned(conn, principal, subscriptions, subscription_id, "subscription", extra=(HAS_PENDING_CHANGE,))
    return cast(ReadSubscription, row)


async def get_visible_named(
    conn: AsyncConnection, principal: Principal, subscription_id: str, *, for_update: bool = False
) -> NamedSubscription:
    """`get_visible`, with the plan's name."""
    row = await get_owned(
        conn, principal, subscriptions, subscription_id, "subscription", for_update=for_update, with_plan_name=True
    )
    return cast(NamedSubscription, row)


_GET = select(subscriptions).where(subscriptions.c.id == bindparam("subscription_id"))
_GET_FOR_UPDATE = _GET.with_for_update()


async def get(conn: AsyncConnection, subscription_id: str, *, for_update: bool = False) -> SubscriptionRow:
    row = (await conn.execute(_GET_FOR_UPDATE if for_update else _GET, {"subscription_id": subscription_id})).one()
    return cast(SubscriptionRow, row)


async def live_for_customer(conn: AsyncConnection, customer_id: str) -> SubscriptionRow | None:
    stmt = select(subscriptions).where(subscriptions.c.customer_id == customer_id, subscriptions.c.status.in_(LIVE))
    return cast("SubscriptionRow | None", (await conn.execute(stmt)).first())


def for_customer(customer_id: str) -> Select[Any]:
    """A customer's subscriptions, for `app.customers.lists.customer_list` (paged by `LIST_ORDER`)."""
    return select(subscriptions).where(subscriptions.c.customer_id == customer_id)


async def customer_status(conn: AsyncConnection, customer_id: str) -> str:
    """The standing of a subscription's customer (R3)."""
    return cast(str, (await conn.execute(select(customers.c.status).where(customers.c.id == customer_id))).scalar_one())


# A customer's changes ------------------------------------------------------------------------------------------

# Built once (values travel as parameters); each returns the row as changed, so no second read is needed.
_SET_CANCELLATION = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("subscription_id"))
    .values(cancel_at_period_end=bindparam("flag"), canceled_at=bindparam("at"))
    .returning(*subscriptions.c)
)
_SET_PAYMENT_METHOD = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("subscription_id"))
    .values(payment_method=bindparam("method"))
    .returning(*subscriptions.c)
)


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """A new subscription; False (nothing written) when the customer's live slot is taken (the unique index on a
    live subscription per customer: a concurrent purchase won it)."""
    try:
        await conn.execute(subscriptions.insert(), row)
    except IntegrityError:
        return False
    return True


async def set_cancellation(
    conn: AsyncConnection, subscription_id: str, *, scheduled: bool, at: _dt.datetime | None
) -> SubscriptionRow:
    """C1/C2: a cancellation scheduled for the period end (asked `at`), or withdrawn."""
    params = {"subscription_id": subscription_id, "flag": scheduled, "at": at}
    return cast(SubscriptionRow, (await conn.execute(_SET_CANCELLATION, params)).one())


async def set_payment_method(conn: AsyncConnection, subscription_id: str, method: str) -> SubscriptionRow:
    params = {"subscription_id": subscription_id, "method": method}
    return cast(SubscriptionRow, (await conn.execute(_SET_PAYMENT_METHOD, params)).one())


async def end_now(conn: AsyncConnection, subscription_id: str, now: _dt.datetime) -> SubscriptionRow:
    """C1: an unpaid purchase or a subscription in dunning, cancelled: it ends now, its retries stopped."""
    stmt = (
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .values(
            status=SubscriptionStatus.CANCELED,
            canceled_at=now,
            ended_at=now,
            ended_reason=EndedReason.CANCELED,
            next_retry_at=None,
        )
        .returning(*subscriptions.c)
    )
    return cast(SubscriptionRow, (await conn.execute(stmt)).one())


# Leases (`claimed_until`: a charge in flight holds the subscription) ---------------------------------------------


async def lease(conn: AsyncConnection, subscription_ids: list[str], until: _dt.datetime | None) -> None:
    """Hold these subscriptions until `until` (None: give them back) whatever lease they had."""
    await conn.execute(
        update(subscriptions).where(subscriptions.c.id.in_(subscription_ids)).values(claimed_until=until)
    )


async def extend_leases(
    conn: AsyncConnection, subscription_ids: list[str], leases: list[_dt.datetime], until: _dt.datetime
) -> set[str]:
    """The liveness lease of those of these subscriptions still held (`claimed_until` one of `leases`) moved on to
    `until`; returns the ids extended."""
    stmt = (
        update(subscriptions)
        .where(subscriptions.c.id.in_(subscription_ids), subscriptions.c.claimed_until.in_(leases))
        .values(claimed_until=until)
        .returning(subscriptions.c.id)
    )
    return set((await conn.execute(stmt)).scalars())


async def move_leases(
    conn: AsyncConnection, subscription_ids: list[str], leases: list[_dt.datetime], until: _dt.datetime | None
) -> None:
    """The lease of those of these subscriptions still held (`claimed_until` one of `leases`) given back (None)
    or moved to `until`."""
    await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id.in_(subscription_ids), subscriptions.c.claimed_until.in_(leases))
        .values(claimed_until=until)
    )


# Scheduled work (claimed through app/claims.py: SKIP LOCKED on PostgreSQL) ---------------------------------------


def _unleased(wall: _dt.datetime) -> ColumnElement[bool]:
    return or_(subscriptions.c.claimed_until.is_(None), subscriptions.c.claimed_until <= wall)


# C1/B2 (`policies.cancellation_ends_period`): a scheduled cancellation asked before the stored period end ends
# that period; one asked at or after it (the renewal due, not charged yet) ends the renewed period.
_CANCELED_FOR_THIS_PERIOD = or_(
    subscriptions.c.canceled_at.is_(None), subscriptions.c.canceled_at < subscriptions.c.current_period_end
)


async def claim_period_ends(
    conn: AsyncConnection, now: _dt.datetime, wall: _dt.datetime, *, limit: int, postgres: bool
) -> list[EndingSubscription]:
    """C1: active subscriptions whose scheduled cancellation takes effect at a period end that has come."""
    stmt = (
        select(subscriptions, plans.c.name.label("plan_name"), customers.c.status.label("customer_status"))
        .join(plans, plans.c.id == subscriptions.c.plan_id)
        .join(customers, customers.c.id == subscriptions.c.customer_id)
        .where(
            subscriptions.c.status == SubscriptionStatus.ACTIVE,
            subscriptions.c.cancel_at_period_end.is_(True),
            _CANCELED_FOR_THIS_PERIOD,
            subscriptions.c.current_period_end <= now,
            _unleased(wall),
        )
    )
    return cast(
        "list[EndingSubscription]",
        list(await claim_batch(conn, stmt, of=subscriptions, limit=limit, postgres=postgres)),
    )


async def end_at_period_end(conn: AsyncConnection, subscription_ids: list[str]) -> None:
    """C1: these subscriptions ended at their period end, cancelled."""
    await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id.in_(subscription_ids))
        .values(
            status=SubscriptionStatus.CANCELED,
            ended_at=subscriptions.c.current_period_end,
            ended_reason=EndedReason.CANCELED,
        )
    )


_DUE = {
    # B2/C1: active, past the period end, no cancellation asked before that end.
    PaymentPurpose.RENEWAL: (
        subscriptions.c.status == SubscriptionStatus.ACTIVE,
        or_(
            subscriptions.c.cancel_at_period_end.is_(False),
            subscriptions.c.canceled_at >= subscriptions.c.current_period_end,
        ),
    ),
    # B5: past_due, its retry date come.
    PaymentPurpose.RETRY: (subscriptions.c.status == SubscriptionStatus.PAST_DUE,),
}
_DUE_AT = {
    PaymentPurpose.RENEWAL: subscriptions.c.current_period_end,
    PaymentPurpose.RETRY: subscriptions.c.next_retry_at,
}


async def claim_due_charges(
    conn: AsyncConnection,
    purpose: PaymentPurpose,
    now: _dt.datetime,
    wall: _dt.datetime,
    *,
    limit: int,
    postgres: bool,
) -> list[DueSubscription]:
    """B2/B5: subscriptions whose renewal (or retry) is due at `now` and that no charge in flight holds, of active
    customers (R3: nothing is charged while the customer is suspended), taken by this transaction. The caller
    leases those it charges (`lease`)."""
    stmt = (
        select(
            subscriptions,
            customers.c.country,
            customers.c.gateway_customer_id,
            customers.c.status.label("customer_status"),
        )
        .join(customers, customers.c.id == subscriptions.c.customer_id)
        .where(*_DUE[purpose], _DUE_AT[purpose] <= now, customers.c.status == CustomerStatus.ACTIVE, _unleased(wall))
    )
    rows = (await conn.execute(claimable(stmt, of=subscriptions, limit=limit, postgres=postgres))).all()
    return cast("list[DueSubscription]", rows)


async def claim_expired_purchases(
    conn: AsyncConnection, created_before: _dt.datetime, wall: _dt.datetime, *, limit: int, postgres: bool
) -> list[ExpiringPurchase]:
    """B1: incomplete purchases made at or before `created_before`."""
    stmt = select(subscriptions.c.id, subscriptions.c.customer_id, subscriptions.c.policy_version).where(
        subscriptions.c.status == SubscriptionStatus.INCOMPLETE,
        subscriptions.c.created_at <= created_before,
        _unleased(wall),
    )
    return cast(
        "list[ExpiringPurchase]", list(await claim_batch(conn, stmt, of=subscriptions, limit=limit, postgres=postgres))
    )


async def end_unpaid(conn: AsyncConnection, subscription_ids: list[str], now: _dt.datetime, *, release: bool) -> None:
    """B1: purchases whose payment failed or never came end (payment_failed); `release` gives back their lease."""
    values: dict[str, Any] = {
        "status": SubscriptionStatus.CANCELED,
        "ended_at": now,
        "ended_reason": EndedReason.PAYMENT_FAILED,
    }
    if release:
        values["claimed_until"] = None
    await conn.execute(update(subscriptions).where(subscriptions.c.id.in_(subscription_ids)).values(values))


# Settlement (app/subscriptions/charging.py) ----------------------------------------------------------------------

_SETTLING_COLUMNS = (
    subscriptions,
    # A subquery, not a join: a subscription locked after a concurrent plan change (C3/C4) is re-read with its new
    # plan (PostgreSQL re-checks a join against the old plan's row and would skip the subscription).
    select(plans.c.name).where(plans.c.id == subscriptions.c.plan_id).scalar_subquery().label("plan_name"),
    customers.c.email.label("customer_email"),
    customers.c.status.label("customer_status"),
    # T6: read, as `running_trials` reads them, without a lock.
    exists()
    .where(trials.c.customer_id == subscriptions.c.customer_id, trials.c.status == TrialStatus.ACTIVE)
    .label("has_running_trial"),
)
_SETTLING_JOINS = subscriptions.join(customers, customers.c.id == subscriptions.c.customer_id)


def _lock_of_payment(where: ColumnElement[bool]) -> Select[Any]:
    """The subscription of the payment matching `where` (a payment's subscription never changes), locked; only
    the subscription's row is locked (`FOR UPDATE OF`), the payment is locked next, by its id."""
    return (
        select(*_SETTLING_COLUMNS, payments.c.id.label("locked_payment_id"))
        .select_from(_SETTLING_JOINS.join(payments, payments.c.subscription_id == subscriptions.c.id))
        .where(where)
        .with_for_update(of=subscriptions)
    )


PaymentKey = Literal["id", "gateway_payment_id", "idempotency_key"]
_LOCK_VIA: dict[str, Select[Any]] = {
    "id": _lock_of_payment(payments.c.id == bindparam("value")),
    "gateway_payment_id": _lock_of_payment(payments.c.gateway_payment_id == bindparam("value")),
    "idempotency_key": _lock_of_payment(payments.c.idempotency_key == bindparam("value")),
}
_LOCK = (
    select(*_SETTLING_COLUMNS)
    .select_from(_SETTLING_JOINS)
    .where(subscriptions.c.id == bindparam("subscription_id"))
    .with_for_update(of=subscriptions)
)
_LOCK_MANY = (
    select(*_SETTLING_COLUMNS)
    .select_from(_SETTLING_JOINS)
    .where(subscriptions.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(subscriptions.c.id)
    .with_for_update(of=subscriptions)
)
_RENEW = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("b_id"))
    .values(
        status=SubscriptionStatus.ACTIVE,
        period_index=bindparam("b_index"),
        current_period_start=bindparam("b_start"),
        current_period_end=bindparam("b_end"),
        tax_amount=bindparam("b_tax"),
        failed_attempts=0,
        next_retry_at=None,
        claimed_until=None,
    )
)
_START = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("b_id"))
    .values(
        status=SubscriptionStatus.ACTIVE,
        anchor_at=bindparam("b_anchor"),
        period_index=bindparam("b_index"),
        current_period_start=bindparam("b_start"),
        current_period_end=bindparam("b_end"),
        tax_amount=bindparam("b_tax"),
        failed_attempts=0,
        next_retry_at=None,
        claimed_until=None,
    )
    .returning(*subscriptions.c)
)
_RUNNING_TRIALS = select(trials).where(
    trials.c.customer_id == bindparam("customer_id"), trials.c.status == TrialStatus.ACTIVE
)


async def lock_of_payment(conn: AsyncConnection, *, by: PaymentKey, value: str) -> PaymentsSubscription | None:
    """Lock the subscription of the payment whose `by` is `value` and return it (`locked_payment_id` names the
    payment), or None when no payment matches."""
    return cast("PaymentsSubscription | None", (await conn.execute(_LOCK_VIA[by], {"value": value})).first())


async def lock(conn: AsyncConnection, subscription_id: str) -> SettlingSubscription:
    return cast(SettlingSubscription, (await conn.execute(_LOCK, {"subscription_id": subscription_id})).one())


async def lock_many(conn: AsyncConnection, subscription_ids: list[str]) -> dict[str, SettlingSubscription]:
    rows = (await conn.execute(_LOCK_MANY, {"ids": sorted(subscription_ids)})).all()
    return {s.id: s for s in cast("Sequence[SettlingSubscription]", rows)}


def renewal_params(
    subscription_id: str, index: int, start: _dt.datetime, end: _dt.datetime, tax_amount: int
) -> dict[str, Any]:
    """The parameters of `renew` for one subscription (a batch passes a list of them)."""
    return {"b_id": subscription_id, "b_index": index, "b_start": start, "b_end": end, "b_tax": tax_amount}


async def renew(conn: AsyncConnection, params: list[dict[str, Any]]) -> None:
    """B2/B5: subscriptions moved to the period paid for, active, their dunning and lease cleared (one statement,
    executed for every row of `params`)."""
    await conn.execute(_RENEW, params)


async def start(
    conn: AsyncConnection,
    subscription_id: str,
    *,
    anchor: _dt.datetime,
    index: int,
    period_start: _dt.datetime,
    period_end: _dt.datetime,
    tax_amount: int,
) -> SubscriptionRow:
    """B1/B2/B4: the subscription active in the period paid for (anchored at `anchor`); returns it as written."""
    params = renewal_params(subscription_id, index, period_start, period_end, tax_amount) | {"b_anchor": anchor}
    return cast(SubscriptionRow, (await conn.execute(_START, params)).one())


async def change_plan_now(conn: AsyncConnection, subscription_id: str, values: dict[str, Any]) -> None:
    """C4/B4: an upgrade paid: the new plan, price, anchor and period from now (`values`), its lease cleared."""
    await conn.execute(update(subscriptions).where(subscriptions.c.id == subscription_id).values(values))


async def record_failure(conn: AsyncConnection, subscription_id: str, values: dict[str, Any]) -> None:
    """B5/C1: what a failed renewal or retry leaves of the subscription (past_due, or ended)."""
    await conn.execute(update(subscriptions).where(subscriptions.c.id == subscription_id).values(values))


async def running_trials(conn: AsyncConnection, customer_id: str) -> list[TrialRow]:
    """T6: the customer's running trials (a purchase forfeits them)."""
    return cast("list[TrialRow]", (await conn.execute(_RUNNING_TRIALS, {"customer_id": customer_id})).all())


async def forfeit_trial(conn: AsyncConnection, trial_id: str, ended_at: _dt.datetime) -> None:
    """T6: a trial forfeited by a purchase."""
    await conn.execute(
        update(trials).where(trials.c.id == trial_id).values(status=TrialStatus.FORFEITED, ended_at=ended_at)
    )
