"""R3: the company suspends, lifts a suspension, or terminates an account; nothing is refunded or exchanged."""

from __future__ import annotations

import datetime as _dt
import math

from sqlalchemy.ext.asyncio import AsyncConnection

from app.access.service import access_document, access_in
from app.audit.service import Event, changed, record
from app.auth import Principal
from app.context import AppContext
from app.credits import repository as credit_repo
from app.customers import repository
from app.customers import standing_repository as held
from app.customers.repository import CustomerRow
from app.customers.rules import require_standing
from app.customers.schemas import to_api
from app.errors import ChargeInProgress
from app.ids import new_id
from app.payments import repository as payment_repo
from app.payments.schemas import to_api as payment_to_api
from app.subscriptions.schemas import as_read as subscription_as_read
from app.trials import repository as trial_repo
from app.uow import UnitOfWork
from policies import (
    AccessDecision,
    AccessFacts,
    CustomerAction,
    CustomerStatus,
    EndedReason,
    TrialStatus,
    access,
    charge_due_at_lifting,
    termination_refund,
)


async def _set_status(
    uow: UnitOfWork,
    principal: Principal,
    customer_id: str,
    status: CustomerStatus,
    action: str,
    reason: str,
    *,
    refuse_while_charging: bool = False,
    recorded: bool = True,
) -> tuple[CustomerRow, _dt.datetime]:
    """R3: an active or suspended account's standing changes to `status` (`policies.customer_may`); the customer
    as it was, and the time. `recorded=False`: the caller records the change (`_record_status`) once its effects
    are written."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    principal.require_ops()
    customer = await repository.get_visible(conn, principal, customer_id, for_update=True)
    require_standing(CustomerAction.CHANGE_STANDING, customer.status)
    if refuse_while_charging:
        await _refuse_while_charging(conn, ctx, customer.id)
    await repository.update_fields(conn, customer.id, {"status": status, "updated_at": now})
    if recorded:
        await _record_status(conn, ctx, principal, customer, status, action, reason, now)
    return customer, now


async def _record_status(
    conn: AsyncConnection,
    ctx: AppContext,
    principal: Principal,
    customer: CustomerRow,
    status: CustomerStatus,
    action: str,
    reason: str,
    now: _dt.datetime,
    access_now: AccessDecision | None = None,
) -> None:
    """The audit row of a standing change and, when the status did change, its events: the customer, and the
    access it leaves (R3: none unless active; `access_now` for an account made active)."""
    events: list[Event] = []
    if customer.status != status:
        decision = access_now or access(AccessFacts(customer_status=status), now)
        events = [
            (action, to_api(changed(customer, status=status, updated_at=now))),
            ("access.changed", access_document(decision)),
        ]
    await record(
        conn,
        principal,
        action,
        now,
        subject_type="customer",
        subject_id=customer.id,
        customer_id=customer.id,
        reason=reason,
        policy_version=ctx.policies.at(now).version,
        data={"before": customer.status, "after": status},
        events=events,
    )


async def suspend(uow: UnitOfWork, principal: Principal, customer_id: str, reason: str) -> CustomerRow:
    """R3: no access until lifted; the period keeps running; no renewal or retry is charged until lifted. While a
    renewal or retry of the customer is being charged (a live claim holds the subscription), the suspension is
    refused with 409 `charge_in_progress` and Retry-After, as a cancellation is: the charge already started
    cannot be held any more."""
    await _set_status(
        uow,
        principal,
        customer_id,
        CustomerStatus.SUSPENDED,
        "customer.suspended",
        reason,
        refuse_while_charging=True,
    )
    return await repository.get_visible(uow.conn, principal, customer_id)


async def _refuse_while_charging(conn: AsyncConnection, ctx: AppContext, customer_id: str) -> None:
    """R3: the hold is taken when a batch claims work; a charge claimed before the suspension is in flight. The
    customer's live subscriptions are locked (after the customer, the order termination follows), so a batch
    claiming them now waits for this decision (or skips them, SKIP LOCKED) and one that claimed them has
    committed its claim."""
    claims = await held.lock_live_claims(conn, customer_id)
    held_until = max((c for c in claims if c is not None), default=None)
    wall = ctx.system_clock.wall()
    if held_until is not None and held_until > wall:
        wait = math.ceil((held_until - wall).total_seconds())
        raise ChargeInProgress(
            f"a charge for a subscription of customer {customer_id} is in flight; retry in {wait} s", retry_after=wait
        )


async def unsuspend(uow: UnitOfWork, principal: Principal, customer_id: str, reason: str) -> CustomerRow:
    """R3/B5: a renewal or retry that fell due while suspended was held (`policies.charge_held`): the next run of
    the jobs charges it, on the unchanged anchor. The lifting's time is recorded on the subscription whose charge
    it releases: if that charge fails, the retries count from it (`policies.retries_counted_from`)."""
    conn, ctx = uow.conn, uow.ctx
    customer, now = await _set_status(
        uow, principal, customer_id, CustomerStatus.ACTIVE, "customer.unsuspended", reason, recorded=False
    )
    access_now = None
    if customer.status == CustomerStatus.SUSPENDED:
        live = await held.lock_live_subscriptions(conn, customer.id)
        released = [
            s.id
            for s in live
            if charge_due_at_lifting(s.status, s.cancel_at_period_end, s.current_period_end, s.next_retry_at, now)
        ]
        if released:
            await held.release_charges(conn, released, now)
        access_now = await access_in(conn, ctx, customer.id, CustomerStatus.ACTIVE, now)  # what the lifting gives
    await _record_status(
        conn, ctx, principal, customer, CustomerStatus.ACTIVE, "customer.unsuspended", reason, now, access_now
    )
    return await repository.get_visible(conn, principal, customer_id)


async def terminate(uow: UnitOfWork, principal: Principal, customer_id: str, reason: str) -> CustomerRow:
    """R3: every subscription and trial ends at once; credits are forfeited; nothing is refunded; the account
    cannot buy again."""
    customer, now = await _set_status(
        uow, principal, customer_id, CustomerStatus.TERMINATED, "customer.terminated", reason
    )
    await end_everything(uow.conn, uow.ctx, principal, customer.id, now, EndedReason.TERMINATED, reason)
    return await repository.get_visible(uow.conn, principal, customer_id)


async def end_everything(
    conn: AsyncConnection,
    ctx: AppContext,
    principal: Principal,
    customer_id: str,
    now: _dt.datetime,
    ended_reason: EndedReason,
    reason: str | None,
) -> None:
    """End every live subscription and running trial of the customer now, forfeit credit, refund nothing."""
    ended = await held.end_live_subscriptions(conn, customer_id, ended_reason, now)
    # B1: an unpaid purchase's PaymentIntent is cancelled at the gateway by the `payment_cancellations` job.
    dropped = await payment_repo.fail_pending(
        conn, code=ended_reason, now=now, wall=ctx.system_clock.wall(), customer_id=customer_id
    )
    # A subscription that had started ends (one still waiting for its first payment never began: its payment
    # fails); the customer's access event is the standing change's.
    events = [("subscription.ended", subscription_as_read(s, now)) for s in ended if s.anchor_at is not None]
    events += [("payment.failed", payment_to_api(p)) for p in dropped]
    await trial_repo.end_running(conn, customer_id, TrialStatus.TERMINATED, now)
    for currency, balance in (await credit_repo.all_balances(conn, customer_id)).items():
        if balance > 0:
            await held.forfeit_credit(
                conn,
                new_id("cred"),
                customer_id,
                balance,
                currency,
                reason=reason,
                created_by=principal.sub,
                created_at=now,
            )
    await record(
        conn,
        principal,
        f"customer.{ended_reason}.effects",
        now,
        subject_type="customer",
        subject_id=customer_id,
        customer_id=customer_id,
        reason=reason,
        data={"refunded": termination_refund()},
        events=events,
    )
