"""Customer use cases: create, read, correct (P1, D2, D4)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.service import changed, record
from app.auth import Principal
from app.context import AppContext
from app.customers import repository
from app.customers.schemas import CustomerCreate, CustomerUpdate, to_api
from app.db import insert_ignoring_conflict
from app.errors import CustomerExists, ValidationFailed
from app.ids import new_id
from app.models import customers, trial_exclusions
from app.trials.identity import person_identities
from app.trials.service import mark_person
from app.uow import UnitOfWork


async def create_customer(uow: UnitOfWork, principal: Principal, body: CustomerCreate):
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
    row = {
        "id": new_id("cus"),
        "external_id": external_id,
        "email": body.email,
        "name": body.name,
        "country": body.country,
        "marketing_opt_out": body.marketing_opt_out,
        "status": "active",
        "created_at": now,
        "updated_at": now,
    }
    inserted = await insert_ignoring_conflict(conn, customers, row, conflict_on=["external_id"])
    if inserted != 1:
        raise CustomerExists(f"a customer with external_id {external_id!r} already exists")
    await record(
        conn,
        principal,
        "customer.created",
        now,
        subject_type="customer",
        subject_id=row["id"],
        customer_id=row["id"],
        events=[("customer.created", to_api(changed(row)))],
    )
    return await repository.get_visible(conn, principal, row["id"])


async def update_customer(uow: UnitOfWork, principal: Principal, customer_id: str, body: CustomerUpdate):
    """D2/D4: correct name, email, country or the marketing choice. The audit names the fields, not the values."""
    conn, ctx, now = uow.conn, uow.ctx, uow.now
    current = await repository.get_visible(conn, principal, customer_id, for_update=True)
    changes = {
        k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None and getattr(current, k) != v
    }
    if not changes:
        return current
    if current.status == "erased":
        raise ValidationFailed(
            "an erased customer has no details to correct",
            errors=[{"field": "customer_id", "location": "path", "message": "the customer was erased"}],
        )
    await conn.execute(update(customers).where(customers.c.id == customer_id).values(**changes, updated_at=now))
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


async def carry_trial_marks(conn: AsyncConnection, ctx: AppContext, customer_id: str, new_email: str, now) -> None:  # noqa: ANN001
    """T5/D3: a person who had a trial or a paid subscription stays marked under every e-mail address they use,
    so changing the address (or erasing the account later) never opens a second trial."""
    [customer_mark] = person_identities(ctx.settings.identity_key, customer_id, [])
    kind = (
        await conn.execute(select(trial_exclusions.c.kind).where(trial_exclusions.c.identity == customer_mark))
    ).scalar()
    if kind is not None:
        await mark_person(conn, person_identities(ctx.settings.identity_key, customer_id, [new_email]), kind, now)
