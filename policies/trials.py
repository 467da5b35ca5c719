"""T1/T3/T4/T5/T6/T7: free trial rules: length, notice, once-only eligibility, expiry and forfeit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._checks import require_aware
from .decision import Decision
from .document import PolicyDocument

__all__ = [
    "Decision",
    "PersonHistory",
    "TrialTerms",
    "forfeit_at",
    "normalise_email",
    "trial_eligibility",
    "trial_expired",
    "trial_notice_days_left",
    "trial_notice_due",
    "trial_terms",
]


def normalise_email(email: str) -> str:
    """T5: the email as compared for "same person": surrounding whitespace stripped, then casefolded."""
    if not isinstance(email, str):
        raise TypeError(f"email must be a str, got {type(email).__name__}")
    return email.strip().casefold()


@dataclass(frozen=True)
class TrialTerms:
    """T1/T4/T7: the dates a trial was given when it started, and the policy version they came from."""

    started_at: datetime
    ends_at: datetime
    notice_at: datetime
    policy_version: str


def trial_terms(started_at: datetime, policy: PolicyDocument) -> TrialTerms:
    """T1/T4/T7: ends_at = start + trial_days; notice_at = max(start, ends_at - notice days).

    The caller passes the policy in force at `started_at` (PolicyBook.at), so running trials keep their end (T7).
    """
    require_aware(started_at, "started_at")
    ends_at = started_at + timedelta(days=policy.trial_days)
    notice_at = max(started_at, ends_at - timedelta(days=policy.notice_days_before_trial_end))
    return TrialTerms(started_at=started_at, ends_at=ends_at, notice_at=notice_at, policy_version=policy.version)


@dataclass(frozen=True)
class PersonHistory:
    """T5: what is known about the person (same customer or same normalised email)."""

    had_trial: bool  # this customer, or any customer with the same normalised email, ever had a trial
    had_paid_subscription: bool  # ... ever had a subscription whose first payment succeeded (any tier)


def trial_eligibility(history: PersonHistory, plan_offers_trial: bool) -> Decision:
    """T5: one trial per person, ever; a plan without a trial is refused first ("trial_not_available")."""
    if not plan_offers_trial:
        return Decision(False, "trial_not_available", "T2", "This plan does not offer a free trial.")
    if history.had_trial:
        return Decision(False, "trial_not_eligible", "T5", "A free trial has already been used by this person.")
    if history.had_paid_subscription:
        return Decision(False, "trial_not_eligible", "T5", "This person has already had a paid subscription.")
    return Decision(True, None, "T5", "No earlier trial or paid subscription: the trial may start.")


def trial_notice_due(notice_at: datetime, now: datetime, already_sent: bool) -> bool:
    """T4: the single trial_expiring notice is due when not already sent and now >= notice_at."""
    require_aware(notice_at, "notice_at")
    require_aware(now, "now")
    return not already_sent and now >= notice_at


def trial_notice_days_left(notice_at: datetime, ends_at: datetime, now: datetime, already_sent: bool) -> int | None:
    """T4: the days left to state in the `trial_expiring` notice if it goes out now, or None if it does not.

    None when it is not due (`trial_notice_due`) or the trial has already ended (`trial_expired`): a notice that
    could only go out after its end is not sent, the `trial_expired` one says it all. Otherwise the whole days
    left until the end, rounded up: the window's 7 on time (or the trial's length when it is shorter and the
    notice goes out at its start), fewer when the notice goes out late, at least 1.
    """
    require_aware(ends_at, "ends_at")
    if not trial_notice_due(notice_at, now, already_sent) or trial_expired(ends_at, now):
        return None
    return max(1, math.ceil((ends_at - now) / timedelta(days=1)))


def trial_expired(ends_at: datetime, now: datetime) -> bool:
    """T3: a trial has expired (never converting or charging) once now >= ends_at."""
    require_aware(ends_at, "ends_at")
    require_aware(now, "now")
    return now >= ends_at


def forfeit_at(trial_ends_at: datetime, purchase_at: datetime) -> datetime | None:
    """T6: a purchase during a trial ends it at the purchase instant; None if the trial was already over.

    Unused trial days are never carried into the paid period.
    """
    require_aware(trial_ends_at, "trial_ends_at")
    require_aware(purchase_at, "purchase_at")
    return purchase_at if purchase_at < trial_ends_at else None
