"""The text of every notice: plain data in, (subject, body) out. Only service notices are defined so far;
each names the rule it serves."""

from __future__ import annotations

import datetime as _dt

from app.formatting import format_money


def _date(value: _dt.datetime) -> str:
    return value.strftime("%d %B %Y, %H:%M UTC")


def money(amount: int, currency: str) -> str:
    """Integer minor units shown as major units, "12.34 USD" (app.formatting)."""
    return format_money(amount, currency)


def trial_expiring(plan_name: str, ends_at: _dt.datetime, days_left: int) -> tuple[str, str]:
    """T4: the trial is expiring and payment is due when it ends, in `days_left` days
    (policies.trial_notice_days_left: the window's 7 on time, the real days left when the notice is late)."""
    subject = f"Your free trial ends on {_date(ends_at)}"
    body = (
        f"Your free trial of {plan_name} is expiring: it ends on {_date(ends_at)}.\n"
        f"Payment is due in {days_left} day{'s' if days_left != 1 else ''} if you want to keep access: subscribe "
        "before the trial ends.\n"
        "The trial never turns into a paid subscription by itself and nothing will be charged automatically."
    )
    return subject, body


def trial_expired(plan_name: str, amount: int, currency: str, interval: str) -> tuple[str, str]:
    """T3: the trial has ended without charge; a prompt to buy, with the plan and its price."""
    subject = "Your free trial has ended"
    body = (
        f"Your free trial of {plan_name} has ended. Nothing was charged and no subscription was started.\n"
        f"To keep using it, subscribe to {plan_name} for {money(amount, currency)} per {interval}."
    )
    return subject, body


def _period(start: _dt.datetime, end: _dt.datetime) -> str:
    return f"{start.strftime('%d %B %Y')} to {end.strftime('%d %B %Y')}"


def receipt(
    plan_name: str,
    price: int,
    tax: int,
    credit: int,
    charged: int,
    currency: str,
    start: _dt.datetime,
    end: _dt.datetime,
    invoice_number: str | None = None,
) -> tuple[str, str]:
    """Receipts (P2: tax shown separately from the price; I1: the invoice's number, its PDF attached when mailed)."""
    lines = [
        f"Thank you for your payment for {plan_name}, for the period {_period(start, end)}.",
        *([f"Invoice: {invoice_number}"] if invoice_number else []),
        f"Price: {money(price, currency)}",
        f"Tax: {money(tax, currency)}",
    ]
    if credit:
        lines.append(f"Account credit used: {money(credit, currency)}")
    lines.append(f"Charged: {money(charged, currency)}")
    return f"Receipt for {plan_name}: {money(charged, currency)}", "\n".join(lines)


def payment_failed(plan_name: str, amount: int, currency: str, next_retry_at: _dt.datetime | None) -> tuple[str, str]:
    """B5: a renewal charge failed; access continues while retries remain."""
    if next_retry_at is not None:
        tail = (
            f"We will try again on {_date(next_retry_at)}; you keep access meanwhile. "
            "You can update your payment method at any time."
        )
    else:
        tail = "That was the last attempt: the subscription has ended."
    return (
        f"Payment for {plan_name} failed",
        f"We could not charge {money(amount, currency)} for your {plan_name} subscription.\n{tail}",
    )


def cancellation_scheduled(plan_name: str, period_end: _dt.datetime) -> tuple[str, str]:
    """C1/R1: the cancellation takes effect at the period end; nothing is refunded."""
    return (
        f"Your {plan_name} subscription will end on {_date(period_end)}",
        f"Your cancellation is scheduled. You keep access until {_date(period_end)}; no further charge will be "
        "made and, as our terms say, nothing is refunded. You can undo the cancellation until then.",
    )


def subscription_ended(plan_name: str, reason: str) -> tuple[str, str]:
    """C1/B5: the subscription has ended."""
    why = {"canceled": "as you cancelled it", "payment_failed": "because the payment could not be collected"}.get(
        reason, ""
    )
    return (
        f"Your {plan_name} subscription has ended",
        f"Your {plan_name} subscription has ended{' ' + why if why else ''}. Nothing further will be charged.",
    )


def payment_refunded(plan_name: str, amount: int, currency: str) -> tuple[str, str]:
    """B1: a payment that succeeded after its purchase had failed, expired or been cancelled bought nothing: it is
    refunded in full, automatically."""
    return (
        f"Your payment of {money(amount, currency)} is being refunded in full",
        f"A payment of {money(amount, currency)} for {plan_name} went through after your purchase had already "
        "failed, expired or been cancelled, so it bought nothing: no subscription was started with it.\n"
        f"We are returning the full {money(amount, currency)} to your payment method; you need not do "
        "anything. Depending on your bank it can take a few days to show.",
    )
