"""B1..B5, C1, C2, R1..R3, P1, P2, T1..T7, D3: the pure policy core of the billing service.

Plain frozen dataclasses in, decisions out. No database, HTTP, gateway or clock: `now` is always a parameter.
Rule ids refer to shared/spec/policy.md.
"""

from .corrections import B1_CORRECTION_REASON, SuccessOutcome, late_success
from .decision import Decision
from .document import (
    PolicyBook,
    PolicyDocument,
    PolicyError,
    load_policy_book,
    parse_policy,
)
from .money import ROUNDING, ChargeBreakdown, charge_breakdown, tax_for
from .periods import Interval, add_periods, period_bounds
from .privacy import ERASED, redact
from .refunds import (
    billing_currency,
    credit_currency_decision,
    credit_decision,
    recorded_refund_decision,
    refund_decision,
    termination_refund,
)
from .subscriptions import (
    AccessDecision,
    AccessFacts,
    FailureOutcome,
    SubscriptionFacts,
    access,
    after_failed_charge,
    cancellation_ends_period,
    cancellation_refund,
    charge_due_at_lifting,
    charge_held,
    period_end_action,
    renewal_due,
    retries_counted_from,
    subscription_at,
)
from .trials import (
    PersonHistory,
    TrialTerms,
    forfeit_at,
    normalise_email,
    trial_eligibility,
    trial_expired,
    trial_notice_days_left,
    trial_notice_due,
    trial_terms,
)

__all__ = [
    "B1_CORRECTION_REASON",
    "ERASED",
    "ROUNDING",
    "AccessDecision",
    "AccessFacts",
    "ChargeBreakdown",
    "Decision",
    "FailureOutcome",
    "Interval",
    "PersonHistory",
    "PolicyBook",
    "PolicyDocument",
    "PolicyError",
    "SubscriptionFacts",
    "SuccessOutcome",
    "TrialTerms",
    "access",
    "add_periods",
    "after_failed_charge",
    "billing_currency",
    "cancellation_ends_period",
    "cancellation_refund",
    "charge_breakdown",
    "charge_due_at_lifting",
    "charge_held",
    "credit_currency_decision",
    "credit_decision",
    "forfeit_at",
    "late_success",
    "load_policy_book",
    "normalise_email",
    "parse_policy",
    "period_bounds",
    "period_end_action",
    "recorded_refund_decision",
    "redact",
    "refund_decision",
    "renewal_due",
    "retries_counted_from",
    "subscription_at",
    "tax_for",
    "termination_refund",
    "trial_eligibility",
    "trial_expired",
    "trial_notice_days_left",
    "trial_notice_due",
    "trial_terms",
]
