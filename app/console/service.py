"""Read models of the ops console: what a page shows, read in one autocommit connection each.

Nothing here changes anything; the pages' actions go through the domain services (refunds, credits, standing),
exactly as the API does.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.context import AppContext
from app.credits import repository as credit_repo
from app.customers import repository as customer_repo
from app.db import insert_ignoring_conflict
from app.models import (
    audit_events,
    credit_entries,
    customers,
    idempotency_keys,
    notices,
    payments,
    refunds,
    subscriptions,
    trials,
)
from app.payments import repository as payment_repo
from policies import normalise_email

LIST_LIMIT = 100  # rows per section of a customer's page, newest first
SEARCH_LIMIT = 50
MAX_QUERY_LENGTH = 320


@dataclass
class Section:
    rows: list
    truncated: bool


@dataclass
class CustomerOverview:
    customer: Any
    subscriptions: Section
    trials: Section
    payments: Section
    refunds: Section
    credits: Section
    balances: dict[str, int]
    notices: Section
    audit_events: Section
    currencies: list[str] = field(default_factory=list)


@dataclass
class PaymentView:
    payment: Any
    customer: Any
    subscription: Any
    refunds: list

    @property
    def left_to_refund(self) -> int:
        return self.payment.amount - self.payment.refunded_amount


async def _newest(conn: AsyncConnection, stmt, id_column, limit: int = LIST_LIMIT) -> Section:  # noqa: ANN001
    rows = (await conn.execute(stmt.order_by(id_column.desc()).limit(limit + 1))).all()
    return Section(rows[:limit], len(rows) > limit)


async def find_customers(ctx: AppContext, query: str) -> list:
    """By id, external id, or email (case-insensitive, surrounding spaces ignored; one person may have several
    accounts, so an email can find several customers)."""
    query = query.strip()
    if not query or len(query) > MAX_QUERY_LENGTH:
        return []
    email = normalise_email(query)
    stmt = (
        select(customers)
        .where(
            or_(
                customers.c.id == query,
                customers.c.external_id == query,
                # Stored emails are already trimmed (P1); lower() on both sides is the case-insensitive comparison
                # both databases can do (SQLite's lower() folds ASCII only, as does casefold() on ASCII addresses).
                func.lower(func.trim(customers.c.email)) == email.lower(),
            )
        )
        .order_by(customers.c.id.desc())
        .limit(SEARCH_LIMIT)
    )
    async with ctx.db.read() as conn:
        return list((await conn.execute(stmt)).all())


async def customer_overview(ctx: AppContext, principal: Principal, customer_id: str) -> CustomerOverview:
    """Everything ops need on one page. NotFound when there is no such customer."""
    async with ctx.db.read() as conn:
        customer = await customer_repo.get_visible(conn, principal, customer_id)
        cid = customer.id
        overview = CustomerOverview(
            customer=customer,
            subscriptions=await _newest(
                conn, select(subscriptions).where(subscriptions.c.customer_id == cid), subscriptions.c.id
            ),
            trials=await _newest(conn, select(trials).where(trials.c.customer_id == cid), trials.c.id),
            payments=await _newest(conn, select(payments).where(payments.c.customer_id == cid), payments.c.id),
            refunds=await _newest(conn, select(refunds).where(refunds.c.customer_id == cid), refunds.c.id),
            credits=await _newest(
                conn, select(credit_entries).where(credit_entries.c.customer_id == cid), credit_entries.c.id
            ),
            balances=await credit_repo.all_balances(conn, cid),
            notices=await _newest(conn, select(notices).where(notices.c.customer_id == cid), notices.c.id),
            audit_events=await _newest(
                conn, select(audit_events).where(audit_events.c.customer_id == cid), audit_events.c.id
            ),
        )
        currencies = (
            (await conn.execute(select(payments.c.currency).where(payments.c.customer_id == cid).distinct()))
            .scalars()
            .all()
        )
    overview.currencies = sorted(set(currencies) | set(overview.balances)) or ["usd"]
    return overview


async def payment_view(ctx: AppContext, principal: Principal, payment_id: str) -> PaymentView:
    """A payment with its customer, subscription and refunds. NotFound when there is no such payment."""
    async with ctx.db.read() as conn:
        payment = await payment_repo.get_visible(conn, principal, payment_id)
        customer = await customer_repo.get_visible(conn, principal, payment.customer_id)
        subscription = (
            await conn.execute(select(subscriptions).where(subscriptions.c.id == payment.subscription_id))
        ).first()
        rows = (
            await conn.execute(select(refunds).where(refunds.c.payment_id == payment.id).order_by(refunds.c.id.desc()))
        ).all()
    return PaymentView(payment, customer, subscription, list(rows))


async def use_once(ctx: AppContext, principal: Principal, purpose: str, nonce: str, request: str) -> bool:
    """Spend a form's one-time nonce: True the first time, False for every later submission of the same form.

    The console's money forms (refund confirmation, credit) carry a random nonce, so that a double submit (a
    double click, a reload that re-posts, two tabs) moves money once. The nonce is kept in the table that holds
    the API's Idempotency-Keys, with the same meaning (a key used once per caller, kept at least
    `idempotency_ttl_hours` and purged by the same job); the caller is prefixed with `console:`, which no API
    caller key can start with (those are `<role>:<sub>`). The primary key makes the claim atomic across
    concurrent requests and replicas. A spent nonce is never released: after an error the page offers a fresh
    form, so a refund whose gateway call is still pending can never be issued a second time by a re-post.
    """
    now = ctx.system_clock.wall()
    async with ctx.db.transaction() as conn:
        inserted = await insert_ignoring_conflict(
            conn,
            idempotency_keys,
            {
                "caller": f"console:{principal.caller_key}",
                "key": f"{purpose}:{nonce}",
                "request_hash": hashlib.sha256(request.encode()).hexdigest(),
                "status": "completed",
                "created_at": now,
                "expires_at": now + _dt.timedelta(hours=ctx.settings.idempotency_ttl_hours),
            },
        )
    return inserted == 1
