"""The text of every notice: plain data in, (subject, body) out. Only service notices are defined so far;
each names the rule it serves."""

from __future__ import annotations

import datetime as _dt
import math


def _date(value: _dt.datetime) -> str:
    return value.strftime("%d %B %Y, %H:%M UTC")


def money(amount: int, currency: str) -> str:
    """Integer minor units shown as major units (2 decimals; zero-decimal currencies are not offered)."""
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"


def trial_expiring(plan_name: str, ends_at: _dt.datetime, notice_at: _dt.datetime) -> tuple[str, str]:
    """T4: the trial is expiring and payment is due when it ends."""
    days = max(1, math.ceil((ends_at - notice_at) / _dt.timedelta(days=1)))
    subject = f"Your free trial ends on {_date(ends_at)}"
    body = (
        f"Your free trial of {plan_name} is expiring: it ends on {_date(ends_at)}.\n"
        f"Payment is due in {days} day{'s' if days != 1 else ''} if you want to keep access: subscribe before "
        "the trial ends.\n"
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
