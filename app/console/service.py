"""Read models of the ops console: what a page shows, read in one autocommit connection each.

Nothing here changes anything; the pages' actions go through the domain services (refunds, credits, standing),
exactly as the API does.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.console import queries
from app.console import repository as console_repo
from app.context import AppContext
from app.credits import repository as credit_repo
from app.customers import repository as customer_repo
from app.idempotency_repository import KeyStatus
from app.payments import repository as payment_repo
from app.plan_changes import repository as plan_change_repo
from app.plan_changes.repository import ShownChange
from app.plans import repository as plan_repo
from app.plans.repository import PlanRow
from app.subscriptions import repository as subscription_repo
from policies import normalise_email
from policies.states import is_live

LIST_LIMIT = 100  # rows per section of a customer's page, newest first
SEARCH_LIMIT = 50
MAX_QUERY_LENGTH = 320


@dataclass
class Section:
    rows: list[Any]
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
    invoices: Section
    credit_notes: Section
    notices: Section
    audit_events: Section
    currencies: list[str] = field(default_factory=list)
    plan_changes: PlanChangePanel | None = None  # C3/C4 (issue 16): its own section of the page


@dataclass
class PlanChangePanel:
    """C3/C4: the customer's live subscriptions with the change each has pending (a C4 upgrade waiting for the
    customer's action first), and the plans ops can schedule a change to."""

    live: list[Any]
    pending: dict[str, ShownChange]
    plans: list[PlanRow]


@dataclass
class PaymentView:
    payment: Any
    customer: Any
    subscription: Any
    refunds: list[Any]

    @property
    def left_to_refund(self) -> int:
        return self.payment.amount - self.payment.refunded_amount


async def _section(conn: AsyncConnection, section: str, customer_id: str) -> Section:
    rows, truncated = await queries.customer_section(conn, section, customer_id, LIST_LIMIT)
    return Section(rows, truncated)


async def find_customers(ctx: AppContext, query: str) -> list[Any]:
    """By id, external id, or email (case-insensitive, surrounding spaces ignored; one person may have several
    accounts, so an email can find several customers)."""
    query = query.strip()
    if not query or len(query) > MAX_QUERY_LENGTH:
        return []
    email = normalise_email(query)
    async with ctx.db.read() as conn:
        return await queries.find_customers(conn, query, email, SEARCH_LIMIT)


async def customer_overview(ctx: AppContext, principal: Principal, customer_id: str) -> CustomerOverview:
    """Everything ops need on one page. NotFound when there is no such customer."""
    async with ctx.db.read() as conn:
        customer = await customer_repo.get_visible(conn, principal, customer_id)
        cid = customer.id
        overview = CustomerOverview(
            customer=customer,
            subscriptions=await _section(conn, "subscriptions", cid),
            trials=await _section(conn, "trials", cid),
            payments=await _section(conn, "payments", cid),
            refunds=await _section(conn, "refunds", cid),
            credits=await _section(conn, "credits", cid),
            balances=await credit_repo.all_balances(conn, cid),
            invoices=await _section(conn, "invoices", cid),
            credit_notes=await _section(conn, "credit_notes", cid),
            notices=await _section(conn, "notices", cid),
            audit_events=await _section(conn, "audit_events", cid),
        )
        currencies = await queries.payment_currencies(conn, cid)
        overview.plan_changes = await _plan_change_panel(conn, overview.subscriptions)
    overview.currencies = sorted(set(currencies) | set(overview.balances)) or ["usd"]
    return overview


async def _plan_change_panel(conn: AsyncConnection, subscriptions: Section) -> PlanChangePanel:
    """C3/C4: what the page's plan change section shows (one read for the pending changes, one for the plans)."""
    live = [s for s in subscriptions.rows if is_live(s.status)]
    pending = await plan_change_repo.shown_of(conn, [s.id for s in live])
    return PlanChangePanel(live, pending, await plan_repo.all_active(conn) if live else [])


async def subscription_owner(ctx: AppContext, principal: Principal, subscription_id: str) -> str:
    """The id of the subscription's customer (the page a plan change form returns to). NotFound when none."""
    async with ctx.db.read() as conn:
        return (await subscription_repo.get_visible(conn, principal, subscription_id)).customer_id


async def payment_view(ctx: AppContext, principal: Principal, payment_id: str) -> PaymentView:
    """A payment with its customer, subscription and refunds. NotFound when there is no such payment."""
    async with ctx.db.read() as conn:
        payment = await payment_repo.get_visible(conn, principal, payment_id)
        customer = await customer_repo.get_visible(conn, principal, payment.customer_id)
        subscription = await queries.subscription(conn, payment.subscription_id)
        rows = await queries.refunds_of(conn, payment.id)
    return PaymentView(payment, customer, subscription, rows)


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
        return await console_repo.spend_nonce(
            conn,
            {
                "caller": f"console:{principal.caller_key}",
                "key": f"{purpose}:{nonce}",
                "request_hash": hashlib.sha256(request.encode()).hexdigest(),
                "status": KeyStatus.COMPLETED,
                "created_at": now,
                "expires_at": now + _dt.timedelta(hours=ctx.settings.idempotency_ttl_hours),
            },
        )
