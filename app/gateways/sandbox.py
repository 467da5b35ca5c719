"""The sandbox gateway: behaves like Stripe's test payment methods, with its ledger in the database.

- `pm_card_visa` (and any other `pm_card_*` not named below) succeeds;
- `pm_card_visa_chargeDeclined` and `pm_card_chargeDeclined` are declined (`card_declined`);
- `pm_card_authenticationRequired` needs the customer's action; off-session it fails with
  `authentication_required`; on-session it completes only through a signed `payment_intent.succeeded` webhook.

B1: a charge still waiting for the customer's action can be canceled (`cancel_payment`); a declined one answers
canceled too (it can never succeed). In the sandbox the signed webhook is the only source of truth about the
customer's side: a signed `payment_intent.succeeded` for a canceled charge is taken as Stripe reporting that the
customer completed it before the cancellation reached it (the race B1 corrects), so the sandbox books it succeeded
and it can be refunded (the service then refunds it in full, B1).

Each charge is recorded under its idempotency key, by a statement of its own (a batch of charges by one statement),
like a call to an outside system, so a charge repeated after a crash returns the first result and never charges
twice. Each refund is too (`sandbox_refunds`, written in the transaction that moves the charge's refunded amount),
so a refund repeated with its key (R2: the retry job, or a call whose answer was slow) returns the first result
and never refunds twice.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from app.gateways.base import ChargeOutcome, ChargeRequest, ChargeResult, GatewayError, RefundResult
from app.ids import new_id
from app.sandbox import repository as ledger
from app.sandbox.repository import ChargeStatus, SandboxCharge

if TYPE_CHECKING:
    from app.clock import SystemClock
    from app.db import Database

DECLINED = frozenset({"pm_card_visa_chargeDeclined", "pm_card_chargeDeclined", "pm_card_chargeCustomerFail"})
NEEDS_ACTION = frozenset({"pm_card_authenticationRequired"})


def _outcome(request: ChargeRequest) -> tuple[ChargeStatus, str | None]:
    if not request.payment_method.startswith("pm_"):
        return ChargeStatus.FAILED, "invalid_payment_method"
    if request.payment_method in DECLINED:
        return ChargeStatus.FAILED, "card_declined"
    if request.payment_method in NEEDS_ACTION:
        if request.off_session:
            return ChargeStatus.FAILED, "authentication_required"
        return ChargeStatus.REQUIRES_ACTION, None
    return ChargeStatus.SUCCEEDED, None


class SandboxGateway:
    name = "sandbox"

    def __init__(self, db: Database, clock: SystemClock) -> None:
        self._db = db
        self._clock = clock

    async def create_customer(self, customer_id: str) -> str:
        return f"cus_sandbox_{customer_id}"

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        return (await self._charges([request]))[0]

    async def charge_many(self, requests: Sequence[ChargeRequest]) -> list[ChargeOutcome]:
        return list(await self._charges(requests))

    async def _charges(self, requests: Sequence[ChargeRequest]) -> list[ChargeResult]:
        """One statement on an autocommit connection, atomic per charge: the new charges are recorded under their
        keys and returned; a key recorded before (a repeat) is read back and answers as the first charge did. The
        sandbox always answers: every outcome is a `ChargeResult`."""
        if not requests:
            return []
        wall = self._clock.wall()
        async with self._db.autocommit() as conn:
            rows = {
                row.idempotency_key: row
                for row in await ledger.record_charges(conn, [self._record(request, wall) for request in requests])
            }
            repeats = [r.idempotency_key for r in requests if r.idempotency_key not in rows]
            if repeats:
                rows.update((row.idempotency_key, row) for row in await ledger.charges_by_key(conn, repeats))
        return [self._result(rows[request.idempotency_key]) for request in requests]

    @staticmethod
    def _record(request: ChargeRequest, wall: _dt.datetime) -> dict[str, Any]:
        status, decline = _outcome(request)
        return {
            "idempotency_key": request.idempotency_key,
            "payment_intent_id": "pi_sandbox_" + hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:24],
            "amount": request.amount,
            "currency": request.currency,
            "payment_method": request.payment_method,
            "status": status,
            "decline_code": decline,
            "refunded_amount": 0,
            "created_at": wall,
        }

    @staticmethod
    def _result(row: SandboxCharge) -> ChargeResult:
        status: Literal["succeeded", "requires_action", "failed"] = (
            "succeeded"
            if row.status == ChargeStatus.SUCCEEDED
            else "requires_action"
            if row.status == ChargeStatus.REQUIRES_ACTION
            else "failed"
        )  # canceled: B1
        secret = f"{row.payment_intent_id}_secret_sandbox" if status == "requires_action" else None
        return ChargeResult(
            status=status,
            payment_id=row.payment_intent_id,
            client_secret=secret,
            decline_code=row.decline_code or ("canceled" if row.status == ChargeStatus.CANCELED else None),
            message={
                "card_declined": "Your card was declined.",
                "authentication_required": "This payment needs the customer's authentication.",
                "invalid_payment_method": "Unknown payment method.",
            }.get(row.decline_code or ""),
        )

    async def aclose(self) -> None:
        """Nothing to release: the ledger uses the service's own database."""

    async def complete_action(self, payment_intent_id: str) -> None:
        """The customer completed 3-D Secure (what a signed `payment_intent.succeeded` reports)."""
        async with self._db.autocommit() as conn:  # one statement
            await ledger.complete_action(conn, payment_intent_id)

    async def cancel_payment(self, payment_id: str, idempotency_key: str) -> Literal["canceled", "succeeded"]:
        """B1: a charge waiting for the customer's action is canceled; one declined or canceled already answers
        `canceled`; one that succeeded answers `succeeded`. Unknown: a `GatewayError` (nothing to cancel)."""
        async with self._db.autocommit() as conn:
            status = await ledger.cancel(conn, payment_id)
        if status is None:
            raise GatewayError(f"no sandbox charge {payment_id!r} to cancel")
        return "succeeded" if status == ChargeStatus.SUCCEEDED else "canceled"

    async def refund(self, payment_id: str, amount: int, idempotency_key: str) -> RefundResult:
        """Refund part or all of a succeeded charge, once per idempotency key (as Stripe does): a repeat with the same
        key returns the first result, refusal included, and moves no money; the same key for another refund is a
        `GatewayError`. The charge's row lock orders concurrent refunds of it, repeats of one key included."""
        async with self._db.transaction() as conn:
            row = await ledger.lock_charge(conn, payment_id)
            refused = amount < 1 or row.status != ChargeStatus.SUCCEEDED or row.refunded_amount + amount > row.amount
            recorded = await ledger.record_refund(
                conn,
                {
                    "idempotency_key": idempotency_key,
                    "payment_intent_id": payment_id,
                    "amount": amount,
                    "refund_id": None if refused else new_id("re_sandbox"),
                    "status": "failed" if refused else "succeeded",
                    "created_at": self._clock.wall(),
                },
            )
            if recorded and not refused:
                await ledger.add_refunded(conn, payment_id, amount)
            # A key recorded before (a repeat) answers as its first refund did.
            first = recorded[0] if recorded else await ledger.refund_by_key(conn, idempotency_key)
        if (first.payment_intent_id, first.amount) != (payment_id, amount):
            raise GatewayError(
                f"idempotency key {idempotency_key!r} was used for another refund "
                f"({first.amount} of {first.payment_intent_id})"
            )
        status: Literal["succeeded", "failed"] = "succeeded" if first.status == "succeeded" else "failed"
        return RefundResult(refund_id=first.refund_id or "", status=status)
