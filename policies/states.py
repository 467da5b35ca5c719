"""B1, B5, C1, R2, R3, T3, D2, D3: every state and kind the rules speak of, defined once.

The tables store these values as text (their check constraints list the same members), the API shows them as
they are, and the rules compare against the members, never against bare strings. A `StrEnum` member *is* its
string, so a value read from a row compares equal to the member without conversion.
"""

from __future__ import annotations

from enum import StrEnum


class Interval(StrEnum):
    """B4: how long one billing period lasts."""

    MONTH = "month"
    YEAR = "year"


class Tier(StrEnum):
    """T5: the two kinds of plan; a paid subscription of either bars a trial."""

    SUBSCRIPTION = "subscription"
    ENTERPRISE = "enterprise"


class CustomerStatus(StrEnum):
    """R3, D3: the company's standing with a customer."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    ERASED = "erased"


class SubscriptionStatus(StrEnum):
    """B1, B5, C1: where a paid subscription stands."""

    INCOMPLETE = "incomplete"  # B1: its first payment has not succeeded yet
    ACTIVE = "active"
    PAST_DUE = "past_due"  # B5: a renewal failed and is being retried
    CANCELED = "canceled"  # ended, for the reason in EndedReason


# The one definition of a live subscription: it has not ended, whatever its payment state.
LIVE_SUBSCRIPTION = frozenset({SubscriptionStatus.INCOMPLETE, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE})


def is_live(status: str) -> bool:
    """C1, B5, R3: a subscription is live until it is canceled, fails for good, or is ended by the company."""
    return status in LIVE_SUBSCRIPTION


class EndedReason(StrEnum):
    """C1, B5, R3, D3: why a subscription ended."""

    CANCELED = "canceled"  # C1: the customer's cancellation took effect at the period end
    PAYMENT_FAILED = "payment_failed"  # B5: the last retry failed
    TERMINATED = "terminated"  # R3: the company ended the account
    ERASED = "erased"  # D3: the customer's data was erased


class TrialStatus(StrEnum):
    """T1, T3, T6, R3: where a free trial stands."""

    ACTIVE = "active"
    EXPIRED = "expired"  # T3: it ran its course
    FORFEITED = "forfeited"  # T6: the customer bought during it
    TERMINATED = "terminated"  # R3


class PaymentPurpose(StrEnum):
    """B1, B2, B5: what a payment pays for."""

    PURCHASE = "purchase"  # B1: the first payment of a subscription
    RENEWAL = "renewal"  # B2
    RETRY = "retry"  # B5
    UPGRADE = "upgrade"  # C4: an immediate upgrade's charge


class PaymentStatus(StrEnum):
    """B1: a payment is pending until the gateway settles it."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundSource(StrEnum):
    """R2, B1: who asked for a refund."""

    OPS = "ops"  # R2: at the company's discretion
    GATEWAY = "gateway"  # R2: recorded from the payment provider
    CORRECTION = "correction"  # B1: a late success for a payment that was already abandoned


class RefundStatus(StrEnum):
    """R2: a refund is pending until the gateway settles it."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class CreditKind(StrEnum):
    """R2, R3: the entries of a customer's credit balance."""

    GRANT = "grant"  # R2: ops grant a credit
    SPEND = "spend"  # R2: a charge uses it
    FORFEIT = "forfeit"  # R3: termination forfeits it


class NoticeCategory(StrEnum):
    """T4, D2: service notices always go; marketing only with consent."""

    SERVICE = "service"
    MARKETING = "marketing"  # D2: only with consent


class NoticeStatus(StrEnum):
    """T4: what became of a notice."""

    PENDING = "pending"
    SENT = "sent"
    LOGGED = "logged"  # no SMTP configured: written to the log instead
    SKIPPED = "skipped"


class AccessSource(StrEnum):
    """B5, T1: what grants access at an instant."""

    TRIAL = "trial"
    SUBSCRIPTION = "subscription"


class Role(StrEnum):
    """R2, R3: who is asking: the signed-in customer, or ops staff."""

    CUSTOMER = "customer"
    STAFF = "ops"  # ops and finance staff


class PlanChangeStatus(StrEnum):
    """C3/C4: a plan change asked: waiting (at most one per subscription), applied, withdrawn or expired."""

    PENDING = "pending"
    APPLIED = "applied"  # C3: at the period end; C4: its payment succeeded
    WITHDRAWN = "withdrawn"  # C3/C1: withdrawn by the customer, by a cancellation or by another change
    EXPIRED = "expired"  # C4: its payment never completed (23 h, or the period end)
    FAILED = "failed"  # C4: its payment was declined


class GatewayName(StrEnum):
    """B1: the payment gateway that took a payment."""

    SANDBOX = "sandbox"
    STRIPE = "stripe"
