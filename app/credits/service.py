"""R2: ops grant account credit, case by case, with a reason, in the customer's billing currency; it is spent on the
next charges before the card."""

from __future__ import annotations

from app.audit.service import changed, record
from app.auth import Principal
from app.credits import repository
from app.credits.repository import CreditRow
from app.credits.schemas import CreditCreate, to_api
from app.customers import repository as customer_repo
from app.customers.rules import require_standing
from app.errors import refuse_unless
from app.ids import new_id
from app.uow import UnitOfWork
from policies import CustomerAction, billing_currency, credit_currency_decision, credit_decision
from policies.states import CreditKind


async def grant_credit(uow: UnitOfWork, principal: Principal, customer_id: str, body: CreditCreate) -> CreditRow:
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    refuse_unless(credit_decision(principal.role, body.amount, body.reason))
    customer = await customer_repo.get_visible(conn, principal, customer_id, for_update=True)
    require_standing(CustomerAction.GRANT_CREDIT, customer.status)
    facts = await repository.billing_currency_facts(conn, customer.id)
    refuse_unless(credit_currency_decision(body.currency, billing_currency(*facts)))
    policy = ctx.policies.at(now)
    credit_id = new_id("cred")
    credit = {
        "id": credit_id,
        "customer_id": customer.id,
        "kind": CreditKind.GRANT,
        "amount": body.amount,
        "currency": body.currency,
        "reason": body.reason,
        "created_by": principal.sub,
        "payment_id": None,
        "policy_version": policy.version,
        "created_at": now,
    }
    await repository.add(conn, credit)
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
    return await repository.get(conn, credit_id)
