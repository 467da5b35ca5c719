"""Domain errors, the one mapping of a refused policy decision to its error (`refuse_unless`), and the one table
that maps them to HTTP problem+json (RFC 9457)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies import Decision

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """A refusal the caller can act on. `code` is stable; `detail` is for humans."""

    code = "error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


# code -> the error of that code, for the refusals of policies (`refuse_unless`).
_BY_CODE: dict[str, type[DomainError]] = {}


def _error(name: str, code: str) -> type[DomainError]:
    error = _BY_CODE[code] = type(name, (DomainError,), {"code": code})
    return error


Unauthenticated = _error("Unauthenticated", "unauthenticated")
Forbidden = _error("Forbidden", "forbidden")
NotFound = _error("NotFound", "not_found")
ValidationFailed = _error("ValidationFailed", "validation_error")
CustomerExists = _error("CustomerExists", "customer_exists")
CustomerInactive = _error("CustomerInactive", "customer_inactive")
PlanExists = _error("PlanExists", "plan_exists")
PlanNotFound = _error("PlanNotFound", "plan_not_found")
ClockBackwards = _error("ClockBackwards", "clock_backwards")
IdempotencyKeyReused = _error("IdempotencyKeyReused", "idempotency_key_reused")
IdempotencyKeyInUse = _error("IdempotencyKeyInUse", "idempotency_key_in_use")
TrialNotEligible = _error("TrialNotEligible", "trial_not_eligible")
TrialNotAvailable = _error("TrialNotAvailable", "trial_not_available")
CardDeclined = _error("CardDeclined", "card_declined")
SubscriptionExists = _error("SubscriptionExists", "subscription_exists")
SubscriptionEnded = _error("SubscriptionEnded", "subscription_ended")
RefundExceedsPayment = _error("RefundExceedsPayment", "refund_exceeds_payment")
PaymentNotRefundable = _error("PaymentNotRefundable", "payment_not_refundable")
CustomerTerminated = _error("CustomerTerminated", "customer_terminated")
CurrencyMismatch = _error("CurrencyMismatch", "currency_mismatch")
BillingAddressRequired = _error("BillingAddressRequired", "billing_address_required")  # I1: a tax id, no address
ChargeInProgress = _error("ChargeInProgress", "charge_in_progress")  # carries `retry_after` (seconds)
InvalidEvent = _error("InvalidEvent", "invalid_event")  # a signed webhook event that can never be processed


def refuse_unless(decision: Decision, detail: str = "", *, cite_rule: bool = True, **extra: Any) -> None:
    """A policy decision (`policies.Decision`) let through, or its refusal raised: the error of the decision's code
    (`ValidationFailed` for a code without one of its own, such as `reason_required`), carrying the rule that
    refused (unless `cite_rule` is false: the standing refusals never named it in their answers) and `detail` (the
    decision's reason unless given) and `extra` for the problem body."""
    if not decision.allowed:
        error = _BY_CODE.get(decision.code or "", ValidationFailed)
        if cite_rule:
            extra["rule"] = decision.rule
        raise error(detail or decision.reason, **extra)


# code -> (HTTP status, title). The only place where domain refusals meet HTTP.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "unauthenticated": (401, "Authentication required"),
    "forbidden": (403, "Not allowed for this role"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "Request body too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "validation_error": (422, "The request is not valid"),
    "customer_exists": (409, "This customer already exists"),
    "customer_inactive": (409, "The customer's account is not active"),
    "plan_exists": (409, "A plan with this code already exists"),
    "plan_not_found": (404, "No such plan"),
    "clock_backwards": (409, "The sandbox clock never moves back"),
    "idempotency_key_reused": (422, "Idempotency-Key reused with a different request"),
    "idempotency_key_in_use": (409, "A request with this Idempotency-Key is still running"),
    "idempotency_response_lost": (409, "The request with this Idempotency-Key took effect; its response was lost"),
    "trial_not_eligible": (409, "Not eligible for a free trial"),
    "trial_not_available": (409, "This plan offers no free trial"),
    "invalid_signature": (400, "The webhook signature is invalid"),
    "invalid_event": (400, "The webhook event cannot be processed"),
    "refund_exceeds_payment": (422, "The refund exceeds what is left of the payment"),
    "payment_not_refundable": (409, "Only a succeeded payment can be refunded"),
    "customer_terminated": (409, "The account is terminated"),
    "currency_mismatch": (422, "Not in the customer's billing currency"),
    "billing_address_required": (422, "A customer with a tax id must give a billing address first"),
    "refund_failed": (502, "The gateway refused the refund"),
    "card_declined": (402, "The payment was declined"),
    "subscription_exists": (409, "The customer already has a live subscription"),
    "subscription_ended": (409, "The subscription has ended"),
    # C3/C4: plan change refusals (app/plan_changes), all 409, nothing changed
    "same_plan": (409, "The subscription is already on this plan"),
    "not_an_upgrade": (409, "Only a plan of a higher yearly value can start at once"),
    "plan_not_available": (409, "This plan is not offered"),
    "subscription_incomplete": (409, "The subscription has not started"),
    "subscription_past_due": (409, "A renewal payment is outstanding"),
    "customer_suspended": (409, "The account is suspended"),
    "charge_in_progress": (409, "A charge for this subscription is in flight; retry shortly"),
    "gateway_unavailable": (503, "The payment gateway is unavailable; try again later"),
    "gateway_error": (502, "The payment gateway refused the request"),
    "rate_limited": (429, "Too many requests"),
    "service_unavailable": (503, "Service unavailable"),
    "database_unavailable": (503, "The database cannot be reached; try again shortly"),
    "internal_error": (500, "Internal error"),
}


def problem(code: str, detail: str = "", status: int | None = None, **extra: Any) -> tuple[int, bytes]:
    """The status and problem+json body for `code`."""
    table_status, title = ERROR_TABLE.get(code, (500, "Error"))
    status = status or table_status
    if code == "validation_error" and "errors" not in extra:  # api.md: a validation error always lists errors
        extra["errors"] = [{"field": "body", "location": "body", "message": detail or title}]
    body = {
        "type": f"https://billing.example.com/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
        **extra,
    }
    return status, json.dumps(body, default=str).encode()
