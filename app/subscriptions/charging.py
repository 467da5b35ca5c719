"""Charging a subscription, shared by the purchase, the renewal and retry jobs, and payment webhooks.

Every charge is a `payments` row created *before* the gateway is called, with an idempotency key derived from
the subscription, the period and the attempt. The gateway call happens outside any transaction; its outcome is
recorded afterwards, only while the payment is still pending. So a crash anywhere leaves a pending payment whose
charge is repeated with the same key (returning the first result, never charging twice), and a late or repeated
outcome (webhook, second replica) finds the payment settled and changes nothing: state only moves forward.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy.ext.asyncio import AsyncConnection

from app.access.queries import SubscriptionAccess
from app.access.service import access_changed, facts_of
from app.audit.service import SYSTEM, AuditRow, audit_row, changed, event_row, record, record_many
from app.auth import Principal
from app.context import AppContext
from app.gateways.base import ChargeOutcome, ChargeRequest, ChargeResult
from app.ids import new_id
from app.invoices.service import invoice_payments
from app.notices import templates
from app.notices.service import RECEIPT_KEY, NewNotice, create_notices
from app.payments import repository as payment_repo
from app.payments.repository import PaymentRow
from app.payments.schemas import to_api as payment_to_api
from app.refunds.service import book_correction
from app.subscriptions import repository as subscription_repo
from app.subscriptions.repository import NamedSubscription, PaymentKey, SettlingSubscription, SubscriptionRow
from app.subscriptions.schemas import as_read
from app.trials.identity import person_identities
from app.trials.schemas import to_api as trial_to_api
from app.trials.service import mark_person
from policies import (
    CreditKind,
    CustomerStatus,
    Interval,
    PaymentPurpose,
    PaymentStatus,
    SubscriptionStatus,
    TrialStatus,
    charge_breakdown,
    forfeit_at,
    late_success,
    period_bounds,
)
from policies.settlement import (
    Settlement,
    failure_code,
    paid_period,
    purchase_failure_ends,
    renewal_failure,
    renews,
    settlement,
)


class BillingCountry(Protocol):
    """What a charge needs of its customer (P2: the tax of the billing country)."""

    country: str | None


def payment_key(subscription_id: str, period_index: int, attempt: int) -> str:
    return f"{subscription_id}:period-{period_index}:attempt-{attempt}"


def new_payment(
    ctx: AppContext,
    sub: SubscriptionRow,
    customer: BillingCountry,
    *,
    purpose: str,
    period_index: int,
    attempt: int,
    now: _dt.datetime,
    credit_balance: int = 0,
) -> dict[str, Any]:
    """B3/P2/R2: the locked price plus the tax of the customer's billing country, less the account credit, in
    integer minor units."""
    policy = ctx.policies.at(now)
    breakdown = charge_breakdown(
        sub.price_amount, customer.country or "", policy, credit_balance=max(0, credit_balance)
    )
    return {
        "id": new_id("pay"),
        "customer_id": sub.customer_id,
        "subscription_id": sub.id,
        "purpose": purpose,
        "period_index": period_index,
        "period_start": None,
        "period_end": None,
        "price_amount": breakdown.price,
        "tax_amount": breakdown.tax,
        "credit_applied": breakdown.credit_applied,
        "amount": breakdown.card_amount,
        "currency": sub.currency,
        "status": PaymentStatus.PENDING,
        "failure_code": None,
        "refunded_amount": 0,
        "payment_method": sub.payment_method,
        "gateway": ctx.gateway.name,
        "gateway_payment_id": None,
        "client_secret": None,
        "invoice_id": None,
        "idempotency_key": payment_key(sub.id, period_index, attempt),
        "policy_version": policy.version,
        "created_at": now,
        "updated_at": now,
    }


def _request(payment: PaymentRow, gateway_customer: str, off_session: bool) -> ChargeRequest:
    return ChargeRequest(
        amount=payment.amount,
        currency=payment.currency,
        payment_method=payment.payment_method,
        customer_id=payment.customer_id,
        gateway_customer=gateway_customer,
        off_session=off_session,
        idempotency_key=payment.idempotency_key,
        description=f"subscription {payment.subscription_id}",
    )


def _nothing_to_charge(payment: PaymentRow) -> ChargeResult:
    return ChargeResult(status="succeeded", payment_id=f"free_{payment.id}")


async def charge(ctx: AppContext, payment: PaymentRow, gateway_customer: str, *, off_session: bool) -> ChargeResult:
    """Call the gateway for a pending payment (outside any transaction). Nothing to charge: succeeded at once."""
    if payment.amount == 0:
        return _nothing_to_charge(payment)
    return await ctx.gateway.charge(_request(payment, gateway_customer, off_session))


async def charge_many(ctx: AppContext, work: Sequence[tuple[PaymentRow, str]]) -> list[ChargeOutcome]:
    """`charge` off-session for a batch of (pending payment, gateway customer) pairs, in one call to the gateway
    (`PaymentGateway.charge_many`): the outcomes in order."""
    billable = [(payment, customer) for payment, customer in work if payment.amount > 0]
    answers = await ctx.gateway.charge_many([_request(p, c, True) for p, c in billable]) if billable else []
    if len(answers) != len(billable):
        raise RuntimeError(f"the gateway answered {len(answers)} of {len(billable)} charges")
    outcomes = iter(answers)
    return [next(outcomes) if payment.amount > 0 else _nothing_to_charge(payment) for payment, _ in work]


async def lock_subscription_of_payment(
    conn: AsyncConnection, *, by: PaymentKey, value: str
) -> subscription_repo.PaymentsSubscription | None:
    """Lock the subscription of the payment whose `by` ("id", "gateway_payment_id" or "idempotency_key") is
    `value` and return it (`locked_payment_id` names the payment), or None when no payment matches. Lock the
    payment next (`lock_payment_of`) before reading or writing it."""
    return await subscription_repo.lock_of_payment(conn, by=by, value=value)


async def lock_payment_of(conn: AsyncConnection, sub: subscription_repo.PaymentsSubscription) -> PaymentRow:
    """The payment of a subscription row returned by `lock_subscription_of_payment`, locked."""
    return await payment_repo.lock(conn, sub.locked_payment_id)


async def lock_for_settlement(
    conn: AsyncConnection, *, by: PaymentKey, value: str
) -> tuple[subscription_repo.PaymentsSubscription, PaymentRow] | None:
    """Lock the subscription of the payment whose `by` ("id", "gateway_payment_id" or "idempotency_key") is
    `value`, then the payment; returns (subscription, payment), or None when no payment matches."""
    sub = await lock_subscription_of_payment(conn, by=by, value=value)
    return None if sub is None else (sub, await lock_payment_of(conn, sub))


async def settle(
    conn: AsyncConnection,
    ctx: AppContext,
    payment_id: str,
    result: ChargeResult,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
) -> str:
    """Record a gateway outcome on a payment that is still pending; returns the payment's status afterwards.

    Locks the subscription, then the payment: the one order every writer of both follows (cancel, termination,
    erasure), so a settlement racing them waits instead of deadlocking."""
    locked = await lock_for_settlement(conn, by="id", value=payment_id)
    if locked is None:
        raise LookupError(f"no payment {payment_id!r}")
    sub, payment = locked
    return await settle_locked(conn, ctx, payment, result, now, actor, sub=sub)


async def settle_locked(
    conn: AsyncConnection,
    ctx: AppContext,
    payment: PaymentRow,
    result: ChargeResult,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
    *,
    sub: SettlingSubscription | None = None,
) -> str:
    """`settle`, for a payment locked by `lock_for_settlement` (`sub`: the subscription it returned, if at hand).
    What the outcome does is `policies.settlement`'s answer (B1/B5); an upgrade's charge settles as
    app/plan_changes says (C4)."""
    if payment.purpose == PaymentPurpose.UPGRADE:
        from app.plan_changes.service import settle_upgrade  # imported here: that module builds on this one

        if sub is None:
            sub = await subscription_repo.lock(conn, payment.subscription_id)
        return await settle_upgrade(conn, ctx, payment, result, now, actor, sub)
    match settlement(payment.status, payment.purpose, result.status):
        case Settlement.UNCHANGED:
            return payment.status  # settled already (a repeat, a second replica, a late webhook): forward only
        case Settlement.SUCCEED | Settlement.LATE_SUCCESS:
            # LATE_SUCCESS: the gateway took the money for a charge we stopped waiting for (the subscription was
            # ended while it was in flight): the books record what happened; it grants nothing (`late_success`).
            await record_success(conn, ctx, payment, result.payment_id, now, actor, sub=sub)
            return PaymentStatus.SUCCEEDED
        case Settlement.AWAIT_CUSTOMER:
            await payment_repo.await_customer(conn, payment.id, result.payment_id, result.client_secret, now)
            await subscription_repo.lease(conn, [payment.subscription_id], None)
            return PaymentStatus.PENDING
    # Off-session, a payment needing the customer's action cannot complete: it counts as a failure (B5).
    code = failure_code(result.status, result.decline_code)
    await failed(conn, ctx, payment, result.payment_id or None, code, now, actor, sub=sub)
    return PaymentStatus.FAILED


def _renews(sub: SettlingSubscription, payment: PaymentRow) -> bool:
    """B2/B5/C1: `policies.renews` for a locked subscription and its payment."""
    return renews(
        sub.status,
        sub.period_index,
        sub.cancel_at_period_end,
        sub.canceled_at,
        sub.current_period_end,
        payment.period_index,
        payment.created_at,
    )


async def settle_many(
    conn: AsyncConnection,
    ctx: AppContext,
    outcomes: list[tuple[PaymentRow, ChargeResult]],
    now: _dt.datetime,
    actor: Principal = SYSTEM,
) -> dict[str, str]:
    """`settle` for a batch of (payment, gateway outcome) pairs of renewals and retries, with one statement per
    kind of write instead of a dozen per payment; returns each payment's status afterwards, by payment id.

    Locks every subscription of the batch, then every payment, each in id order (the order of
    `lock_for_settlement`).
    The common case, a charge that succeeded for the period next due of an active or past-due subscription, is
    written set-based: exactly what `record_success` writes for it (the subscription moves to the period paid
    for, the payment records it, the credit spent, the receipt notice under its key, the audit event). Anything
    else (a failure, a payment settled already, a subscription ended or renewed meanwhile) goes through
    `settle_locked`, one by one, under the locks already held."""
    if not outcomes:
        return {}
    # A payment's subscription never changes: the rows read before the gateway call name it.
    subs = await subscription_repo.lock_many(conn, list({payment.subscription_id for payment, _ in outcomes}))
    locked = await payment_repo.lock_many(conn, list({payment.id for payment, _ in outcomes}))
    statuses: dict[str, str] = {}
    slow = []
    sub_rows: list[dict[str, Any]] = []
    payment_rows: list[dict[str, Any]] = []
    credit_rows: list[dict[str, Any]] = []
    receipts: list[tuple[SettlingSubscription, PaymentRow, _dt.datetime, _dt.datetime]] = []
    audit_rows: list[AuditRow] = []
    paid: list[dict[str, Any]] = []  # each payment as its event shows it, to name its invoice (I1)
    wall = ctx.system_clock.wall()
    for stale, result in outcomes:
        payment = locked[stale.id]
        sub = subs[payment.subscription_id]
        if not (
            settlement(payment.status, payment.purpose, result.status) is Settlement.SUCCEED
            and payment.purpose != PaymentPurpose.PURCHASE
            and _renews(sub, payment)
        ):
            slow.append((payment, result))
            continue
        # B2/B4/B5: the next period, counted from the acquisition anchor (a late retry does not move it).
        # (`policies.paid_period` says the same; the batch calls `period_bounds` itself, as it did before, to
        # build nothing per row but what it writes: `renews` implies a running subscription, so an anchor.)
        start, end = period_bounds(
            cast(_dt.datetime, sub.anchor_at),
            cast(Interval, sub.interval),
            payment.period_index - sub.anchor_index,  # C3: counted from the anchor
        )
        sub_rows.append(subscription_repo.renewal_params(sub.id, payment.period_index, start, end, payment.tax_amount))
        payment_rows.append(payment_repo.succeeded_params(payment.id, result.payment_id, start, end, now))
        if payment.credit_applied:  # R2: the credit is spent only by a charge that succeeded
            credit_rows.append(credit_spend(payment, now))
        receipts.append((sub, payment, start, end))
        paid.append(
            payment_to_api(
                changed(
                    payment,
                    status=PaymentStatus.SUCCEEDED,
                    gateway_payment_id=result.payment_id,
                    period_start=start,
                    period_end=end,
                    client_secret=None,
                    updated_at=now,
                )
            )
        )
        renewed = changed(
            sub,
            status=SubscriptionStatus.ACTIVE,
            period_index=payment.period_index,
            current_period_start=start,
            current_period_end=end,
            tax_amount=payment.tax_amount,
            failed_attempts=0,
            next_retry_at=None,
            claimed_until=None,
        )
        audit_rows.append(
            _success_event(
                actor,
                "subscription.renewed",
                now,
                sub,
                payment,
                start,
                end,
                events=(_paid_events(ctx, "subscription.renewed", sub, renewed, paid[-1], now)),
            )
        )
        statuses[payment.id] = PaymentStatus.SUCCEEDED
    if sub_rows:
        await subscription_repo.renew(conn, sub_rows)
        await payment_repo.mark_succeeded(conn, payment_rows)
        if credit_rows:
            await payment_repo.spend_credit(conn, credit_rows)
        # I1: the batch's invoices, numbered at once; their PDFs are rendered after the batch (app.invoices.jobs)
        invoiced = await invoice_payments(conn, [p["id"] for p in paid], now, ctx.policies, render_pdf=False)
        for row, payment_now in zip(audit_rows, paid, strict=True):
            if (invoice := invoiced.get(payment_now["id"])) is not None:
                payment_now["invoice_id"] = invoice["id"]
                row.events.append(event_row("invoice.issued", row["customer_id"], now, invoice))
        notice_items = [
            _receipt(sub, payment, start, end, invoiced.get(payment.id)) for sub, payment, start, end in receipts
        ]
        await create_notices(conn, notice_items, now, wall)
        await record_many(conn, audit_rows)
    for payment, result in slow:
        statuses[payment.id] = await settle_locked(
            conn, ctx, payment, result, now, actor, sub=subs[payment.subscription_id]
        )
    return statuses


def credit_spend(payment: PaymentRow, now: _dt.datetime) -> dict[str, Any]:
    """R2: the ledger entry of the credit a succeeded charge spent (`payment.credit_applied`)."""
    return {
        "id": new_id("cred"),
        "customer_id": payment.customer_id,
        "kind": CreditKind.SPEND,
        "amount": -payment.credit_applied,
        "currency": payment.currency,
        "reason": None,
        "created_by": "system",
        "payment_id": payment.id,
        "policy_version": payment.policy_version,
        "created_at": now,
    }


# What a successful charge writes about itself, the same from `record_success` and `settle_many`.
def _receipt(
    sub: NamedSubscription,
    payment: PaymentRow,
    start: _dt.datetime,
    end: _dt.datetime,
    invoice: dict[str, Any] | None,
) -> NewNotice:
    """The `receipt` notice, naming the payment's invoice (I1; its PDF is attached when it is mailed)."""
    subject, body = templates.receipt(
        sub.plan_name,
        payment.price_amount,
        payment.tax_amount,
        payment.credit_applied,
        payment.amount,
        payment.currency,
        start,
        end,
        None if invoice is None else invoice["number"],
    )
    return NewNotice(payment.customer_id, "receipt", f"{RECEIPT_KEY}{payment.id}", subject, body)


def _success_event(
    actor: Principal,
    action: str,
    now: _dt.datetime,
    sub: SubscriptionRow,
    payment: PaymentRow,
    start: _dt.datetime,
    end: _dt.datetime,
    events: list[Any],
) -> AuditRow:
    return audit_row(
        actor,
        action,
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=payment.policy_version,
        data={
            "payment_id": payment.id,
            "amount": payment.amount,
            "tax": payment.tax_amount,
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
        },
        events=events,
    )


def _paid_events(
    ctx: AppContext,
    type_: str,
    before: SettlingSubscription,
    after: SubscriptionAccess,
    payment: dict[str, Any],
    now: _dt.datetime,
) -> list[Any]:
    """A charge that started (`subscription.activated`) or renewed a subscription (`before`, as locked; `after`,
    as written): the subscription, the payment, and the access when its answer changes (a purchase gives it; a
    past_due subscription paid is active again, to its new period end)."""
    events: list[Any] = [(type_, as_read(after, now)), ("payment.succeeded", payment)]
    if before.customer_status == CustomerStatus.ACTIVE and (
        before.status != SubscriptionStatus.ACTIVE or type_ == "subscription.activated"
    ):
        events.append(access_changed(facts_of(ctx, CustomerStatus.ACTIVE, None, after, now), now))
    return events


async def record_purchase_paid(
    conn: AsyncConnection,
    ctx: AppContext,
    sub: subscription_repo.PaymentsSubscription,
    gateway_payment_id: str,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
) -> PaymentRow | None:
    """The gateway reports the purchase payment of an incomplete subscription paid (a signed
    `payment_intent.succeeded`), with `sub` locked by `lock_subscription_of_payment`: what `settle` records for
    it, the payment locked, checked still pending and written succeeded by one statement. Returns that payment,
    or None when it is not a pending purchase of an incomplete subscription any more: nothing is written then,
    and the caller settles it the general way (`lock_payment_of`, then `settle_locked`)."""
    if sub.status != SubscriptionStatus.INCOMPLETE:
        return None
    # B1/B4: the periods are anchored at the payment
    paid = paid_period(PaymentPurpose.PURCHASE, now, sub.interval, None, 0)
    payment = await payment_repo.mark_purchase_paid(
        conn, sub.locked_payment_id, gateway_payment_id, paid.start, paid.end, now
    )
    if payment is not None:
        await record_success(conn, ctx, payment, gateway_payment_id, now, actor, sub=sub, payment_recorded=True)
    return payment


async def record_success(
    conn: AsyncConnection,
    ctx: AppContext,
    payment: PaymentRow,
    gateway_payment_id: str,
    now: _dt.datetime,
    actor: Principal,
    *,
    sub: SettlingSubscription | None = None,
    payment_recorded: bool = False,
) -> None:
    """A charge succeeded (now, or late through a webhook): the subscription starts (purchase) or moves to the
    period paid for (renewal, retry). A payment for a period that is no longer the next one (the subscription
    ended, or that period was paid by another charge) is recorded for the books and for ops, and grants nothing.

    `sub`: the payment's subscription as `lock_for_settlement` returned it (locked in this transaction);
    without it, it is locked here. `payment_recorded`: `record_purchase_paid` wrote the payment already."""
    if sub is None:
        sub = await subscription_repo.lock(conn, payment.subscription_id)
    # B1/R2: what it buys (a purchase: the start of a subscription still incomplete; a renewal: the next period).
    outcome = late_success(
        payment.purpose,
        sub.status,
        payment.purpose != PaymentPurpose.PURCHASE and _renews(sub, payment),
        payment.amount,
        payment.refunded_amount,
    )
    if outcome.action != "apply":
        await payment_repo.mark_succeeded_without_effect(conn, payment.id, gateway_payment_id, now)
        invoice = (await invoice_payments(conn, [payment.id], now, ctx.policies)).get(payment.id)  # I1: the books
        await record(
            conn,
            actor,
            "payment.succeeded_without_effect",
            now,
            subject_type="payment",
            subject_id=payment.id,
            customer_id=payment.customer_id,
            policy_version=payment.policy_version,
            data={
                "subscription_status": sub.status,
                "period_index": payment.period_index,
                "correction": outcome.action,
            },
            events=[
                (
                    "payment.succeeded",
                    payment_to_api(
                        changed(
                            payment,
                            status=PaymentStatus.SUCCEEDED,
                            gateway_payment_id=gateway_payment_id,
                            updated_at=now,
                            invoice_id=None if invoice is None else invoice["id"],
                        )
                    ),
                ),
                *([] if invoice is None else [("invoice.issued", invoice)]),
            ],
        )
        if outcome.action == "refund":  # B1: it bought nothing; refunded in full, the customer told
            await book_correction(conn, ctx, sub, payment, outcome, now)
        return
    forfeited: list[Any] = []
    # B1: a purchase starts the subscription at its first successful payment, its periods anchored there (B4);
    # B2/B4/B5: a renewal or retry pays the next period, counted from the acquisition anchor.
    paid = paid_period(payment.purpose, now, sub.interval, sub.anchor_at, payment.period_index, sub.anchor_index)
    start, end = paid.start, paid.end
    if payment.purpose == PaymentPurpose.PURCHASE:
        if sub.has_running_trial:
            forfeited = await _forfeit_trials(conn, payment.customer_id, now)  # T6
        # T5: a paid subscription bars a later trial (the payment's customer is the subscription's).
        await mark_person(
            conn, person_identities(ctx.settings.identity_key, payment.customer_id, [sub.customer_email]), "paid", now
        )
    started = await subscription_repo.start(
        conn,
        sub.id,
        anchor=paid.anchor,
        index=paid.index,
        period_start=start,
        period_end=end,
        tax_amount=payment.tax_amount,
    )
    if not payment_recorded:
        await payment_repo.mark_succeeded(
            conn, payment_repo.succeeded_params(payment.id, gateway_payment_id, start, end, now)
        )
        payment_now = payment_to_api(
            changed(
                payment,
                status=PaymentStatus.SUCCEEDED,
                gateway_payment_id=gateway_payment_id,
                period_start=start,
                period_end=end,
                client_secret=None,
                updated_at=now,
            )
        )
    else:
        payment_now = payment_to_api(payment)
    invoice = (await invoice_payments(conn, [payment.id], now, ctx.policies)).get(payment.id)  # I1
    if invoice is not None:
        payment_now["invoice_id"] = invoice["id"]
    if payment.credit_applied:  # R2: the credit is spent only by a charge that succeeded
        await payment_repo.spend_credit(conn, [credit_spend(payment, now)])
    await create_notices(conn, [_receipt(sub, payment, start, end, invoice)], now, ctx.system_clock.wall())
    action = "subscription.activated" if payment.purpose == PaymentPurpose.PURCHASE else "subscription.renewed"
    events = [("trial.forfeited", trial_to_api(trial)) for trial in forfeited]
    events += _paid_events(ctx, action, sub, started, payment_now, now)
    if invoice is not None:
        events.append(("invoice.issued", invoice))
    await record_many(conn, [_success_event(actor, action, now, sub, payment, start, end, events)])


async def _forfeit_trials(conn: AsyncConnection, customer_id: str, now: _dt.datetime) -> list[Any]:
    """T6: buying during a trial ends it at once; its unused days are not added to the paid period. Returns the
    trials forfeited, as written."""
    forfeited = []
    for trial in await subscription_repo.running_trials(conn, customer_id):
        ended = forfeit_at(trial.ends_at, now)
        if ended is not None:  # a trial already past its end is left to expire (T3)
            await subscription_repo.forfeit_trial(conn, trial.id, ended)
            forfeited.append(changed(trial, status=TrialStatus.FORFEITED, ended_at=ended))
    return forfeited


async def failed(
    conn: AsyncConnection,
    ctx: AppContext,
    payment: PaymentRow,
    gateway_payment_id: str | None,
    code: str,
    now: _dt.datetime,
    actor: Principal = SYSTEM,
    *,
    sub: SettlingSubscription | None = None,
) -> None:
    """A charge failed: the payment records it, and the subscription moves as `policies.settlement` says (B1: an
    unpaid purchase ends; B5/C1: a renewal or retry leaves it past_due or ended). `sub`: as in `record_success`."""
    if sub is None:
        sub = await subscription_repo.lock(conn, payment.subscription_id)
    # B1: a purchase whose PaymentIntent waited for the customer's action could still be completed: it is to be
    # cancelled at the gateway (by `app.payments.corrections`, once this commits, and by its job until confirmed).
    purchase = payment.purpose == PaymentPurpose.PURCHASE
    cancel_due = ctx.system_clock.wall() if purchase and payment.gateway_payment_id else None
    await payment_repo.mark_failed(
        conn, payment.id, code=code, gateway_payment_id=gateway_payment_id, now=now, cancel_due_at=cancel_due
    )
    events: list[Any] = [
        (
            "payment.failed",
            payment_to_api(
                changed(
                    payment,
                    status=PaymentStatus.FAILED,
                    failure_code=code,
                    gateway_payment_id=gateway_payment_id,
                    updated_at=now,
                )
            ),
        )
    ]
    if purchase:
        # B1: a purchase whose payment fails leaves no active subscription and grants nothing.
        if purchase_failure_ends(sub.status):
            await subscription_repo.end_unpaid(conn, [sub.id], now, release=True)
        await record(
            conn,
            actor,
            "subscription.purchase_failed",
            now,
            subject_type="subscription",
            subject_id=sub.id,
            customer_id=sub.customer_id,
            policy_version=payment.policy_version,
            data={"payment_id": payment.id, "failure_code": code},
            events=events,
        )
        return
    policy = ctx.policies.at(now)
    transition = (
        None
        if sub.current_period_end is None
        else renewal_failure(
            sub.status,
            sub.failed_attempts,
            sub.current_period_end,
            sub.charge_released_at,
            sub.cancel_at_period_end,
            sub.canceled_at,
            policy,
            now,
        )
    )
    if transition is None:  # the subscription is not running any more: the failure changes nothing
        await record(
            conn,
            actor,
            "subscription.payment_failed",
            now,
            subject_type="subscription",
            subject_id=sub.id,
            customer_id=sub.customer_id,
            policy_version=payment.policy_version,
            data={"payment_id": payment.id, "failure_code": code, "outcome": sub.status},
            events=events,
        )
        return
    name = sub.plan_name
    subject, body = templates.payment_failed(name, payment.amount, payment.currency, transition.next_retry_at)
    notices = [NewNotice(sub.customer_id, "payment_failed", f"payment_failed:{payment.id}", subject, body)]
    values: dict[str, Any] = {
        "status": transition.status,
        "failed_attempts": transition.failed_attempts,
        "next_retry_at": transition.next_retry_at,
    }
    if transition.status == SubscriptionStatus.CANCELED:
        values |= {"ended_at": transition.ended_at, "ended_reason": transition.ended_reason}
        subject, body = templates.subscription_ended(name, transition.ended_reason or "")
        notices.append(NewNotice(sub.customer_id, "subscription_ended", f"subscription_ended:{sub.id}", subject, body))
    values["claimed_until"] = None
    await subscription_repo.record_failure(conn, sub.id, values)
    after = changed(sub, **values)
    if sub.status != after.status:  # B5: past_due at the first failure; ended after the last retry
        ended = after.status != SubscriptionStatus.PAST_DUE
        events.append(("subscription.ended" if ended else "subscription.past_due", as_read(after, now)))
        if sub.customer_status == CustomerStatus.ACTIVE:
            events.append(
                access_changed(facts_of(ctx, CustomerStatus.ACTIVE, None, None if ended else after, now), now)
            )
    await create_notices(conn, notices, now, ctx.system_clock.wall())
    await record(
        conn,
        actor,
        "subscription.payment_failed",
        now,
        subject_type="subscription",
        subject_id=sub.id,
        customer_id=sub.customer_id,
        policy_version=policy.version,
        data={
            "payment_id": payment.id,
            "failure_code": code,
            "attempt": transition.failed_attempts,
            "outcome": transition.outcome,
            "next_retry_at": transition.next_retry_at.isoformat() if transition.next_retry_at else None,
        },
        events=events,
    )
