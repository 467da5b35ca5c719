#!/usr/bin/env python3
"""The read path's serialisers, before and after issue #15 item 4: rows per second of each resource's `to_api`.

    .venv/bin/python bench/serialise.py [--rows 10000] [--repeat 7]

Before: the hand-written `to_api(row) -> dict` of each domain (copied below as they were at commit 5a18086).
After: the `to_api` that app.schemas.serialiser derives from each resource's Pydantic model. Both serialise the
same rows: real SQLAlchemy `Row`s (each table's own columns and types, fetched from an in-memory SQLite database)
and the `SimpleNamespace` snapshots that use cases build with `app.audit.service.changed`. Every output is first
checked to be equal to the old one, key order included. `subscription@` is GET /v1/subscriptions/{id}: the
subscription as it stands at `now` (active ones, half of them past their stored period end). Timing: best of
`--repeat` interleaved runs (old, new, old, new, ...) over all rows, in CPU time of the process. Not part of
run.py's figures: a diagnostic for the serialisers alone.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, Table, create_engine, insert, select

from app.audit.schemas import to_api as audit_event
from app.credits.schemas import to_api as credit
from app.customers.schemas import to_api as customer
from app.events.schemas import to_api as event
from app.models import (
    audit_events,
    credit_entries,
    customers,
    events,
    notices,
    payments,
    plans,
    refunds,
    subscriptions,
    trials,
)
from app.models.base import UTCDateTime
from app.notices.schemas import to_api as notice
from app.payments.schemas import to_api as payment
from app.plans.schemas import to_api as plan
from app.refunds.schemas import to_api as refund
from app.subscriptions.schemas import to_api as subscription
from app.trials.schemas import to_api as trial
from policies import SubscriptionFacts, subscription_at

# --- before: the hand-written serialisers (commit 5a18086) --------------------------------------------------------


def old_payment(row) -> dict:
    return {
        "object": "payment",
        "id": row.id,
        "customer_id": row.customer_id,
        "subscription_id": row.subscription_id,
        "purpose": row.purpose,
        "amount": row.amount,
        "price_amount": row.price_amount,
        "tax_amount": row.tax_amount,
        "credit_applied": row.credit_applied,
        "currency": row.currency,
        "status": row.status,
        "failure_code": row.failure_code,
        "refunded_amount": row.refunded_amount,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "gateway": row.gateway,
        "gateway_payment_id": row.gateway_payment_id,
        "policy_version": row.policy_version,
        "created_at": row.created_at,
    }


def old_subscription(row, client_secret: str | None = None) -> dict:
    # The stored subscription (no `now`: the state projection is the same code before and after).
    return {
        "object": "subscription",
        "id": row.id,
        "customer_id": row.customer_id,
        "plan": row.plan_code,
        "status": row.status,
        "price": {"amount": row.price_amount, "currency": row.currency},
        "tax": {"amount": row.tax_amount, "currency": row.currency},
        "payment_method": row.payment_method,
        "current_period_start": row.current_period_start,
        "current_period_end": row.current_period_end,
        "cancel_at_period_end": row.cancel_at_period_end,
        "canceled_at": row.canceled_at,
        "ended_at": row.ended_at,
        "ended_reason": row.ended_reason,
        "next_retry_at": row.next_retry_at,
        "client_secret": client_secret,
        "policy_version": row.policy_version,
        "created_at": row.created_at,
    }


def old_subscription_facts(row) -> SubscriptionFacts:
    return SubscriptionFacts(
        status=row.status,
        anchor_at=row.anchor_at,
        interval=row.interval,
        period_index=row.period_index,
        period_start=row.current_period_start,
        period_end=row.current_period_end,
        cancel_at_period_end=row.cancel_at_period_end,
        canceled_at=row.canceled_at,
        ended_at=row.ended_at,
        ended_reason=row.ended_reason,
    )


def old_subscription_at(row, client_secret: str | None = None, *, now: _dt.datetime | None = None) -> dict:
    # GET /v1/subscriptions/{id}: the subscription as it stands at `now` (api_read_ratio's path).
    state = subscription_at(old_subscription_facts(row), now) if now is not None else None
    return {
        "object": "subscription",
        "id": row.id,
        "customer_id": row.customer_id,
        "plan": row.plan_code,
        "status": state.status if state else row.status,
        "price": {"amount": row.price_amount, "currency": row.currency},
        "tax": {"amount": row.tax_amount, "currency": row.currency},
        "payment_method": row.payment_method,
        "current_period_start": state.period_start if state else row.current_period_start,
        "current_period_end": state.period_end if state else row.current_period_end,
        "cancel_at_period_end": row.cancel_at_period_end,
        "canceled_at": row.canceled_at,
        "ended_at": state.ended_at if state else row.ended_at,
        "ended_reason": state.ended_reason if state else row.ended_reason,
        "next_retry_at": row.next_retry_at,
        "client_secret": client_secret,
        "policy_version": row.policy_version,
        "created_at": row.created_at,
    }


def old_plan(row) -> dict:
    return {
        "object": "plan",
        "id": row.id,
        "code": row.code,
        "name": row.name,
        "tier": row.tier,
        "interval": row.interval,
        "price": {"amount": row.amount, "currency": row.currency},
        "trial_available": row.trial_available,
        "active": row.active,
        "created_at": row.created_at,
    }


def old_customer(row) -> dict:
    return {
        "object": "customer",
        "id": row.id,
        "external_id": row.external_id,
        "email": row.email,
        "name": row.name,
        "country": row.country,
        "marketing_opt_out": row.marketing_opt_out,
        "status": row.status,
        "created_at": row.created_at,
    }


def old_trial(row) -> dict:
    return {
        "object": "trial",
        "id": row.id,
        "customer_id": row.customer_id,
        "plan": row.plan_code,
        "status": row.status,
        "started_at": row.started_at,
        "ends_at": row.ends_at,
        "notice_at": row.notice_at,
        "ended_at": row.ended_at,
        "policy_version": row.policy_version,
    }


def old_refund(row) -> dict:
    return {
        "object": "refund",
        "id": row.id,
        "payment_id": row.payment_id,
        "customer_id": row.customer_id,
        "amount": row.amount,
        "currency": row.currency,
        "reason": row.reason,
        "created_by": row.created_by,
        "source": row.source,
        "status": row.status,
        "gateway_refund_id": row.gateway_refund_id,
        "created_at": row.created_at,
    }


def old_credit(row) -> dict:
    return {
        "object": "credit",
        "id": row.id,
        "customer_id": row.customer_id,
        "kind": row.kind,
        "amount": row.amount,
        "currency": row.currency,
        "reason": row.reason,
        "created_by": row.created_by,
        "payment_id": row.payment_id,
        "created_at": row.created_at,
    }


def old_notice(row) -> dict:
    return {
        "object": "notice",
        "id": row.id,
        "customer_id": row.customer_id,
        "type": row.type,
        "category": row.category,
        "status": row.status,
        "created_at": row.created_at,
        "sent_at": row.sent_at,
        "subject": row.subject,
        "body": row.body,
    }


def old_event(row) -> dict:
    return {
        "object": "event",
        "id": row.id,
        "type": row.type,
        "created_at": row.created_at,
        "timestamp": row.created_at,
        "customer_id": row.customer_id,
        "data": row.data,
    }


def old_audit_event(row) -> dict:
    return {
        "object": "audit_event",
        **{
            c: getattr(row, c)
            for c in (
                "id",
                "occurred_at",
                "actor",
                "actor_role",
                "action",
                "customer_id",
                "subject_type",
                "subject_id",
                "reason",
                "data",
                "policy_version",
            )
        },
    }


NOW = _dt.datetime(2027, 2, 10, 12, tzinfo=_dt.UTC)
# Active subscriptions in their first monthly period, half of them past its end (`subscription_at` moves them on).
ACTIVE = {
    "status": lambda i: "active",
    "interval": lambda i: "month",
    "period_index": lambda i: 0,
    "anchor_at": lambda i: NOW - _dt.timedelta(days=20 + i % 20),
    "current_period_start": lambda i: NOW - _dt.timedelta(days=20 + i % 20),
    "current_period_end": lambda i: NOW - _dt.timedelta(days=20 + i % 20) + _dt.timedelta(days=31),
    "cancel_at_period_end": lambda i: i % 4 == 0,
    "canceled_at": lambda i: NOW - _dt.timedelta(days=1) if i % 4 == 0 else None,
    "ended_at": lambda i: None,
    "ended_reason": lambda i: None,
}

CASES: list[tuple[str, Table, Callable[..., dict], Callable[..., dict], dict[str, Callable[[int], Any]]]] = [
    ("payment", payments, old_payment, payment, {}),
    ("subscription", subscriptions, old_subscription, subscription, {}),
    (
        "subscription@",
        subscriptions,
        partial(old_subscription_at, now=NOW),
        partial(subscription, now=NOW),
        ACTIVE,
    ),
    ("plan", plans, old_plan, plan, {}),
    ("customer", customers, old_customer, customer, {}),
    ("trial", trials, old_trial, trial, {}),
    ("refund", refunds, old_refund, refund, {}),
    ("credit", credit_entries, old_credit, credit, {}),
    ("notice", notices, old_notice, notice, {}),
    ("event", events, old_event, event, {}),
    ("audit_event", audit_events, old_audit_event, audit_event, {}),
]

# --- rows -------------------------------------------------------------------------------------------------------


def _value(column: Column, i: int) -> Any:
    if column.nullable and not column.primary_key and i % 3 == 0:
        return None
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return NOW + _dt.timedelta(seconds=i)
    if isinstance(kind, Boolean):
        return i % 2 == 0
    if isinstance(kind, Integer) or getattr(kind, "impl", None).__class__.__name__ == "BigInteger":
        return 100 + i
    if isinstance(kind, JSON) or isinstance(getattr(kind, "impl", None), JSON):
        return {"object": {"object": "thing", "id": f"x_{i}", "amount": i}}
    return f"{column.name}_{i}"


def fetch_rows(table: Table, count: int, values: dict[str, Callable[[int], Any]]) -> list:
    """`count` rows of `table`'s columns and types (none of its constraints), as SQLAlchemy returns them."""
    loose = Table(table.name, MetaData(), *(Column(c.name, c.type, primary_key=c.primary_key) for c in table.c))
    engine = create_engine("sqlite://")
    loose.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(loose),
            [{c.name: values[c.name](i) if c.name in values else _value(c, i) for c in table.c} for i in range(count)],
        )
        rows = conn.execute(select(loose).order_by(loose.c[table.primary_key.columns.keys()[0]])).all()
    engine.dispose()
    return rows


def rate(fn: Callable[..., dict], rows: list) -> float:
    """Rows per second of this process's CPU time (steadier than wall time on a shared machine)."""
    start = time.process_time()
    for row in rows:
        fn(row)
    return len(rows) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"# {args.rows} rows per resource, best of {args.repeat} interleaved runs; rows/s")
    print(f"{'resource':<14} {'rows':<9} {'old':>12} {'new':>12} {'new/old':>8}")
    worst = float("inf")
    for name, table, old, new, values in CASES:
        fetched = fetch_rows(table, args.rows, values)
        for label, rows in (("Row", fetched), ("snapshot", [SimpleNamespace(**r._mapping) for r in fetched])):
            for row in rows:
                before, after = old(row), new(row)
                assert before == after and list(before) == list(after), (name, before, after)
            best_old = best_new = 0.0
            for _ in range(args.repeat):
                best_old = max(best_old, rate(old, rows))
                best_new = max(best_new, rate(new, rows))
            worst = min(worst, best_new / best_old)
            print(f"{name:<14} {label:<9} {best_old:>12,.0f} {best_new:>12,.0f} {best_new / best_old:>8.2f}")
    print(f"# lowest new/old: {worst:.2f}")


if __name__ == "__main__":
    main()
