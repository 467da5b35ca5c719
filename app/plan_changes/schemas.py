"""Plan changes over HTTP (C3, C4): the request, and the subscription answered with its pending change."""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from pydantic import Field

from app.audit.service import changed
from app.schemas import Money, RequestModel
from app.subscriptions.schemas import Subscription, as_read, to_api
from policies.states import SubscriptionStatus


class PlanChangeCreate(RequestModel):
    plan: str = Field(min_length=1, max_length=64)
    when: Literal["period_end", "now"] = "period_end"


class SubscriptionWithChange(Subscription):
    forfeited_days: int | None = None  # C4: whole days of the old period left unused (information only)
    forfeited_value: Money | None = None  # C4: their value (nothing is refunded, R1)


def pending_to_api(change, client_secret: str | None = None) -> dict | None:  # noqa: ANN001
    """The pending change as the API shows it (None when there is none); a row of `repository.shown` carries its
    client secret."""
    if change is None:
        return None
    if client_secret is None:
        client_secret = getattr(change, "client_secret", None)
    return {
        "plan": change.plan_code,
        "price": {"amount": change.price_amount, "currency": change.currency},
        "effective_at": change.effective_at,
        "expires_at": change.expires_at,
        "client_secret": client_secret,
    }


def in_force(sub, change, now: _dt.datetime | None):  # noqa: ANN001, ANN201
    """B2/C3: (the subscription, its pending change) as in force at `now`: from the period end a C3 change takes
    effect at, the subscription is on the new plan, price and interval, its periods counted from there, whether or
    not the renewal job has recorded it yet (the change then pending no more)."""
    due = (
        change is not None
        and now is not None
        and change.kind == "period_end"
        and sub.status == SubscriptionStatus.ACTIVE
        and change.effective_at is not None
        and change.effective_at == sub.current_period_end
        and now >= change.effective_at
    )
    if not due:
        return sub, change
    moved = changed(
        sub,
        plan_code=change.plan_code,
        price_amount=change.price_amount,
        interval=change.interval,
        anchor_at=change.effective_at,
        anchor_index=sub.period_index + 1,
    )
    return moved, None


def with_change(sub, change, now: _dt.datetime, **extra: object) -> dict:  # noqa: ANN001
    """The subscription as its GET shows it at `now`, with its pending change (C3, C4)."""
    return {
        **to_api(sub, now=now if sub.status == SubscriptionStatus.ACTIVE else None),
        "pending_change": pending_to_api(change),
        **extra,
    }


def event_object(sub, change, now: _dt.datetime) -> dict:  # noqa: ANN001
    """A domain event's object: the subscription as read at `now`, with its pending change."""
    return {**as_read(sub, now), "pending_change": pending_to_api(change)}
