"""Scheduled subscription work: period ends (C1), renewals (B2, B3), dunning retries (B5) and abandoned
purchases (B1). Work is claimed in batches: a short lease (`claimed_until`, taken under SKIP LOCKED on
PostgreSQL) keeps replicas off each other's subscriptions while the gateway is called outside any transaction.

Two kinds of lease, not to be confused:
- the liveness lease of a batch being charged (LIVENESS_LEASE, 15 s), extended FIRST_HEARTBEAT (1 s) after the
  claim and then every HEARTBEAT (5 s) while the replica charging it lives (`_Heartbeat`): a replica killed
  mid-batch (kill -9, a lost machine) lets go of its claims within seconds, and another run takes them over
  (charging again with the same idempotency keys, which never charges twice). A cancellation (or a suspension of
  the customer) is refused with 409 only while a live claim holds the subscription, so for at most that long
  after such a crash;
- the back-off of a charge the gateway refused itself (REFUSED_BACKOFF, 2 minutes): a deliberate pause, so a
  request or configuration problem is not hammered and does not stand in front of the rest of the due work."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.access.service import access_changed
from app.audit.service import SYSTEM, audit_row, changed, record_many
from app.context import AppContext
from app.credits import repository as credit_repo
from app.gateways.base import ChargeResult, GatewayError, withdrawn_charges
from app.notices import templates
from app.notices.service import NewNotice, create_notices
from app.payments import repository as payment_repo
from app.payments import steps
from app.payments.corrections import cancel_at_gateway
from app.payments.repository import PaymentRow
from app.payments.schemas import to_api as payment_to_api
from app.plan_changes import service as plan_change_service
from app.subscriptions import charging
from app.subscriptions import repository as subscription_repo
from app.subscriptions.repository import DueSubscription, EndingSubscription
from app.subscriptions.schemas import as_read
from app.uow import UnitOfWork, unit_of_work
from policies import (
    AccessFacts,
    CustomerStatus,
    EndedReason,
    PaymentPurpose,
    PaymentStatus,
    SubscriptionStatus,
    charge_held,
    period_end_action,
    renewal_due,
)

log = logging.getLogger("billing.jobs")
LIVENESS_LEASE = _dt.timedelta(seconds=15)  # a batch being charged, while its replica lives (the heartbeat)
HEARTBEAT = _dt.timedelta(seconds=5)
FIRST_HEARTBEAT = _dt.timedelta(seconds=1)  # soon after the claim: a lost answer still leaves time to recover
REFUSED_BACKOFF = _dt.timedelta(minutes=2)  # a charge the gateway refused itself waits this long
INCOMPLETE_EXPIRES_AFTER = _dt.timedelta(hours=23)  # as Stripe expires an unpaid first invoice


async def end_canceled_subscriptions(ctx: AppContext, now: _dt.datetime) -> int:
    """C1: a cancellation takes effect at the period end: the subscription ends, no charge is made."""
    wall = ctx.system_clock.wall()
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        claimed = await subscription_repo.claim_period_ends(
            conn, now, wall, limit=ctx.settings.job_batch_size, postgres=ctx.db.is_postgres
        )
        due = [
            s
            for s in claimed
            if s.current_period_end is not None
            and period_end_action(s.status, s.cancel_at_period_end, s.current_period_end, now, s.canceled_at) == "end"
        ]
        if not due:
            return 0
        await subscription_repo.end_at_period_end(conn, [s.id for s in due])
        items = []
        for s in due:
            subject, body = templates.subscription_ended(s.plan_name, EndedReason.CANCELED)
            items.append(NewNotice(s.customer_id, "subscription_ended", f"subscription_ended:{s.id}", subject, body))
        await create_notices(conn, items, now, wall)
        await record_many(
            conn,
            [
                audit_row(
                    SYSTEM,
                    "subscription.ended",
                    now,
                    subject_type="subscription",
                    subject_id=s.id,
                    customer_id=s.customer_id,
                    data={"reason": EndedReason.CANCELED},
                    policy_version=s.policy_version,
                    events=_ended_events(s, now),
                )
                for s in due
            ],
        )
    return len(due)


def _ended_events(sub: EndingSubscription, now: _dt.datetime) -> list[Any]:
    """C1: the subscription, ended at its period end, and the access it leaves (T6: no trial runs beside a paid
    subscription), unless the customer's standing decides it."""
    ended = changed(
        sub,
        status=SubscriptionStatus.CANCELED,
        ended_at=sub.current_period_end,
        ended_reason=EndedReason.CANCELED,
    )
    events: list[Any] = [("subscription.ended", as_read(ended, now))]
    if sub.customer_status == CustomerStatus.ACTIVE:
        events.append(access_changed(AccessFacts(customer_status=CustomerStatus.ACTIVE), now))
    return events


class _Heartbeat:
    """Extends a batch's liveness lease while the batch is being charged: soon after the claim (FIRST_HEARTBEAT),
    then every HEARTBEAT; `stop` ends it between two extensions (never in the middle of one). Meanwhile the batch is
    noted as in flight (`ctx.shutdown`: what a shutdown past its grace period cuts off).

    `leases` are the values the held rows may hold: one, except after an extension whose answer was lost (the
    UPDATE may or may not have taken effect), when both the old and the new value are matched until an extension
    answers. Each extension returns the rows it extended: a subscription no longer held (its lease ran out and
    another run may have taken it over) is logged and its charge, if not started yet, is not started
    (`withdrawn`: its idempotency key, see `app.gateways.base.withdrawn_charges`)."""

    def __init__(self, ctx: AppContext, keys: dict[str, str], lease: _dt.datetime, purpose: str) -> None:
        self.ctx, self.keys, self.leases = ctx, keys, {lease}
        self.withdrawn: set[str] = set()
        ids = list(keys)
        self._held = set(ids)
        shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        self._noted = ctx.shutdown.begin(f"{purpose} charges of {len(ids)} subscriptions ({shown})")
        self._stopped = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        wait = FIRST_HEARTBEAT
        while self._held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), wait.total_seconds())
            if self._stopped.is_set():
                return
            wait = HEARTBEAT
            extended = self.ctx.system_clock.wall() + LIVENESS_LEASE
            try:
                async with self.ctx.db.autocommit() as conn:
                    kept = await subscription_repo.extend_leases(
                        conn, sorted(self._held), sorted(self.leases), extended
                    )
            except Exception:
                self.leases.add(extended)
                log.exception("renewing a batch's lease failed")
                continue
            self.leases = {extended}
            lost = self._held - kept
            if lost:
                # Given back by a settlement (a webhook), or the lease ran out and another run may hold them: no
                # charge not started yet is started for them; one in flight is recorded whatever its outcome.
                self._held -= lost
                self.withdrawn.update(self.keys[i] for i in lost)
                log.warning(
                    "a batch being charged no longer holds %d of its subscriptions; their charges not "
                    "started yet are left to the run that holds them",
                    len(lost),
                    extra={"subscriptions": sorted(lost)},
                )

    async def stop(self) -> set[_dt.datetime]:
        """Stops the extensions; returns the values the rows still held may hold."""
        self._stopped.set()
        try:
            await self._task
        finally:
            self.ctx.shutdown.end(self._noted)
        return self.leases


async def _charge_batch(
    ctx: AppContext, now: _dt.datetime, is_due: Callable[[DueSubscription, _dt.datetime], bool], purpose: PaymentPurpose
) -> int:
    """A renewal or retry batch, in the three steps of app/payments/steps.py."""
    batch = await steps.reserve(ctx, _reserve_batch, is_due, purpose, now=now)
    if batch is None:
        return 0
    answered, leases = await _charge_reserved(ctx, batch)
    outcomes = [(payment, result) for (payment, _), result in answered if isinstance(result, ChargeResult)]
    # A charge the gateway refused itself (not the card) is held back for REFUSED_BACKOFF: no batch claims it
    # again until then (so refused charges never stand in front of the rest of the due work), then a later run
    # tries it again with the same key.
    refused = {payment.subscription_id for (payment, _), result in answered if isinstance(result, GatewayError)}
    if refused:
        ctx.metrics.gateway_refusals.inc(len(refused))  # alerted on (deploy/prometheus/alerts.yml)
    # One unit of work records the whole batch; were it lost, the charges are repeated with their keys.
    await steps.settle(ctx, _settle_batch, batch, outcomes, refused, leases, now=now)
    return len(outcomes)


@dataclass(frozen=True)
class _Batch:
    ids: list[str]  # the subscriptions claimed
    lease: _dt.datetime  # the liveness lease they were claimed until
    pending: list[tuple[PaymentRow, str]]  # (pending payment, gateway customer) to charge
    keys: dict[str, str]  # each claimed subscription's payment idempotency key (see _Heartbeat)
    purpose: str


async def _reserve_batch(
    uow: UnitOfWork, is_due: Callable[[DueSubscription, _dt.datetime], bool], purpose: PaymentPurpose
) -> _Batch | None:
    """Step 1: claim the due subscriptions under a liveness lease and write their pending payments (a payment
    left pending by a crash, with the same key, is reused); None when nothing is due."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    wall = uow.wall()
    # R3: nothing is charged while the customer is suspended; the charge waits for the lifting.
    claimed = await subscription_repo.claim_due_charges(
        conn, purpose, now, wall, limit=ctx.settings.job_batch_size, postgres=ctx.db.is_postgres
    )
    due = [s for s in claimed if is_due(s, now) and not charge_held(s.customer_status)]
    if not due:
        return None
    lease = wall + LIVENESS_LEASE
    await subscription_repo.lease(conn, [s.id for s in due], lease)
    if purpose == PaymentPurpose.RENEWAL:  # C3: a change due at this period end moves it to the new plan first
        due = await plan_change_service.apply_due_changes(uow, due)
    credit: dict[str, int] = {}
    for currency in {s.currency for s in due}:
        credit.update(
            await credit_repo.balances(conn, [s.customer_id for s in due if s.currency == currency], currency)
        )
    rows = [
        charging.new_payment(
            ctx,
            s,
            s,
            purpose=purpose,
            period_index=s.period_index + 1,
            attempt=s.failed_attempts + 1,
            now=now,
            credit_balance=credit[s.customer_id],
        )
        for s in due
    ]
    # A payment left pending by a crash has the same key: it is reused, and charged again with that key.
    keyed = await payment_repo.insert_reusing_keys(conn, rows)
    work = [(s, keyed[r["idempotency_key"]]) for s, r in zip(due, rows, strict=True)]
    pending = [
        (payment, sub.gateway_customer_id or "") for sub, payment in work if payment.status == PaymentStatus.PENDING
    ]
    return _Batch(
        [s.id for s in due],
        lease,
        pending,
        {payment.subscription_id: payment.idempotency_key for _, payment in work},
        purpose,
    )


async def _charge_reserved(ctx: AppContext, batch: _Batch) -> tuple[list[Any], list[_dt.datetime]]:
    """Step 2: charge the batch's pending payments in one call to the gateway, outside any transaction, while a
    heartbeat keeps the claims alive; the (payment, answer) pairs and the lease values the rows still held may hold
    afterwards. A charge whose claim the heartbeat found lost is not started (`withdrawn_charges`)."""
    # The claims live as long as this replica does (and as long as it still holds them, see _Heartbeat).
    heartbeat = _Heartbeat(ctx, batch.keys, batch.lease, batch.purpose)
    withdrawn = withdrawn_charges.set(heartbeat.withdrawn)
    try:
        answers = await steps.call(charging.charge_many, ctx, batch.pending)
    finally:
        withdrawn_charges.reset(withdrawn)
        leases = sorted(await heartbeat.stop())
    return list(zip(batch.pending, answers, strict=True)), leases


async def _settle_batch(
    uow: UnitOfWork,
    batch: _Batch,
    outcomes: list[tuple[PaymentRow, ChargeResult]],
    refused: set[str],
    leases: list[_dt.datetime],
) -> None:
    """Step 3: record the answers (set-based, `charging.settle_many`) and give the claims back."""
    conn = uow.conn
    await charging.settle_many(conn, uow.ctx, outcomes, uow.now)
    # The lease is given back wherever settling did not give it back (no answer from the gateway, a payment
    # settled already), except for refused charges (above): no charge is in flight for those any more, so a
    # cancellation is not held up (C1), and a later run charges again with the same key.
    await subscription_repo.move_leases(conn, [i for i in batch.ids if i not in refused], leases, None)
    if refused:
        await subscription_repo.move_leases(conn, sorted(refused), leases, uow.wall() + REFUSED_BACKOFF)


def _renewal_due(s: DueSubscription, at: _dt.datetime) -> bool:
    return s.current_period_end is not None and renewal_due(
        s.status, s.cancel_at_period_end, s.current_period_end, at, s.canceled_at
    )


def _retry_due(s: DueSubscription, at: _dt.datetime) -> bool:
    return s.status == SubscriptionStatus.PAST_DUE and s.next_retry_at is not None and s.next_retry_at <= at


async def renew_subscriptions(ctx: AppContext, now: _dt.datetime) -> int:
    """B2/B3: at each period end an active subscription is charged the locked price off-session for the next
    period, unless a cancellation asked before that period end is scheduled (C1; one asked after it, before this
    job ran, ends the renewed period)."""
    return await _charge_batch(ctx, now, _renewal_due, PaymentPurpose.RENEWAL)


async def retry_failed_renewals(ctx: AppContext, now: _dt.datetime) -> int:
    """B5: a past-due subscription is charged again on its retry dates, with its current payment method."""
    return await _charge_batch(ctx, now, _retry_due, PaymentPurpose.RETRY)


async def expire_incomplete_purchases(ctx: AppContext, now: _dt.datetime) -> int:
    """B1: a purchase whose payment never completes grants nothing and, after a day, frees the live slot."""
    wall = ctx.system_clock.wall()
    async with unit_of_work(ctx, now=now) as uow:
        conn = uow.conn
        due = await subscription_repo.claim_expired_purchases(
            conn, now - INCOMPLETE_EXPIRES_AFTER, wall, limit=ctx.settings.job_batch_size, postgres=ctx.db.is_postgres
        )
        if not due:
            return 0
        ids = [s.id for s in due]
        await subscription_repo.end_unpaid(conn, ids, now, release=False)
        # B1: a PaymentIntent still waiting for the customer is cancelled at the gateway once this commits.
        expired = await payment_repo.fail_pending(conn, code="expired", now=now, wall=wall, subscription_ids=ids)
        failed: dict[str, list[Any]] = {}  # B1: an expired purchase's payment failed; the subscription never began
        for p in expired:
            failed.setdefault(p.subscription_id, []).append(("payment.failed", payment_to_api(p)))
        await record_many(
            conn,
            [
                audit_row(
                    SYSTEM,
                    "subscription.purchase_expired",
                    now,
                    subject_type="subscription",
                    subject_id=s.id,
                    customer_id=s.customer_id,
                    policy_version=s.policy_version,
                    events=failed.get(s.id, ()),
                )
                for s in due
            ],
        )
    await cancel_at_gateway(ctx, payment_ids=[p.id for p in expired if p.gateway_cancel_due_at is not None])
    return len(due)
