"""R2: ops grant account credit, case by case, with a reason, in the customer's billing currency; it is spent on the
next charges before the card."""

from __future__ import annotations

from sqlalchemy import insert, select

from app.audit.service import changed, record
from app.auth import Principal
from app.credits import repository
from app.credits.schemas import CreditCreate, to_api
from app.customers import repository as customer_repo
from app.customers.rules import require_standing
from app.errors import CurrencyMismatch, Forbidden, ValidationFailed
from app.ids import new_id
from app.models import credit_entries
from app.uow import UnitOfWork
from policies import CustomerAction, billing_currency, credit_currency_decision, credit_decision


async def grant_credit(uow: UnitOfWork, principal: Principal, customer_id: str, body: CreditCreate):
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    decision = credit_decision(principal.role, body.amount, body.reason)
    if not decision.allowed:
        raise (Forbidden if decision.code == "forbidden" else ValidationFailed)(decision.reason, rule=decision.rule)
    customer = await customer_repo.get_visible(conn, principal, customer_id, for_update=True)
    require_standing(CustomerAction.GRANT_CREDIT, customer.status)
    in_currency = credit_currency_decision(
        body.currency, billing_currency(*await repository.billing_currency_facts(conn, customer.id))
    )
    if not in_currency.allowed:
        raise CurrencyMismatch(in_currency.reason, rule=in_currency.rule)
    policy = ctx.policies.at(now)
    credit_id = new_id("cred")
    credit = {
        "id": credit_id,
        "customer_id": customer.id,
        "kind": "grant",
        "amount": body.amount,
        "currency": body.currency,
        "reason": body.reason,
        "created_by": principal.sub,
        "payment_id": None,
        "policy_version": policy.version,
        "created_at": now,
    }
    await conn.execute(insert(credit_entries).values(credit))
    await record(
        conn,
        principal,
        "credit.granted",
        now,
        subject_type="credit",
        subject_id=credit_id,
        customer_id=customer.id,
        reason=body.reason,
        policy_version=policy.version,
        data={"amount": body.amount, "currency": body.currency},
        events=[("credit.granted", to_api(changed(credit)))],
    )
    return (await conn.execute(select(credit_entries).where(credit_entries.c.id == credit_id))).one()
