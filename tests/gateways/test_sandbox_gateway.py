"""The sandbox gateway's own books (sandbox_charges, sandbox_refunds) on the test database: a refund is made once
per idempotency key, as Stripe makes it (R2: the refund retry job repeats a call with our refund id as its key).
Also: both gateways implement every method of the `PaymentGateway` protocol."""

from __future__ import annotations

import asyncio
import inspect
import uuid

import pytest
from sqlalchemy import func, select

from app.clock import SystemClock
from app.db import Database
from app.gateways.base import ChargeRequest, GatewayError, PaymentGateway
from app.gateways.sandbox import SandboxGateway
from app.gateways.stripe import StripeGateway
from app.models import sandbox_charges, sandbox_refunds


@pytest.fixture
async def db(clean_db: str):
    database = Database(clean_db, pool_size=8)
    yield database
    await database.dispose()


@pytest.fixture
def gateway(db: Database) -> SandboxGateway:
    return SandboxGateway(db, SystemClock())


def request(
    key: str, payment_method: str = "pm_card_visa", amount: int = 2000, *, off_session: bool = True
) -> ChargeRequest:
    return ChargeRequest(
        amount=amount,
        currency="usd",
        payment_method=payment_method,
        customer_id="cus_1",
        gateway_customer="cus_sandbox_cus_1",
        off_session=off_session,
        idempotency_key=key,
        description="subscription sub_1",
    )


async def paid(gateway: SandboxGateway, amount: int = 2000, payment_method: str = "pm_card_visa") -> str:
    result = await gateway.charge(request(f"key-{uuid.uuid4().hex}", payment_method, amount, off_session=False))
    return result.payment_id


async def refunded(db: Database, payment_id: str) -> int:
    async with db.read() as conn:
        return (
            await conn.execute(
                select(sandbox_charges.c.refunded_amount).where(sandbox_charges.c.payment_intent_id == payment_id)
            )
        ).scalar_one()


async def rows_of(db: Database, table) -> int:
    async with db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def test_R2_a_refund_repeated_with_its_key_returns_the_first_result_and_moves_no_money(gateway, db) -> None:
    payment = await paid(gateway)
    first = await gateway.refund(payment, 500, "re_1")
    assert first.status == "succeeded" and first.refund_id.startswith("re_sandbox_")
    again = await gateway.refund(payment, 500, "re_1")
    assert again == first
    assert await refunded(db, payment) == 500
    rest = await gateway.refund(payment, 1500, "re_2")  # what is left is still refundable, once
    assert rest.status == "succeeded" and rest.refund_id != first.refund_id
    assert await refunded(db, payment) == 2000
    assert (await gateway.refund(payment, 1, "re_3")).status == "failed"
    assert await gateway.refund(payment, 1500, "re_2") == rest
    assert await refunded(db, payment) == 2000 and await rows_of(db, sandbox_refunds) == 3


async def test_R2_repeats_of_one_refund_at_once_refund_once(gateway, db) -> None:
    payment = await paid(gateway)
    results = await asyncio.gather(*(gateway.refund(payment, 700, "re_racing") for _ in range(5)))
    assert len(set(results)) == 1 and results[0].status == "succeeded"
    assert await refunded(db, payment) == 700 and await rows_of(db, sandbox_refunds) == 1


async def test_a_refusal_is_kept_under_its_key(gateway, db) -> None:
    payment = await paid(gateway, payment_method="pm_card_authenticationRequired")  # not paid yet
    refused = await gateway.refund(payment, 500, "re_early")
    assert (refused.status, refused.refund_id) == ("failed", "")
    await gateway.complete_action(payment)  # what a signed payment_intent.succeeded reports
    assert await gateway.refund(payment, 500, "re_early") == refused  # the first answer, as Stripe keeps an error
    assert (await gateway.refund(payment, 500, "re_later")).status == "succeeded"
    assert await refunded(db, payment) == 500


async def test_a_refund_over_what_is_left_is_refused_and_moves_no_money(gateway, db) -> None:
    payment = await paid(gateway, amount=1000)
    assert (await gateway.refund(payment, 1001, "re_1")).status == "failed"
    assert (await gateway.refund(payment, 0, "re_2")).status == "failed"
    assert await refunded(db, payment) == 0
    declined = await paid(gateway, payment_method="pm_card_chargeDeclined")
    assert (await gateway.refund(declined, 100, "re_3")).status == "failed"


async def test_one_key_for_another_refund_is_a_gateway_error(gateway, db) -> None:
    payment, other = await paid(gateway), await paid(gateway)
    await gateway.refund(payment, 500, "re_1")
    with pytest.raises(GatewayError, match="re_1"):
        await gateway.refund(payment, 600, "re_1")
    with pytest.raises(GatewayError, match="re_1"):
        await gateway.refund(other, 500, "re_1")
    assert await refunded(db, payment) == 500 and await refunded(db, other) == 0


async def test_a_batch_of_charges_answers_each_in_order_and_a_repeated_key_charges_once(gateway, db) -> None:
    earlier = await gateway.charge(request("sub_1:period-1:attempt-1"))
    batch = [
        request("sub_2:period-1:attempt-1"),
        request("sub_3:period-1:attempt-1", "pm_card_chargeDeclined"),
        request("sub_1:period-1:attempt-1"),
        request("sub_4:period-1:attempt-1", "pm_card_authenticationRequired"),
    ]
    results = await gateway.charge_many(batch)
    assert [(r.status, r.decline_code) for r in results] == [
        ("succeeded", None),
        ("failed", "card_declined"),
        ("succeeded", None),
        ("failed", "authentication_required"),
    ]
    assert results[2] == earlier  # charged before under its key: the first answer, no second charge
    assert len({r.payment_id for r in results}) == 4
    assert await gateway.charge_many(batch) == results  # the whole batch again (after a crash): the same answers
    assert await gateway.charge(batch[1]) == results[1]
    assert await rows_of(db, sandbox_charges) == 4
    assert await gateway.charge_many([]) == []


def _protocol_methods() -> set[str]:
    return {
        name
        for name, member in vars(PaymentGateway).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }


@pytest.mark.parametrize("gateway_class", [SandboxGateway, StripeGateway])
def test_every_gateway_implements_the_whole_protocol(gateway_class: type) -> None:
    assert "complete_action" in _protocol_methods()
    for name in _protocol_methods():
        method = getattr(gateway_class, name, None)
        assert inspect.iscoroutinefunction(method), f"{gateway_class.__name__}.{name}"
        assert (
            inspect.signature(method).parameters.keys()
            == inspect.signature(getattr(PaymentGateway, name)).parameters.keys()
        ), f"{gateway_class.__name__}.{name}"


async def test_B1_a_charge_waiting_for_action_is_canceled_once_and_a_declined_one_answers_canceled(gateway, db) -> None:
    waiting = await paid(gateway, payment_method="pm_card_authenticationRequired")
    assert await gateway.cancel_payment(waiting, "cancel:pay_1") == "canceled"
    assert await gateway.cancel_payment(waiting, "cancel:pay_1") == "canceled"  # a repeat: the same answer
    assert (await gateway.refund(waiting, 500, "re_canceled")).status == "failed"  # nothing was taken
    declined = await paid(gateway, payment_method="pm_card_chargeDeclined")
    assert await gateway.cancel_payment(declined, "cancel:pay_2") == "canceled"
    assert await gateway.cancel_payment(await paid(gateway), "cancel:pay_3") == "succeeded"  # too late: B1 refunds
    with pytest.raises(GatewayError):
        await gateway.cancel_payment("pi_sandbox_unknown", "cancel:pay_4")


async def test_B1_a_signed_success_for_a_canceled_charge_books_it_succeeded(gateway, db) -> None:
    """In the sandbox the signed webhook is the source of truth: a success reported after the cancellation is the
    customer having completed the payment first; it can then be refunded (the service refunds it in full, B1)."""
    waiting = await paid(gateway, payment_method="pm_card_authenticationRequired")
    assert await gateway.cancel_payment(waiting, "cancel:pay_1") == "canceled"
    await gateway.complete_action(waiting)
    assert await gateway.cancel_payment(waiting, "cancel:pay_1") == "succeeded"
    assert (await gateway.refund(waiting, 2000, "re_b1_pay_1")).status == "succeeded"
    assert await refunded(db, waiting) == 2000
