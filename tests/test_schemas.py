"""Each API resource is declared once, as a Pydantic model (app/*/schemas.py): its OpenAPI schema and its
serialiser `to_api` are both derived from it (app.schemas.serialiser). The serialiser reads a SQLAlchemy Row by
position and anything else by attribute: both give the same object, in the model's field order; a field without a
column fails when the module is imported."""

from __future__ import annotations

import datetime as _dt
from enum import StrEnum
from types import SimpleNamespace
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel
from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, create_engine, insert, select

from app.audit.schemas import AuditEvent
from app.audit.schemas import to_api as audit_event_to_api
from app.credits.schemas import Credit, CreditList
from app.credits.schemas import to_api as credit_to_api
from app.customers.schemas import Customer
from app.customers.schemas import to_api as customer_to_api
from app.events.schemas import Event
from app.events.schemas import to_api as event_to_api
from app.models import (
    audit_events,
    credit_entries,
    customers,
    events,
    notices,
    payments,
    plans,
    refunds,
    subscriptions,
    trials,
)
from app.models.base import UTCDateTime
from app.notices.schemas import Notice
from app.notices.schemas import to_api as notice_to_api
from app.payments.schemas import Payment, PaymentList
from app.payments.schemas import to_api as payment_to_api
from app.plans.schemas import Plan
from app.plans.schemas import to_api as plan_to_api
from app.refunds.schemas import Refund
from app.refunds.schemas import to_api as refund_to_api
from app.schemas import From, Given, ListOf, Money, reader, serialiser
from app.subscriptions.schemas import Subscription, subscription_facts
from app.subscriptions.schemas import to_api as subscription_to_api
from app.trials.schemas import Trial
from app.trials.schemas import to_api as trial_to_api
from policies import SubscriptionFacts
from policies.states import (
    CreditKind,
    CustomerStatus,
    EndedReason,
    GatewayName,
    Interval,
    NoticeCategory,
    NoticeStatus,
    PaymentPurpose,
    PaymentStatus,
    RefundSource,
    RefundStatus,
    SubscriptionStatus,
    Tier,
    TrialStatus,
)

RESOURCES = [
    (Payment, payments, payment_to_api),
    (Subscription, subscriptions, subscription_to_api),
    (Plan, plans, plan_to_api),
    (Customer, customers, customer_to_api),
    (Trial, trials, trial_to_api),
    (Refund, refunds, refund_to_api),
    (Credit, credit_entries, credit_to_api),
    (Notice, notices, notice_to_api),
    (Event, events, event_to_api),
    (AuditEvent, audit_events, audit_event_to_api),
]
AT = _dt.datetime(2027, 2, 10, 12, tzinfo=_dt.UTC)
# The columns that hold a state: their values are its members.
STATE_COLUMNS: dict[tuple[str, str], type[StrEnum]] = {
    ("payments", "purpose"): PaymentPurpose,
    ("payments", "status"): PaymentStatus,
    ("payments", "gateway"): GatewayName,
    ("subscriptions", "status"): SubscriptionStatus,
    ("subscriptions", "ended_reason"): EndedReason,
    ("subscriptions", "interval"): Interval,
    ("plans", "tier"): Tier,
    ("plans", "interval"): Interval,
    ("customers", "status"): CustomerStatus,
    ("trials", "status"): TrialStatus,
    ("refunds", "source"): RefundSource,
    ("refunds", "status"): RefundStatus,
    ("credit_entries", "kind"): CreditKind,
    ("notices", "category"): NoticeCategory,
    ("notices", "status"): NoticeStatus,
}


def _value(column: Column, i: int) -> object:
    if column.nullable and not column.primary_key and i % 2:
        return None
    states = STATE_COLUMNS.get((column.table.name, column.name))
    if states is not None:
        return list(states)[i % len(states)].value
    if isinstance(column.type, UTCDateTime):
        return AT + _dt.timedelta(minutes=i)
    if isinstance(column.type, Boolean):
        return i % 2 == 0
    if isinstance(column.type, Integer):
        return 100 + i
    if isinstance(column.type, JSON) or isinstance(getattr(column.type, "impl", None), JSON):
        return {"object": {"id": f"x_{i}"}}
    return f"{column.name}_{i}"


def rows_of(table: Table, extra: tuple[str, ...] = ()) -> list:
    """Rows with `table`'s columns and types (without its constraints), as SQLAlchemy returns them; `extra`
    columns first, as a join would add them."""
    loose = Table(
        table.name,
        MetaData(),
        *(Column(name, String) for name in extra),
        *(Column(c.name, c.type, primary_key=c.primary_key) for c in table.c),
    )
    engine = create_engine("sqlite://")
    loose.metadata.create_all(engine)
    with engine.begin() as conn:
        values = [{**{n: f"{n}_{i}" for n in extra}, **{c.name: _value(c, i) for c in table.c}} for i in range(4)]
        conn.execute(insert(loose), values)
        rows = conn.execute(select(loose)).all()
    engine.dispose()
    return rows


@pytest.mark.parametrize(("model", "table", "to_api"), RESOURCES, ids=[m.__name__ for m, _t, _f in RESOURCES])
def test_a_row_and_a_snapshot_serialise_alike_in_the_models_field_order(model, table, to_api) -> None:
    for row in rows_of(table) + rows_of(table, extra=("other", "plan_name")):
        api = to_api(row)
        assert api == to_api(SimpleNamespace(**row._mapping))
        assert list(api) == list(model.model_fields)
        assert api["object"] == model.model_fields["object"].default
        model.model_validate(api)  # the declared shape, also for the documented (OpenAPI) schema


def test_renamed_nested_and_given_fields_come_from_their_declared_sources() -> None:
    [row, *_] = rows_of(subscriptions)
    api = subscription_to_api(row, "pi_secret")
    assert api["plan"] == row.plan_code
    assert api["price"] == {"amount": row.price_amount, "currency": row.currency}
    assert api["tax"] == {"amount": row.tax_amount, "currency": row.currency}
    assert api["client_secret"] == "pi_secret" and subscription_to_api(row)["client_secret"] is None
    [plan, *_] = rows_of(plans)
    assert plan_to_api(plan)["price"] == {"amount": plan.amount, "currency": plan.currency}
    [event, *_] = rows_of(events)
    assert event_to_api(event)["timestamp"] == event.created_at == event_to_api(event)["created_at"]
    assert subscription_facts(row) == subscription_facts(SimpleNamespace(**row._mapping))
    assert isinstance(subscription_facts(row), SubscriptionFacts)


def test_a_field_without_a_column_fails_when_the_serialiser_is_derived() -> None:
    class Missing(BaseModel):
        object: Literal["payment"] = "payment"
        id: str
        colour: str

    with pytest.raises(TypeError, match="'colour' has no column 'colour'"):
        serialiser(Missing, payments)

    class Renamed(BaseModel):
        object: Literal["payment"] = "payment"
        total: Annotated[int, From("total_amount")]

    with pytest.raises(TypeError, match="has no column 'total_amount'"):
        serialiser(Renamed, payments)

    class HalfMoney(BaseModel):
        object: Literal["payment"] = "payment"
        price: Annotated[Money, From(amount="price_amount")]

    with pytest.raises(TypeError, match="must map each field of its model"):
        serialiser(HalfMoney, payments)

    class NoObject(BaseModel):
        object: str
        id: str

    with pytest.raises(TypeError, match="`object` must be a Literal"):
        serialiser(NoObject, payments)

    with pytest.raises(TypeError, match="no column 'colour'"):
        reader(payments, "id", "colour")


def test_a_given_field_is_a_keyword_with_the_fields_default() -> None:
    class Shown(BaseModel):
        object: Literal["payment"] = "payment"
        id: str
        note: Annotated[str, Given()] = "none"

    to_api = serialiser(Shown, payments)
    assert to_api(SimpleNamespace(id="pay_1")) == {"object": "payment", "id": "pay_1", "note": "none"}
    assert to_api(SimpleNamespace(id="pay_1"), note="yes")["note"] == "yes"


# --- the documented shapes ---------------------------------------------------------------------------------------


def _enum(schema: dict, components: dict) -> list[str]:
    for option in schema.get("anyOf", [schema]):
        if "$ref" in option:
            return components[option["$ref"].rsplit("/", 1)[1]]["enum"]
        if "enum" in option:
            return option["enum"]
    raise AssertionError(schema)


STATES: list[tuple[type[BaseModel], str, type[StrEnum]]] = [
    (Customer, "status", CustomerStatus),
    (Subscription, "status", SubscriptionStatus),
    (Subscription, "ended_reason", EndedReason),
    (Payment, "purpose", PaymentPurpose),
    (Payment, "status", PaymentStatus),
    (Payment, "gateway", GatewayName),
    (Plan, "tier", Tier),
    (Plan, "interval", Interval),
    (Trial, "status", TrialStatus),
    (Refund, "source", RefundSource),
    (Refund, "status", RefundStatus),
    (Credit, "kind", CreditKind),
    (Notice, "category", NoticeCategory),
    (Notice, "status", NoticeStatus),
]


@pytest.mark.parametrize(("model", "field", "states"), STATES, ids=[f"{m.__name__}.{f}" for m, f, _s in STATES])
def test_status_and_kind_fields_document_their_states_enum(model, field, states) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    assert _enum(schema["properties"][field], schema.get("$defs", {})) == [s.value for s in states]


def test_lists_share_one_envelope_and_keep_their_documented_names() -> None:
    assert issubclass(PaymentList, ListOf) and PaymentList.__name__ == "PaymentList"
    schema = PaymentList.model_json_schema()
    assert schema["title"] == "PaymentList"
    assert set(schema["properties"]) == {"object", "data", "has_more"}
    assert schema["properties"]["object"]["const"] == "list"
    assert set(CreditList.model_json_schema()["properties"]) == {"object", "data", "has_more", "balances"}
