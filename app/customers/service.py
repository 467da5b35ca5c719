"""Customer use cases: create, read, correct (P1, D2, D4)."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import changed, record
from app.auth import Principal
from app.context import AppContext
from app.customers import repository
from app.customers.repository import CustomerRow
from app.customers.rules import require_standing
from app.customers.schemas import CustomerCreate, CustomerUpdate, to_api
from app.errors import CustomerExists, ValidationFailed
from app.ids import new_id
from app.trials import repository as trial_repo
from app.trials.identity import person_identities
from app.trials.service import mark_person
from app.uow import UnitOfWork
from policies import CustomerAction, CustomerStatus

# D2: the optional billing details a correction may remove (an explicit null); the others are required.
CLEARABLE = frozenset({"address", "tax_id"})


async def create_customer(uow: UnitOfWork, principal: Principal, body: CustomerCreate) -> CustomerRow:
    """P1: the details were validated by the schema; nothing is stored when they are refused."""
    conn, now = uow.conn, uow.now
    if principal.is_ops:
        if body.external_id is None:
            raise ValidationFailed(
                "ops must give the customer's external_id",
                errors=[{"field": "external_id", "location": "body", "message": "required"}],
            )
        external_id = body.external_id
    else:
        if body.external_id not in (None, principal.sub):
            raise ValidationFailed(
                "external_id comes from your token",
                errors=[
                    {"field": "external_id", "location": "body", "message": "must be omitted or equal the token's sub"}
                ],
            )
        external_id = principal.sub
    customer_id = new_id("cus")
    row: dict[str, object] = {
        "id": customer_id,
        "external_id": external_id,
        "email": body.email,
        "name": body.name,
        "country": body.country,
        "address": None if body.address is None else body.address.model_dump(),
        "tax_id": body.tax_id,
        "marketing_opt_out": body.marketing_opt_out,
        "status": CustomerStatus.ACTIVE,
        "created_at": now,
        "updated_at": now,
    }
    if not await repository.insert_new(conn, row):
        raise CustomerExists(f"a customer with external_id {external_id!r} already exists")
    await record(
        conn,
        principal,
        "customer.created",
        now,
        subject_type="customer",
        subject_id=customer_id,
        customer_id=customer_id,
        events=[("customer.created", to_api(changed(row)))],
    )
    return await repository.get_visible(conn, principal, customer_id)


async def update_customer(uow: UnitOfWork, principal: Principal, customer_id: str, body: CustomerUpdate) -> CustomerRow:
    """D2/D4: correct name, email, country or the marketing choice. The audit names the fields, not the values."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    current = await repository.get_visible(conn, principal, customer_id, for_update=True)
    given = body.model_dump(exclude_unset=True)
    if body.address is not None:  # the whole address, its omitted lines null
        given["address"] = body.address.model_dump()
    changes = {k: v for k, v in given.items() if (v is not None or k in CLEARABLE) and getattr(current, k) != v}
    if not changes:
        return current
    require_standing(CustomerAction.CORRECT_DETAILS, current.status)
    await repository.update_fields(conn, customer_id, {**changes, "updated_at": now})
    if "email" in changes:
        await carry_trial_marks(conn, ctx, current.id, changes["email"], now)
    await record(
        conn,
        principal,
        "customer.updated",
        now,
        subject_type="customer",
        subject_id=customer_id,
        customer_id=customer_id,
        data={"fields": sorted(changes)},
        events=[("customer.updated", to_api(changed(current, **changes, updated_at=now)))],
    )
    return await repository.get_visible(conn, principal, customer_id)


async def carry_trial_marks(
    conn: AsyncConnection, ctx: AppContext, customer_id: str, new_email: str, now: _dt.datetime
) -> None:
    """T5/D3: a person who had a trial or a paid subscription stays marked under every e-mail address they use,
    so changing the address (or erasing the account later) never opens a second trial."""
    [customer_mark] = person_identities(ctx.settings.identity_key, customer_id, [])
    kind = await trial_repo.mark_kind(conn, customer_mark)
    if kind is not None:
        await mark_person(conn, person_identities(ctx.settings.identity_key, customer_id, [new_email]), kind, now)
