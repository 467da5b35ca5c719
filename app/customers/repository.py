"""Every statement about customers (those a standing change makes to what they hold: standing_repository.py;
those of an erasure: erasure_repository.py).

Rows come back typed by the protocols below: a `Row` has these attributes, so typing them costs nothing at run
time (no conversion on the hot read path)."""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Mapping
from typing import Any, Protocol, cast

from sqlalchemy import Row, Select, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import Principal
from app.db import insert_ignoring_conflict
from app.errors import NotFound
from app.models import customers, plans
from policies import CustomerStatus


class CustomerRow(Protocol):
    """A row of `customers`."""

    id: str
    external_id: str | None
    email: str | None
    name: str | None
    country: str | None
    marketing_opt_out: bool
    gateway_customer_id: str | None
    status: str
    created_at: _dt.datetime
    updated_at: _dt.datetime
    address: dict[str, Any] | None  # I1: the billing address {line1, line2, city, postal_code, region}
    tax_id: str | None  # I1/P2: a VAT or GST number


@functools.cache
def _owned(
    table: Table, scoped: bool, for_update: bool, with_plan_name: bool = False, extra: tuple[Any, ...] = ()
) -> Select[Any]:
    """The statement reading one object of `table`, limited to the token's own customer when `scoped`: built once,
    so SQLAlchemy reuses its compiled form (the hot read path does no statement building). `with_plan_name` adds
    the name of the object's plan (`plan_name`), for a notice that names it, without a second read."""
    stmt = select(table).where(table.c.id == bindparam("object_id"))
    if scoped:
        if table is customers:
            stmt = stmt.where(customers.c.external_id == bindparam("sub"))
        else:
            stmt = stmt.join(customers, customers.c.id == table.c.customer_id).where(
                customers.c.external_id == bindparam("sub")
            )
    if with_plan_name:
        # A subquery, not a join: a row locked after a concurrent plan change (C3/C4) is re-read with its new plan
        # (PostgreSQL re-checks a join against the old plan's row and would skip it).
        name = select(plans.c.name).where(plans.c.id == table.c.plan_id).scalar_subquery()
        stmt = stmt.add_columns(name.label("plan_name"))
    if extra:  # labelled columns the caller needs in the same round trip (built once by the caller, so cacheable)
        stmt = stmt.add_columns(*extra)
    return stmt.with_for_update(of=table) if for_update else stmt


async def get_visible(
    conn: AsyncConnection, principal: Principal, customer_id: str, *, for_update: bool = False
) -> CustomerRow:
    """The customer, if the caller may see it; otherwise 404 (a customer token sees only its own)."""
    return cast(
        CustomerRow, await get_owned(conn, principal, customers, customer_id, "customer", for_update=for_update)
    )


async def get_owned(
    conn: AsyncConnection,
    principal: Principal,
    table: Table,
    object_id: str,
    noun: str,
    *,
    for_update: bool = False,
    with_plan_name: bool = False,
    extra: tuple[Any, ...] = (),
) -> Row[Any]:
    """A row of `table` (a customer, or an object with a `customer_id`) if the caller may see it; otherwise 404.
    The one place where a customer token is limited to its own customer's objects (existence is not revealed)."""
    scoped = not principal.is_ops
    params = {"object_id": object_id, "sub": principal.sub} if scoped else {"object_id": object_id}
    row = (await conn.execute(_owned(table, scoped, for_update, with_plan_name, extra), params)).first()
    if row is None:
        raise NotFound(f"no {noun} {object_id!r}")
    return row


async def get(conn: AsyncConnection, customer_id: str) -> CustomerRow:
    return cast(CustomerRow, (await conn.execute(select(customers).where(customers.c.id == customer_id))).one())


async def insert_new(conn: AsyncConnection, row: Mapping[str, Any]) -> bool:
    """P1: store a new customer; False if one with its `external_id` exists already (nothing is stored)."""
    return bool(await insert_ignoring_conflict(conn, customers, dict(row), conflict_on=["external_id"]) == 1)


async def update_fields(conn: AsyncConnection, customer_id: str, fields: Mapping[str, Any]) -> None:
    """D2/D4/R3/D3: write `fields` (details, the marketing choice, the status, `updated_at`) of the customer."""
    await conn.execute(update(customers).where(customers.c.id == customer_id).values(**fields))


# D3: the customer's fields once erased (with `updated_at`).
ERASED_FIELDS: dict[str, Any] = {
    "email": None,
    "name": None,
    "country": None,
    "external_id": None,
    "gateway_customer_id": None,
    "address": None,
    "tax_id": None,
    "status": CustomerStatus.ERASED,
    "marketing_opt_out": True,
}
