"""`billing demo`: one customer's life played against a running service in the sandbox, printed as a timeline.

A new customer starts a free trial (T1, T2), gets the notice 7 days before it ends (T4) and the expiry prompt
(T3), buys a subscription (B1), is charged at renewal at the locked price (B2, B3), cancels (C1: access until the
period end, nothing refunded, R1) and the subscription ends at that period end. Between steps the sandbox clock is
moved to the instant the next thing is due and the due work is run, exactly as the scheduler would.

It talks to the service over HTTP only, with tokens signed by BILLING_AUTH_SECRET, like any client. The sandbox
clock is the service's, shared by everyone using it, and never goes back: the demo moves it forward from wherever
it stands.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.auth import mint_token
from app.clock import SystemClock
from app.formatting import format_money


class DemoError(Exception):
    """The service refused a step, or is not a sandbox; the message says which and what to do."""


@dataclass(frozen=True)
class Event:
    at: str  # the sandbox clock, RFC 3339
    rules: str
    text: str


def _when(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _human(value: str) -> str:
    return _when(value).strftime("%Y-%m-%d %H:%M")


def _money(amount: int, currency: str) -> str:
    return format_money(amount, currency, grouping=True)


class _Api:
    def __init__(self, base_url: str, secret: str, sub: str) -> None:
        wall = SystemClock.wall()
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.ops = {"Authorization": f"Bearer {mint_token(secret, 'demo-ops', 'ops', _dt.timedelta(hours=1), wall)}"}
        self.me = {"Authorization": f"Bearer {mint_token(secret, sub, 'customer', _dt.timedelta(hours=1), wall)}"}

    def call(self, method: str, path: str, *, ok: int = 200, ops: bool = False, **kwargs: Any) -> dict[str, Any]:
        headers = dict(self.ops if ops else self.me)
        if method == "POST":
            headers["Idempotency-Key"] = secrets.token_hex(8)
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise DemoError(
                f"cannot reach the service at {self.http.base_url}: {exc} (is `billing serve` running?)"
            ) from None
        if response.status_code != ok:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise DemoError(f"{method} {path} answered {response.status_code}: {detail}")
        return response.json()


def play(
    base_url: str, secret: str, plan: str = "basic-monthly", show: Callable[[Event], None] = lambda event: None
) -> list[Event]:
    """Play the customer's life; each event is passed to `show` as it happens and returned at the end."""
    sub = f"demo-{secrets.token_hex(4)}"
    api = _Api(base_url, secret, sub)
    events: list[Event] = []
    seen_notices: set[str] = set()

    def happened(at: str, rules: str, text: str) -> None:
        events.append(Event(at, rules, text))
        show(events[-1])

    def clock() -> str:
        return api.call("GET", "/v1/sandbox/clock", ops=True)["now"]

    def move_to(instant: str) -> str:
        now = clock()
        if _when(instant) > _when(now):
            now = api.call("POST", "/v1/sandbox/clock", ops=True, json={"now": instant})["now"]
        done = api.call("POST", "/v1/sandbox/run-due", ops=True)["jobs"]
        work = ", ".join(f"{job} {count}" for job, count in sorted(done.items()) if count)
        happened(now, "", f"clock moved to {_human(now)}; due work run ({work or 'nothing was due'})")
        return now

    def new_notices(rules: str) -> None:
        listed = api.call("GET", f"/v1/customers/{customer['id']}/notices", params={"limit": 100})["data"]
        for notice in reversed(listed):  # oldest first
            if notice["id"] not in seen_notices:
                seen_notices.add(notice["id"])
                happened(notice["created_at"], rules, f'notice {notice["type"]}: "{notice["subject"]}"')

    try:
        api.http.get("/v1/sandbox/clock", headers=api.ops).raise_for_status()
    except httpx.HTTPStatusError:
        raise DemoError(
            "the service is not in the sandbox (BILLING_SANDBOX): the demo moves its clock, so it "
            "runs only against a sandbox"
        ) from None
    except httpx.TransportError as exc:
        raise DemoError(f"cannot reach the service at {base_url}: {exc} (is `billing serve` running?)") from None
    plans = {p["code"]: p for p in api.call("GET", "/v1/plans", params={"limit": 100})["data"]}
    if plan not in plans:
        raise DemoError(
            f"no active plan {plan!r} (the sandbox's demo plans include basic-monthly; pass --plan "
            f"with one of: {', '.join(sorted(plans)) or 'none'})"
        )
    chosen = plans[plan]
    customer = api.call(
        "POST", "/v1/customers", ok=201, json={"email": f"{sub}@example.com", "name": "Ada Demo", "country": "GB"}
    )
    happened(clock(), "P1", f"customer {customer['id']} ({customer['email']}) signs up")

    trial = api.call("POST", "/v1/trials", ok=201, json={"customer_id": customer["id"], "plan": plan})
    happened(
        trial["started_at"],
        "T1 T2",
        f"starts a free trial of {chosen['name']}: no card needed; it ends {_human(trial['ends_at'])}, "
        f"and the reminder is due {_human(trial['notice_at'])}",
    )
    move_to(trial["notice_at"])
    new_notices("T4")
    move_to(trial["ends_at"])
    new_notices("T3")
    happened(clock(), "T3", "the trial has expired: nothing was charged, access ended with it")

    bought = api.call(
        "POST",
        "/v1/subscriptions",
        ok=201,
        json={"customer_id": customer["id"], "plan": plan, "payment_method": "pm_card_visa"},
    )
    price = _money(bought["price"]["amount"] + bought["tax"]["amount"], bought["price"]["currency"])
    happened(
        bought["current_period_start"],
        "B1 B3",
        f"buys {chosen['name']} with a card: charged {price}; active until {_human(bought['current_period_end'])}",
    )
    new_notices("B1")

    move_to(bought["current_period_end"])
    renewed = api.call("GET", f"/v1/subscriptions/{bought['id']}")
    happened(
        renewed["current_period_start"],
        "B2 B3 B4",
        f"renewed at the locked price ({price}): next period ends {_human(renewed['current_period_end'])}",
    )
    new_notices("B2")

    canceled = api.call("POST", f"/v1/subscriptions/{bought['id']}/cancel")
    happened(
        canceled["canceled_at"] or clock(),
        "C1 R1",
        f"cancels: access continues until {_human(canceled['current_period_end'])}; nothing is refunded",
    )
    new_notices("C1")
    access = api.call("GET", f"/v1/customers/{customer['id']}/access")
    happened(
        clock(), "C1", f"access now: yes, until {_human(access['until'])}" if access["has_access"] else "access now: no"
    )

    move_to(canceled["current_period_end"])
    ended = api.call("GET", f"/v1/subscriptions/{bought['id']}")
    happened(
        ended["ended_at"] or clock(), "C1", f"the subscription has ended ({ended['ended_reason']}); no further charge"
    )
    new_notices("C1")
    access = api.call("GET", f"/v1/customers/{customer['id']}/access")
    happened(
        clock(), "C1", "access now: yes" if access["has_access"] else "access now: no, and nothing more is charged"
    )
    payments = api.call("GET", f"/v1/customers/{customer['id']}/payments", params={"limit": 100})["data"]
    total = sum(p["amount"] for p in payments if p["status"] == "succeeded")
    happened(
        clock(),
        "R1",
        f"paid in all: {_money(total, bought['price']['currency'])} in {len(payments)} payments, refunded: nothing",
    )
    return events


def format_event(event: Event) -> str:
    rules = f"[{event.rules}]" if event.rules else ""
    return f"{_human(event.at)}  {rules:<11} {event.text}"
