"""The API's conventions (api.md "Conventions"): problem+json errors, validation errors that name the fields, no mass
assignment, Idempotency-Key, cursor pagination, RFC 3339 UTC times and integer money."""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import re

import pytest
from sqlalchemy import func, select, update

from app.db import Database
from app.models import idempotency_keys
from tests.api import shared
from tests.conftest import (
    START,
    customer_headers,
    make_customer,
    make_plan,
    ops_headers,
)

client = shared.client  # fixtures: one app per module, see tests/api/shared.py
module_client = shared.module_client

PROBLEM_JSON = "application/problem+json"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")

PLAN_BODY = {
    "code": "idem-plan",
    "name": "Idempotent",
    "tier": "subscription",
    "interval": "month",
    "amount": 1000,
    "currency": "usd",
    "trial_available": False,
}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body = response.json()
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["code"] == code
    return body


def error_fields(response) -> set[str]:
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"], body
    for error in body["errors"]:
        assert {"field", "message"} <= set(error), error
    return {e["field"] for e in body["errors"]}


def plan_codes(client) -> list[str]:
    return [p["code"] for p in client.get("/v1/plans", params={"limit": 100}).json()["data"]]


def on_database(url: str, work):
    """Run `work(conn)` in a transaction on the test database, from outside the app (as another replica would)."""

    async def run():
        db = Database(url, pool_size=1)
        try:
            async with db.transaction() as conn:
                return await work(conn)
        finally:
            await db.dispose()

    return asyncio.run(run())


# --- problem+json -----------------------------------------------------------------------------------------------

PROBLEMS = {
    "unauthenticated": (lambda c: c.get("/v1/sandbox/clock"), 401, "unauthenticated"),
    "forbidden": (lambda c: c.post("/v1/sandbox/run-due", headers=customer_headers("c-1")), 403, "forbidden"),
    "unknown_route": (lambda c: c.get("/v1/no-such-thing"), 404, "not_found"),
    "unknown_resource": (lambda c: c.get("/v1/customers/cus_missing", headers=ops_headers()), 404, "not_found"),
    "unknown_plan": (lambda c: c.get("/v1/plans/no-such-plan"), 404, "plan_not_found"),
    "wrong_method": (lambda c: c.put("/v1/plans", headers=ops_headers()), 405, "method_not_allowed"),
    "validation": (lambda c: c.post("/v1/plans", json={}, headers=ops_headers()), 422, "validation_error"),
    "conflict": (
        lambda c: c.post("/v1/sandbox/clock", json={"now": "2000-01-01T00:00:00Z"}, headers=ops_headers()),
        409,
        "clock_backwards",
    ),
}


@pytest.mark.parametrize("case", sorted(PROBLEMS))
def test_errors_are_problem_json(client, case: str) -> None:
    request, status, code = PROBLEMS[case]
    body = assert_problem(request(client), status, code)
    assert body["type"].endswith(code)  # a stable type per code


def test_validation_error_lists_every_offending_field(client) -> None:
    response = client.post(
        "/v1/plans", json={**PLAN_BODY, "tier": "gold", "currency": "USD", "amount": -5}, headers=ops_headers()
    )
    assert error_fields(response) == {"tier", "currency", "amount"}
    for error in response.json()["errors"]:
        assert error["location"] == "body"


def test_validation_error_lists_missing_fields(client) -> None:
    response = client.post("/v1/customers", json={"name": "Ada"}, headers=customer_headers("c-1"))
    assert error_fields(response) == {"email", "country"}


def test_validation_error_names_query_parameters(client) -> None:
    response = client.get("/v1/plans", params={"limit": "many"})
    assert error_fields(response) == {"limit"}
    assert response.json()["errors"][0]["location"] == "query"


@pytest.mark.parametrize(
    "raw",
    [b'{"email": ', b"not json", b'{"email": "a@example.com",}', b"{'a': 1}", b"\xff\xfe{"],
    ids=["truncated", "text", "trailing_comma", "single_quotes", "not_utf8"],
)
def test_malformed_json_is_422_naming_the_body_and_stores_nothing(client, raw: bytes) -> None:
    response = client.post(
        "/v1/customers", content=raw, headers={**customer_headers("c-1"), "content-type": "application/json"}
    )
    # the offending "field" is the body itself (not, say, the character offset of the syntax error)
    assert error_fields(response) == {"body"}
    assert response.json()["errors"][0]["location"] == "body"
    make_customer(client, "c-1")  # nothing was stored for this sub


@pytest.mark.parametrize("raw", [b"[]", b'"a string"', b"42"], ids=["array", "string", "number"])
def test_a_body_that_is_not_an_object_is_422(client, raw: bytes) -> None:
    response = client.post("/v1/plans", content=raw, headers={**ops_headers(), "content-type": "application/json"})
    assert_problem(response, 422, "validation_error")
    assert plan_codes(client) == []


# --- no mass assignment -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{"status": "suspended"}, {"id": "cus_mine"}, {"created_at": START}, {"marketing": True}],
    ids=["status", "id", "created_at", "unknown"],
)
def test_customer_create_refuses_unknown_and_server_owned_fields(client, extra: dict) -> None:
    body = {"email": "c-1@example.com", "name": "Ada", "country": "US", **extra}
    response = client.post("/v1/customers", json=body, headers=customer_headers("c-1"))
    assert error_fields(response) == set(extra)
    created = make_customer(client, "c-1")  # nothing was stored: the sub is still free
    assert created["status"] == "active" and created["id"] != "cus_mine"


@pytest.mark.parametrize(
    "extra",
    [{"active": False}, {"id": "plan_mine"}, {"created_at": START}, {"price": {"amount": 1, "currency": "usd"}}],
    ids=["active", "id", "created_at", "price"],
)
def test_plan_create_refuses_unknown_and_server_owned_fields(client, extra: dict) -> None:
    response = client.post("/v1/plans", json={**PLAN_BODY, **extra}, headers=ops_headers())
    assert error_fields(response) == set(extra)
    assert client.get(f"/v1/plans/{PLAN_BODY['code']}").status_code == 404


@pytest.mark.parametrize(
    "extra",
    [{"status": "terminated"}, {"external_id": "someone-else"}, {"id": "cus_x"}, {"created_at": START}],
    ids=["status", "external_id", "id", "created_at"],
)
def test_customer_patch_refuses_server_owned_fields_and_changes_nothing(client, extra: dict) -> None:
    customer = make_customer(client, "c-1")
    response = client.patch(
        f"/v1/customers/{customer['id']}", json={"name": "Changed", **extra}, headers=customer_headers("c-1")
    )
    assert error_fields(response) == set(extra)
    assert client.get(f"/v1/customers/{customer['id']}", headers=customer_headers("c-1")).json() == customer


@pytest.mark.parametrize(
    "extra", [{"code": "renamed"}, {"currency": "eur"}, {"id": "plan_x"}], ids=["code", "currency", "id"]
)
def test_plan_patch_refuses_other_fields_and_changes_nothing(client, extra: dict) -> None:
    plan = make_plan(client, "patch-me")
    response = client.patch("/v1/plans/patch-me", json={"amount": 1, **extra}, headers=ops_headers())
    assert error_fields(response) == set(extra)
    assert client.get("/v1/plans/patch-me").json() == plan


# --- Idempotency-Key --------------------------------------------------------------------------------------------


def test_same_key_and_body_replay_the_first_response_byte_for_byte(client) -> None:
    headers = {**ops_headers(), "Idempotency-Key": "create-plan-1"}
    first = client.post("/v1/plans", json=PLAN_BODY, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    second = client.post("/v1/plans", json=PLAN_BODY, headers=headers)
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["idempotent-replayed"] == "true"
    assert plan_codes(client) == [PLAN_BODY["code"]]  # one plan, not two (a second create would be 409 anyway)


def test_replayed_customer_create_does_not_run_again(client) -> None:
    headers = {**customer_headers("c-1"), "Idempotency-Key": "signup"}
    body = {"email": "c-1@example.com", "name": "Ada", "country": "US"}
    first = client.post("/v1/customers", json=body, headers=headers)
    second = client.post("/v1/customers", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)  # not 409 customer_exists: replayed, not re-run
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"


def test_replay_returns_the_first_result_even_after_the_state_moved_on(client) -> None:
    headers = {**ops_headers(), "Idempotency-Key": "clock-1"}
    first = client.post("/v1/sandbox/clock", json={"now": "2030-02-01T00:00:00Z"}, headers=headers)
    assert first.status_code == 200, first.text
    moved = client.post("/v1/sandbox/clock", json={"now": "2030-03-01T00:00:00Z"}, headers=ops_headers())
    assert moved.status_code == 200
    # Run again, this request would now be refused as clock_backwards; replayed, it is the first answer.
    again = client.post("/v1/sandbox/clock", json={"now": "2030-02-01T00:00:00Z"}, headers=headers)
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert client.get("/v1/sandbox/clock", headers=ops_headers()).json()["now"] == "2030-03-01T00:00:00Z"


def test_same_key_with_a_different_body_is_422_and_runs_nothing(client) -> None:
    headers = {**ops_headers(), "Idempotency-Key": "create-plan-1"}
    assert client.post("/v1/plans", json=PLAN_BODY, headers=headers).status_code == 201
    other = {**PLAN_BODY, "code": "another-plan"}
    response = client.post("/v1/plans", json=other, headers=headers)
    assert_problem(response, 422, "idempotency_key_reused")
    assert plan_codes(client) == [PLAN_BODY["code"]]


def _post_text(client, text: str, key: str):
    return client.post(
        "/v1/plans",
        content=text.encode(),
        headers={**ops_headers(), "Idempotency-Key": key, "Content-Type": "application/json"},
    )


SAME_PLAN_OTHERWISE_WRITTEN = {
    "compact": json.dumps(PLAN_BODY, separators=(",", ":")),
    "spaced": json.dumps(PLAN_BODY),
    "indented": json.dumps(PLAN_BODY, indent=4) + "\n",
    "keys_reversed": json.dumps(dict(reversed(list(PLAN_BODY.items())))),
    "keys_sorted_escaped": json.dumps(PLAN_BODY, sort_keys=True).replace("Idempotent", "\\u0049dempotent"),
}


@pytest.mark.parametrize("written", sorted(set(SAME_PLAN_OTHERWISE_WRITTEN) - {"compact"}))
def test_same_key_with_the_same_json_written_otherwise_replays_the_first_response(client, written) -> None:
    """api.md Idempotency-Key: "the same body" is the same JSON, not the same bytes: other whitespace, key order or
    escapes replay the first response (same status and body) and run nothing."""
    first = _post_text(client, SAME_PLAN_OTHERWISE_WRITTEN["compact"], "plan-written")
    assert first.status_code == 201, first.text
    again = _post_text(client, SAME_PLAN_OTHERWISE_WRITTEN[written], "plan-written")
    assert (again.status_code, again.content) == (first.status_code, first.content), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert plan_codes(client) == [PLAN_BODY["code"]]


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(json.dumps({**PLAN_BODY, "amount": 1001}, indent=2), id="another_value"),
        pytest.param(json.dumps({**PLAN_BODY, "amount": 1000.0}), id="a_float_for_an_int"),
        pytest.param(json.dumps([PLAN_BODY]), id="wrapped_in_a_list"),
        pytest.param(json.dumps({"plan": PLAN_BODY}), id="nested"),
        pytest.param(json.dumps(PLAN_BODY)[:-1], id="not_json"),
    ],
)
def test_same_key_with_different_json_is_still_422(client, other: str) -> None:
    """api.md Idempotency-Key: the comparison is of the parsed JSON, so a different body is still refused."""
    assert _post_text(client, json.dumps(PLAN_BODY), "plan-other").status_code == 201
    assert_problem(_post_text(client, other, "plan-other"), 422, "idempotency_key_reused")
    assert plan_codes(client) == [PLAN_BODY["code"]]


def test_a_body_that_is_not_json_is_compared_byte_for_byte(client) -> None:
    first = _post_text(client, "code=idem-plan&amount=1000", "plan-form")
    assert first.status_code == 422, first.text  # refused by validation, and kept: replayed like any other answer
    again = _post_text(client, "code=idem-plan&amount=1000", "plan-form")
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert_problem(_post_text(client, "code=idem-plan&amount=1000 ", "plan-form"), 422, "idempotency_key_reused")


def test_a_key_recorded_before_canonical_bodies_still_replays_its_exact_request(client, database_url) -> None:
    """A key stored by the previous release holds the hash of the raw bytes: the same request, byte for byte,
    still replays (the stored hash is also compared with the raw-bytes form); the same JSON written otherwise is
    422 until the key expires (at most `idempotency_ttl_hours`), as it was before."""
    spaced = SAME_PLAN_OTHERWISE_WRITTEN["spaced"]
    first = _post_text(client, spaced, "plan-legacy")
    assert first.status_code == 201, first.text
    legacy = hashlib.sha256(b"POST\0/v1/plans\0\0" + spaced.encode()).hexdigest()  # the previous release's hash

    async def store_legacy(conn) -> None:
        await conn.execute(
            update(idempotency_keys).where(idempotency_keys.c.key == "plan-legacy").values(request_hash=legacy)
        )

    on_database(database_url, store_legacy)
    again = _post_text(client, spaced, "plan-legacy")
    assert (again.status_code, again.content) == (201, first.content), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert_problem(
        _post_text(client, SAME_PLAN_OTHERWISE_WRITTEN["indented"], "plan-legacy"), 422, "idempotency_key_reused"
    )
    assert plan_codes(client) == [PLAN_BODY["code"]]


def test_same_key_on_another_endpoint_is_422(client) -> None:
    headers = {**ops_headers(), "Idempotency-Key": "shared"}
    assert client.post("/v1/plans", json=PLAN_BODY, headers=headers).status_code == 201
    response = client.post("/v1/sandbox/clock", json={"now": "2030-02-01T00:00:00Z"}, headers=headers)
    assert_problem(response, 422, "idempotency_key_reused")
    assert client.get("/v1/sandbox/clock", headers=ops_headers()).json()["now"] == START


def test_keys_are_per_caller(client) -> None:
    first = client.post("/v1/plans", json=PLAN_BODY, headers={**ops_headers("staff-1"), "Idempotency-Key": "same-key"})
    second = client.post(
        "/v1/plans",
        json={**PLAN_BODY, "code": "second-plan"},
        headers={**ops_headers("staff-2"), "Idempotency-Key": "same-key"},
    )
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert "idempotent-replayed" not in second.headers
    assert sorted(plan_codes(client)) == sorted([PLAN_BODY["code"], "second-plan"])


def test_keys_are_per_customer(client) -> None:
    body = {"email": "shared@example.com", "name": "Ada", "country": "US"}
    a = client.post("/v1/customers", json=body, headers={**customer_headers("c-a"), "Idempotency-Key": "signup"})
    b = client.post("/v1/customers", json=body, headers={**customer_headers("c-b"), "Idempotency-Key": "signup"})
    assert (a.status_code, b.status_code) == (201, 201), b.text
    assert "idempotent-replayed" not in b.headers
    assert (a.json()["external_id"], b.json()["external_id"]) == ("c-a", "c-b")
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize("body", [{**PLAN_BODY, "currency": "USD"}, PLAN_BODY], ids=["422", "409"])
def test_a_4xx_result_is_replayed_too(client, body: dict) -> None:
    if body is PLAN_BODY:
        make_plan(client, PLAN_BODY["code"])  # so that this create is 409 plan_exists
    headers = {**ops_headers(), "Idempotency-Key": "refused"}
    first = client.post("/v1/plans", json=body, headers=headers)
    assert 400 <= first.status_code < 500, first.text
    second = client.post("/v1/plans", json=body, headers=headers)
    assert second.status_code == first.status_code
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["k" * 256, "k" * 1000, ""], ids=["256", "1000", "empty"])
def test_an_invalid_key_is_422_and_runs_nothing(client, key: str) -> None:
    response = client.post("/v1/plans", json=PLAN_BODY, headers={**ops_headers(), "Idempotency-Key": key})
    assert "Idempotency-Key" in error_fields(response)
    assert plan_codes(client) == []


def test_a_key_of_255_characters_is_accepted(client) -> None:
    headers = {**ops_headers(), "Idempotency-Key": "k" * 255}
    assert client.post("/v1/plans", json=PLAN_BODY, headers=headers).status_code == 201
    replay = client.post("/v1/plans", json=PLAN_BODY, headers=headers)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"


def _set_in_progress(url: str, key: str) -> None:
    """Put the stored key back in the state of a request that is still running (response not yet recorded)."""

    async def work(conn) -> None:
        result = await conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.key == key)
            .values(
                status="in_progress",
                response_status=None,
                response_headers=None,
                response_body=None,
                created_at=_dt.datetime.now(_dt.UTC),
            )
        )
        assert result.rowcount == 1

    on_database(url, work)


def test_a_key_whose_first_request_is_still_running_is_409(client, database_url: str) -> None:
    headers = {**ops_headers(), "Idempotency-Key": "slow-1"}
    assert client.post("/v1/plans", json=PLAN_BODY, headers=headers).status_code == 201
    _set_in_progress(database_url, "slow-1")
    response = client.post("/v1/plans", json=PLAN_BODY, headers=headers)
    assert_problem(response, 409, "idempotency_key_in_use")
    assert "idempotent-replayed" not in response.headers
    # A different body with the running key is still the reuse error, and nothing runs either way.
    reused = client.post("/v1/plans", json={**PLAN_BODY, "code": "other"}, headers=headers)
    assert_problem(reused, 422, "idempotency_key_reused")
    assert plan_codes(client) == [PLAN_BODY["code"]]
    # Another caller is not affected by this caller's running request.
    other = client.post(
        "/v1/plans",
        json={**PLAN_BODY, "code": "other"},
        headers={**ops_headers("staff-2"), "Idempotency-Key": "slow-1"},
    )
    assert other.status_code == 201, other.text


class _Crash(Exception):
    """The process dying at this statement (raised by a statement listener)."""


def _crash_when_storing_the_response(statement: str) -> None:
    # The key's row is written with its response as the unit's last statement before COMMIT.
    storing = "UPDATE idempotency_keys" in statement or "INSERT INTO idempotency_keys" in statement
    if storing and "response_status" in statement:
        raise _Crash("the process died while the response was being stored")


def _cancel_with_key(client, sub_id: str, who: str, key: str):
    return client.post(f"/v1/subscriptions/{sub_id}/cancel", headers={**customer_headers(who), "Idempotency-Key": key})


def _actions(client, customer_id: str) -> list[str]:
    response = client.get("/v1/audit-events", params={"customer_id": customer_id, "limit": 100}, headers=ops_headers())
    assert response.status_code == 200, response.text
    return [event["action"] for event in response.json()["data"]]


def test_C1_a_crash_between_a_cancellation_and_its_stored_response_leaves_no_key_in_progress(client) -> None:
    """api.md Idempotency-Key, C1: the key, the change and the stored response of a cancellation commit together.
    A crash while the response is being stored (before: after the cancellation had committed on its own) leaves
    no key "in progress" for 10 minutes (409 `idempotency_key_in_use` to every retry meanwhile): the retry with the
    same key gets the cancellation, which takes effect once, and a further retry replays it."""
    from sqlalchemy import event

    from tests.api.test_subscriptions import buy

    ctx = client.app.state.ctx
    make_plan(client, "pro-monthly")
    alice = make_customer(client, "alice")
    sub = buy(client, alice)

    crashes: list[str] = []

    def listener(_conn, _cursor, statement, *_args) -> None:
        try:
            _crash_when_storing_the_response(statement)
        except _Crash:
            crashes.append(statement)
            raise

    engines = (ctx.db.engine.sync_engine, ctx.db.autocommit_engine.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        _cancel_with_key(client, sub["id"], "alice", "cancel-crash")  # whatever reached the client before the crash
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", listener)
    assert crashes, "the crash was never injected: the statement that stores the response has changed"

    retry = _cancel_with_key(client, sub["id"], "alice", "cancel-crash")
    assert retry.status_code == 200, retry.text
    assert retry.json()["cancel_at_period_end"] is True
    again = _cancel_with_key(client, sub["id"], "alice", "cancel-crash")
    assert (again.status_code, again.content) == (retry.status_code, retry.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert _actions(client, alice["id"]).count("subscription.cancel_scheduled") == 1


def test_C1_a_duplicate_cancellation_while_the_first_is_still_running_is_409_at_once(
    client, database_url: str, is_postgres: bool
) -> None:
    """api.md Idempotency-Key ("while the first is still running gives 409"), C1: a duplicate that arrives while
    the first request's unit of work holds the key, not committed yet, is answered 409 `idempotency_key_in_use`
    at once, and does nothing, rather than waiting for the first to finish (PostgreSQL; SQLite's write lock
    queues whole transactions)."""
    if not is_postgres:
        pytest.skip("a transaction holding a key while another request runs is proven on PostgreSQL")
    from tests.api.test_subscriptions import buy

    make_plan(client, "pro-monthly")
    alice = make_customer(client, "alice")
    sub = buy(client, alice)
    caller = "customer:alice"

    async def hold_the_key_while_a_duplicate_arrives():
        db = Database(database_url, pool_size=1)
        try:
            async with db.transaction() as conn:  # the first request, its key taken, not committed yet
                now = _dt.datetime.now(_dt.UTC)
                await conn.execute(
                    idempotency_keys.insert().values(
                        caller=caller,
                        key="cancel-twice",
                        request_hash="running",
                        status="in_progress",
                        created_at=now,
                        expires_at=now + _dt.timedelta(hours=24),
                    )
                )
                duplicate = asyncio.ensure_future(
                    asyncio.to_thread(_cancel_with_key, client, sub["id"], "alice", "cancel-twice")
                )
                done, _ = await asyncio.wait([duplicate], timeout=10)
                await conn.rollback()
            return done, await duplicate
        finally:
            await db.dispose()

    done, response = asyncio.run(hold_the_key_while_a_duplicate_arrives())
    assert done, "the duplicate waited for the first request instead of answering"
    assert_problem(response, 409, "idempotency_key_in_use")
    assert "subscription.cancel_scheduled" not in _actions(client, alice["id"])
    assert (
        client.get(f"/v1/subscriptions/{sub['id']}", headers=customer_headers("alice")).json()["cancel_at_period_end"]
        is False
    )


def test_keys_are_kept_at_least_24_hours(client, database_url: str) -> None:
    headers = {**ops_headers(), "Idempotency-Key": "kept"}
    assert client.post("/v1/plans", json=PLAN_BODY, headers=headers).status_code == 201

    async def work(conn):
        return (
            await conn.execute(
                select(idempotency_keys.c.created_at, idempotency_keys.c.expires_at).where(
                    idempotency_keys.c.key == "kept"
                )
            )
        ).one()

    created_at, expires_at = on_database(database_url, work)
    assert expires_at - created_at >= _dt.timedelta(hours=24)
    # and the scheduled purge leaves it alone today
    assert client.post("/v1/sandbox/run-due", headers=ops_headers()).status_code == 200
    replay = client.post("/v1/plans", json=PLAN_BODY, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"


def test_without_a_key_nothing_is_stored(client, database_url: str) -> None:
    assert client.post("/v1/plans", json=PLAN_BODY, headers=ops_headers()).status_code == 201

    async def work(conn):
        return (await conn.execute(select(func.count()).select_from(idempotency_keys))).scalar_one()

    assert on_database(database_url, work) == 0


# --- pagination -------------------------------------------------------------------------------------------------


def _make_plans(client, count: int) -> list[str]:
    return [make_plan(client, f"plan-{i:03d}")["code"] for i in range(count)]


def test_lists_are_newest_first(client) -> None:
    codes = _make_plans(client, 5)
    body = client.get("/v1/plans").json()
    assert [p["code"] for p in body["data"]] == list(reversed(codes))
    assert body["has_more"] is False


def test_an_empty_list(client) -> None:
    assert client.get("/v1/plans").json() | {"object": "list"} == {"object": "list", "data": [], "has_more": False}


@pytest.mark.parametrize("limit", ["0", "101", "-1", "1.5", "abc"])
def test_limit_outside_1_to_100_is_422(client, limit: str) -> None:
    assert error_fields(client.get("/v1/plans", params={"limit": limit})) == {"limit"}


def test_limit_bounds_and_default(client) -> None:
    codes = _make_plans(client, 21)
    default = client.get("/v1/plans").json()
    assert len(default["data"]) == 20 and default["has_more"] is True
    one = client.get("/v1/plans", params={"limit": 1}).json()
    assert [p["code"] for p in one["data"]] == [codes[-1]] and one["has_more"] is True
    hundred = client.get("/v1/plans", params={"limit": 100}).json()
    assert len(hundred["data"]) == 21 and hundred["has_more"] is False
    exact = client.get("/v1/plans", params={"limit": 21}).json()
    assert len(exact["data"]) == 21 and exact["has_more"] is False


def test_starting_after_walks_every_item_exactly_once(client) -> None:
    codes = _make_plans(client, 8)
    client.patch(f"/v1/plans/{codes[3]}", json={"active": False}, headers=ops_headers())
    expected = [c for c in reversed(codes) if c != codes[3]]
    seen, pages, cursor = [], [], None
    while True:
        params = {"limit": 3} | ({"starting_after": cursor} if cursor else {})
        page = client.get("/v1/plans", params=params).json()
        pages.append((len(page["data"]), page["has_more"]))
        seen += [p["code"] for p in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
        assert len(pages) < 10
    assert seen == expected
    assert pages == [(3, True), (3, True), (1, False)]


# --- times and money --------------------------------------------------------------------------------------------


def _parse(value: str) -> _dt.datetime:
    assert RFC3339_UTC.match(value), value
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_times_are_rfc3339_utc_with_z(client) -> None:
    start = _parse(START)
    customer = make_customer(client, "c-1")
    plan = make_plan(client)
    clock = client.get("/v1/sandbox/clock", headers=ops_headers()).json()
    for value in (customer["created_at"], plan["created_at"], clock["now"]):
        assert _parse(value) == start


def test_times_given_with_an_offset_come_back_in_utc(client) -> None:
    moved = client.post("/v1/sandbox/clock", json={"now": "2030-01-16T14:30:00+02:00"}, headers=ops_headers())
    assert moved.json()["now"] == "2030-01-16T12:30:00Z"
    assert make_customer(client, "c-1")["created_at"] == "2030-01-16T12:30:00Z"


def test_money_is_an_integer_amount_and_a_lower_case_currency(client) -> None:
    make_plan(client, "eur-plan", amount=1999, currency="eur")
    for plan in [client.get("/v1/plans/eur-plan").json(), client.get("/v1/plans").json()["data"][0]]:
        assert plan["price"] == {"amount": 1999, "currency": "eur"}
        assert type(plan["price"]["amount"]) is int
