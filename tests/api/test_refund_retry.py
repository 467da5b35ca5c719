"""R2: a refund whose gateway call got no answer stays pending (its amount reserved) and the `refund_retries` job
sends it again with the same key, once 5 minutes of *real* time (the system clock) have passed since the gateway
was last asked: never because the business clock moved (the sandbox clock can jump days while a call is under way),
and never from two replicas at once (the job sets the mark again before re-sending: a lease). The gateway answers a
repeat with its first result, so the money goes back once. See also test_races.py (a refund in flight)."""

from __future__ import annotations

import datetime as _dt
import threading

import pytest
from fastapi.testclient import TestClient

from app.clock import SystemClock
from app.gateways.base import GatewayUnavailable
from tests.conftest import START, ManualWall, make_settings
from tests.reliability.support import Api, iso, parse
from tests.support.waiting import until_set

MINUTES = _dt.timedelta(minutes=1)


class FlakyRefunds:
    """The sandbox gateway, except that refunds can be made with their answer lost (`lose`), not reach it at all
    (`down`), or be held inside the call until `release` is set (`hold`). `calls` lists every refund asked for."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.lose = 0
        self.down = False
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[str, int, str]] = []
        self.made: list = []

    async def refund(self, payment_id: str, amount: int, idempotency_key: str):
        self.calls.append((payment_id, amount, idempotency_key))
        if self.down:
            raise GatewayUnavailable("the sandbox could not be reached")
        if self.hold:
            self.entered.set()
            await until_set(self.release)
        result = await self.inner.refund(payment_id, amount, idempotency_key)
        self.made.append(result)
        if self.lose:
            self.lose -= 1
            raise GatewayUnavailable("the answer was lost")  # the refund was made all the same
        return result

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class Replica:
    def __init__(self, database_url: str, wall: SystemClock) -> None:
        from app.main import create_app

        app = create_app(make_settings(database_url), system_clock=wall)
        self.gateway = app.state.ctx.gateway = FlakyRefunds(app.state.ctx.gateway)
        self.client = TestClient(app, raise_server_exceptions=False)
        self.client.__enter__()
        self.api = Api(self.client)

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def replicas(clean_db: str):
    """Two replicas of the sandbox service on one database, their real clocks moved together (`wall.offset`)."""
    wall = ManualWall()
    opened = [Replica(clean_db, wall), Replica(clean_db, wall)]
    api = opened[0].api
    api.ok("POST", "/v1/sandbox/clock", json={"now": START})
    api.ok(
        "POST",
        "/v1/plans",
        201,
        json={
            "code": "pro-monthly",
            "name": "Pro",
            "tier": "subscription",
            "interval": "month",
            "amount": 2000,
            "currency": "usd",
            "trial_available": True,
        },
    )
    yield wall, opened
    for replica in opened:
        replica.close()


def paid_payment(api: Api) -> dict:
    alice = api.as_customer("alice").ok(
        "POST", "/v1/customers", 201, json={"email": "alice@example.com", "name": "Alice", "country": "US"}
    )
    api.as_customer("alice").ok(
        "POST",
        "/v1/subscriptions",
        201,
        json={"customer_id": alice["id"], "plan": "pro-monthly", "payment_method": "pm_card_visa"},
    )
    [paid] = api.all(f"/v1/customers/{alice['id']}/payments")
    assert (paid["status"], paid["amount"]) == ("succeeded", 2000)
    return paid


def jobs(api: Api) -> dict:
    return api.ok("POST", "/v1/sandbox/run-due")["jobs"]


def move_business_clock(api: Api, by: _dt.timedelta) -> None:
    api.ok("POST", "/v1/sandbox/clock", json={"now": iso(parse(api.ok("GET", "/v1/sandbox/clock")["now"]) + by)})


def assert_refunded_once(api: Api, paid: dict, refund_id: str) -> None:
    [settled] = api.all(f"/v1/payments/{paid['id']}/refunds")
    assert settled["id"] == refund_id and settled["status"] == "succeeded", settled
    assert api.ok("GET", f"/v1/payments/{paid['id']}")["refunded_amount"] == 500
    # The sandbox's books have 1500 left too (a second refund there would leave 1000: this one would be refused).
    rest = api.post(f"/v1/payments/{paid['id']}/refunds", json={"amount": 1500, "reason": "goodwill"})
    assert rest.status_code == 201 and rest.json()["status"] == "succeeded", rest.text
    over = api.post(f"/v1/payments/{paid['id']}/refunds", json={"amount": 1, "reason": "goodwill"})
    assert over.status_code == 422 and over.json()["code"] == "refund_exceeds_payment", over.text


def test_R2_a_lost_answer_is_retried_after_five_minutes_of_real_time_not_of_business_time(replicas):
    wall, [one, _two] = replicas
    api, gateway = one.api, one.gateway
    paid = paid_payment(api)
    gateway.lose = 1
    pending = api.ok("POST", f"/v1/payments/{paid['id']}/refunds", 201, json={"amount": 500, "reason": "outage"})
    assert pending["status"] == "pending" and len(gateway.made) == 1  # refunded, but nobody heard of it
    assert api.ok("GET", f"/v1/payments/{paid['id']}")["refunded_amount"] == 500  # reserved meanwhile

    move_business_clock(api, _dt.timedelta(days=3))  # ops move the sandbox clock: no real time has passed
    assert jobs(api)["refund_retries"] == 0
    wall.offset = 4 * MINUTES
    assert jobs(api)["refund_retries"] == 0
    assert len(gateway.calls) == 1
    wall.offset = 5 * MINUTES + _dt.timedelta(seconds=1)
    assert jobs(api)["refund_retries"] == 1
    assert [c[2] for c in gateway.calls] == [pending["id"]] * 2  # the same key ...
    assert gateway.made[1] == gateway.made[0]  # ... and the sandbox answered with its first refund
    assert api.all(f"/v1/payments/{paid['id']}/refunds")[0]["gateway_refund_id"] == gateway.made[0].refund_id
    assert jobs(api)["refund_retries"] == 0
    assert_refunded_once(api, paid, pending["id"])


def test_R2_a_refund_the_gateway_never_got_is_tried_again_five_minutes_after_each_attempt(replicas):
    wall, [one, _two] = replicas
    api, gateway = one.api, one.gateway
    paid = paid_payment(api)
    gateway.down = True
    pending = api.ok("POST", f"/v1/payments/{paid['id']}/refunds", 201, json={"amount": 500, "reason": "outage"})
    assert pending["status"] == "pending" and len(gateway.calls) == 1

    wall.offset = 5 * MINUTES
    assert jobs(api)["refund_retries"] == 0 and len(gateway.calls) == 2  # tried: still unavailable
    assert jobs(api)["refund_retries"] == 0 and len(gateway.calls) == 2  # not again at once
    move_business_clock(api, _dt.timedelta(days=30))
    assert jobs(api)["refund_retries"] == 0 and len(gateway.calls) == 2  # nor when the business clock moves
    wall.offset = 10 * MINUTES
    assert jobs(api)["refund_retries"] == 0 and len(gateway.calls) == 3
    gateway.down = False
    wall.offset = 15 * MINUTES
    assert jobs(api)["refund_retries"] == 1 and len(gateway.calls) == 4
    assert_refunded_once(api, paid, pending["id"])


def test_R2_two_replicas_never_send_one_unanswered_refund_at_once(replicas):
    wall, [one, two] = replicas
    paid = paid_payment(one.api)
    one.gateway.lose = 1
    pending = one.api.ok("POST", f"/v1/payments/{paid['id']}/refunds", 201, json={"amount": 500, "reason": "outage"})
    assert pending["status"] == "pending"

    wall.offset = 6 * MINUTES
    one.gateway.hold = True
    ran: dict = {}
    first = threading.Thread(target=lambda: ran.update(jobs(one.api)))
    first.start()
    try:
        assert one.gateway.entered.wait(30), "the retry never reached the gateway"
        # While replica one's retry is under way: the other replica's runs, the business clock moved on a day.
        assert jobs(two.api)["refund_retries"] == 0
        move_business_clock(two.api, _dt.timedelta(days=1))
        assert jobs(two.api)["refund_retries"] == 0
        assert two.gateway.calls == []
    finally:
        one.gateway.release.set()
        first.join(30)
    assert ran["refund_retries"] == 1
    assert len(one.gateway.made) == 2 and one.gateway.made[1] == one.gateway.made[0]
    assert_refunded_once(two.api, paid, pending["id"])
