"""The payment gateway interface, shaped after Stripe's PaymentIntents. The service never sees card data: it
passes payment method ids (`pm_...`) that the frontend obtained from the gateway."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from app.errors import DomainError


@dataclass(frozen=True)
class ChargeRequest:
    amount: int  # minor units, > 0
    currency: str
    payment_method: str
    customer_id: str  # our customer id
    gateway_customer: str  # the gateway's customer for it (`create_customer`), stored on our customer
    off_session: bool  # False: the customer is present (purchase); True: renewals and retries
    idempotency_key: str  # derived from our ids, so a repeated call never charges twice
    description: str


@dataclass(frozen=True)
class ChargeResult:
    status: Literal["succeeded", "requires_action", "failed"]
    payment_id: str  # the PaymentIntent id
    client_secret: str | None = None  # for the customer's action (3-D Secure) when status is requires_action
    decline_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    status: Literal["succeeded", "pending", "failed"]


# What a gateway reports (its webhooks), in the service's terms: app/webhooks/service.py applies these, never a
# gateway's wire format (Stripe's is parsed in app/gateways/stripe_events.py).


@dataclass(frozen=True, slots=True)
class PaymentSucceeded:
    """A payment the gateway reports as succeeded (a customer's action completed, a charge whose answer we lost)."""

    payment_id: str  # the gateway's payment (PaymentIntent) id
    idempotency_key: str | None  # the key we charged with, if the gateway echoes it (an answer we lost has no id)


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    """A payment attempt the gateway reports as failed (not final at Stripe: the customer may retry it)."""

    payment_id: str
    idempotency_key: str | None
    decline_code: str


@dataclass(frozen=True, slots=True)
class RefundMade:
    """A refund the gateway has made or is making (succeeded or pending there)."""

    refund_id: str  # the gateway's
    amount: int
    ours: str | None  # our refund id, for a refund we asked for


@dataclass(frozen=True, slots=True)
class RefundsReported:
    """Every refund the gateway lists on a payment of ours (its own dashboard's included)."""

    payment_id: str  # the gateway's payment id ("" when it gave none)
    made: tuple[RefundMade, ...]


@dataclass(frozen=True, slots=True)
class DisputeOpened:
    """A chargeback."""

    dispute_id: str | None
    payment_id: str  # "" when the gateway gave none
    amount: int | None
    reason: str | None
    status: str | None


GatewayFact = PaymentSucceeded | PaymentFailed | RefundsReported | DisputeOpened


class GatewayUnavailable(DomainError):
    """The gateway could not be reached or kept failing after bounded retries (503). Nothing is assumed to have
    happened: the charge keeps its idempotency key, so trying again later cannot charge twice."""

    code = "gateway_unavailable"


class GatewayError(DomainError):
    """The gateway refused the request for a reason that is not the card's (502), e.g. invalid parameters."""

    code = "gateway_error"


class PaymentGateway(Protocol):
    name: str  # "sandbox" | "stripe"

    async def create_customer(self, customer_id: str) -> str:
        """The gateway's customer for our customer (idempotent per customer id); payment methods attach to it."""
        ...

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        """Create and confirm a PaymentIntent. Declines are a `failed` result, never an exception."""
        ...

    async def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeOutcome]:
        """`charge` for each request of a batch (renewals, retries), each under its own idempotency key: the
        outcome of each, in the order of the requests. A charge left without a result has the error instead of
        raising it, so it holds up nothing else: `GatewayUnavailable` (no answer) or `GatewayError` (the gateway
        refused the request itself, not the card: a configuration or request problem)."""
        ...

    async def refund(self, payment_id: str, amount: int, idempotency_key: str) -> RefundResult:
        """Refund part or all of a succeeded PaymentIntent, once per idempotency key (R2: our refund id): a repeat
        with the same key returns the first result and moves no money."""
        ...

    async def cancel_payment(self, payment_id: str, idempotency_key: str) -> Literal["canceled", "succeeded"]:
        """B1: cancel a PaymentIntent whose purchase failed or was abandoned, so that it can no longer succeed
        (idempotent: a repeat, or an intent canceled or declined already, answers `canceled`). `succeeded`: too late,
        the money was taken; the caller records the success, which then refunds it (B1). No answer:
        `GatewayUnavailable`; a refusal: `GatewayError`; the caller tries again later either way."""
        ...

    async def complete_action(self, payment_intent_id: str) -> None:
        """A signed `payment_intent.succeeded` webhook reported that the customer completed the action a payment
        needed (3-D Secure): the gateway's own books follow it. The sandbox marks its charge succeeded, so it can be
        refunded; Stripe keeps its own books, so there it does nothing."""
        ...

    async def aclose(self) -> None:
        """Release connections at shutdown."""
        ...


ChargeOutcome = ChargeResult | GatewayUnavailable | GatewayError  # what `charge_many` gives for each request

log = logging.getLogger("billing.gateways")
CONCURRENT_CHARGES = 8  # calls in flight at once for a batch charged one call at a time


# The idempotency keys of a batch's charges that are not to be started any more: the batch's liveness lease on
# their subscriptions was lost (app/subscriptions/tasks.py), so another run may be charging them with the same keys.
# The batch sets it (a set it adds to while it charges) around its `charge_many` call.
withdrawn_charges: contextvars.ContextVar[set[str] | frozenset[str]] = contextvars.ContextVar(
    "withdrawn_charges", default=frozenset()
)


async def charge_each(
    charge: Callable[[ChargeRequest], Awaitable[ChargeResult]], requests: Sequence[ChargeRequest]
) -> list[ChargeOutcome]:
    """`charge_many` for a gateway that takes one charge per call (Stripe): at most `CONCURRENT_CHARGES` calls in
    flight. Anything unexpected stops the calls not yet made (TaskGroup) and is raised. A charge whose key is in
    `withdrawn_charges` by the time its turn comes is not started (`GatewayUnavailable`: no answer)."""
    gate = asyncio.Semaphore(CONCURRENT_CHARGES)

    withdrawn = withdrawn_charges.get()

    async def one(request: ChargeRequest) -> ChargeOutcome:
        async with gate:
            if request.idempotency_key in withdrawn:  # not started: no answer, taken over with the same key
                return GatewayUnavailable("the batch's lease on this charge was lost; it was not started")
            try:
                return await charge(request)
            except GatewayUnavailable as exc:
                log.warning(
                    "gateway unavailable; the charge will be retried with the same key",
                    extra={"idempotency_key": request.idempotency_key},
                )
                return exc
            except GatewayError as exc:
                log.error(
                    "the gateway refused a charge; it will be retried with the same key",
                    extra={"idempotency_key": request.idempotency_key, "error": str(exc)},
                )
                return exc

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(request)) for request in requests]
    return [task.result() for task in tasks]
