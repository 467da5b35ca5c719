"""Invariants of the billing policy, checked on the API's own view of customers (support.Api.view). Each function
returns a list of human-readable violations, so a failing test shows all of them at once."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from policies import normalise_email
from tests.reliability.support import parse

# Payments failed by something other than a charge (cancellation, termination, erasure, an expired purchase): no
# payment_failed notice belongs to them.
NOT_A_CHARGE_FAILURE = {"canceled", "terminated", "erased", "expired"}


def person_of(view: dict[str, Any], emails: dict[str, str] | None = None) -> str:
    """T5: a person is a customer or an e-mail address (case and surrounding spaces ignored)."""
    email = (emails or {}).get(view["customer"]["id"]) or view["customer"]["email"]
    return f"email:{normalise_email(email)}" if email else f"customer:{view['customer']['id']}"


def one_trial_per_person(views: list[dict[str, Any]], emails: dict[str, str] | None = None) -> list[str]:
    trials: dict[str, list[str]] = defaultdict(list)
    for view in views:
        trials[person_of(view, emails)] += [t["id"] for t in view["trials"]]
    return [f"T5: person {person} has {len(ids)} trials: {ids}" for person, ids in trials.items() if len(ids) > 1]


def money(view: dict[str, Any], *, settled: bool = True) -> list[str]:
    """R2: refunded <= paid for every payment, and what the refunds add up to is what the payment says."""
    problems = []
    for p in view["payments"]:
        if not 0 <= p["refunded_amount"] <= p["amount"]:
            problems.append(f"R2: payment {p['id']} refunded {p['refunded_amount']} of {p['amount']}")
        refunds = view["refunds"].get(p["id"], [])
        if p["status"] != "succeeded" and (refunds or p["refunded_amount"]):
            problems.append(f"R2: payment {p['id']} is {p['status']} but has refunds")
        succeeded = sum(r["amount"] for r in refunds if r["status"] == "succeeded")
        pending = sum(r["amount"] for r in refunds if r["status"] == "pending")
        if settled and pending:
            problems.append(f"R2: payment {p['id']} has refunds still pending: {pending}")
        if succeeded + pending != p["refunded_amount"]:
            problems.append(
                f"R2: payment {p['id']} says refunded {p['refunded_amount']} but its refunds add up to "
                f"{succeeded} succeeded + {pending} pending"
            )
    return problems


def charges(view: dict[str, Any]) -> list[str]:
    """B1/B2/C1/T3: one live subscription; one succeeded charge per period; nothing charged after the end."""
    problems = []
    subs = {s["id"]: s for s in view["subscriptions"]}
    live = [s["id"] for s in subs.values() if s["status"] in ("incomplete", "active", "past_due")]
    if len(live) > 1:
        problems.append(f"customer {view['customer']['id']} has {len(live)} live subscriptions: {live}")
    per_period: Counter = Counter()
    for p in view["payments"]:
        sub = subs.get(p["subscription_id"])
        if sub is None:
            problems.append(f"payment {p['id']} belongs to no subscription of its customer")
            continue
        if p["status"] == "succeeded" and p["period_start"] is not None:
            per_period[(sub["id"], p["period_start"])] += 1
        # C1/B5: nothing is charged once the customer asked to cancel, nor after the subscription ended otherwise
        # (a cancelled subscription's end is its period end, which may lie before the moment the customer asked:
        # a renewal already under way when they asked is not a charge "after" the cancellation).
        since = sub["canceled_at"] or sub["ended_at"]
        # B2/C1: a cancellation asked at or after a period's start (in the gap after the stored period end, before
        # the renewal job ran) belongs to that period: its renewal is still charged, once, and nothing after it.
        in_the_gap = (
            sub["canceled_at"] is not None
            and p["purpose"] == "renewal"
            and p["period_start"] is not None
            and parse(sub["canceled_at"]) >= parse(p["period_start"])
        )
        if in_the_gap:
            since = sub["ended_at"]
        if since is not None and parse(p["created_at"]) > parse(since):
            problems.append(
                f"C1: payment {p['id']} ({p['purpose']}, {p['status']}, {p['failure_code']}) created "
                f"{p['created_at']}, after subscription {sub['id']} ({sub['status']}, "
                f"{sub['ended_reason']}) was cancelled at {sub['canceled_at']} / ended at "
                f"{sub['ended_at']}"
            )
        if p["status"] == "pending" and not (p["purpose"] == "purchase" and sub["status"] == "incomplete"):
            problems.append(f"payment {p['id']} ({p['purpose']}) is pending; its subscription is {sub['status']}")
    problems += [
        f"B2: subscription {sub_id} has {n} succeeded payments for the period starting {start}"
        for (sub_id, start), n in per_period.items()
        if n > 1
    ]
    for sub in subs.values():
        if sub["status"] == "incomplete" and not any(
            p["subscription_id"] == sub["id"] and p["status"] == "pending" for p in view["payments"]
        ):
            problems.append(f"B1: incomplete subscription {sub['id']} has no pending payment")
    return problems


def notices(view: dict[str, Any], *, exact: bool = True) -> list[str]:
    """Every notice at most once per its subject (trial, payment, subscription); `exact` also demands at least
    once where the notice is written in the same transaction as its cause."""
    problems = []
    cid = view["customer"]["id"]
    by_type = Counter(n["type"] for n in view["notices"])
    copies = Counter((n["type"], n["subject"], n["body"], n["created_at"]) for n in view["notices"])
    problems += [
        f"customer {cid}: notice {key[0]!r} {key[1]!r} at {key[3]} exists {n} times"
        for key, n in copies.items()
        if n > 1
    ]
    receipts = [n for n in view["notices"] if n["type"] == "receipt"]
    if len({(n["subject"], n["body"]) for n in receipts}) != len(receipts):
        problems.append(f"customer {cid}: two receipts with the same text: {[n['subject'] for n in receipts]}")
    paid = [p for p in view["payments"] if p["status"] == "succeeded" and p["period_start"] is not None]
    if len(receipts) > len(paid) or (exact and len(receipts) != len(paid)):
        problems.append(f"customer {cid}: {len(receipts)} receipts for {len(paid)} succeeded payments")
    trials = view["trials"]
    expired = [t for t in trials if t["status"] == "expired"]
    if by_type["trial_expired"] > len(trials) or (exact and by_type["trial_expired"] != len(expired)):
        problems.append(
            f"customer {cid}: {by_type['trial_expired']} trial_expired notices, {len(expired)} expired "
            f"of {len(trials)} trials"
        )
    # At most one per trial; an expired trial may have none (T4: not sent once the trial has ended).
    if by_type["trial_expiring"] > len(trials):
        problems.append(
            f"customer {cid}: {by_type['trial_expiring']} trial_expiring notices for {len(trials)} "
            f"trials ({len(expired)} expired)"
        )
    # Renewal charges that failed (a late success through a webhook keeps its failure code, and its notice).
    failures = [
        p
        for p in view["payments"]
        if p["purpose"] in ("renewal", "retry") and p["failure_code"] and p["failure_code"] not in NOT_A_CHARGE_FAILURE
    ]
    if by_type["payment_failed"] > len(failures) or (exact and by_type["payment_failed"] != len(failures)):
        problems.append(
            f"customer {cid}: {by_type['payment_failed']} payment_failed notices for {len(failures)} "
            f"failed renewal charges"
        )
    ended = [s for s in view["subscriptions"] if s["ended_reason"] in ("canceled", "payment_failed")]
    if by_type["subscription_ended"] > len(ended):
        problems.append(
            f"customer {cid}: {by_type['subscription_ended']} subscription_ended notices for "
            f"{len(ended)} ended subscriptions"
        )
    return problems


def all_invariants(
    views: list[dict[str, Any]], *, exact: bool = True, settled: bool = True, emails: dict[str, str] | None = None
) -> list[str]:
    problems = one_trial_per_person(views, emails)
    for view in views:
        problems += money(view, settled=settled) + charges(view) + notices(view, exact=exact)
    return problems
