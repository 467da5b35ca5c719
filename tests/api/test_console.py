"""The ops console (/ops) through HTTP: sign-in with an ops token, CSRF on every form, search, the two-step refund,
credit, suspension, lifting and termination, all through the same services and rules as the API (R2, R3), with
refusals shown as readable messages and every action in the audit log under the staff member's id."""

from __future__ import annotations

import asyncio
import datetime as _dt
import html
import re

import pytest

from tests.api.test_ops_actions import buy, payments_of
from tests.api.test_plan_changes_now import use_method
from tests.conftest import (
    SECRET,
    START,
    ManualWall,
    customer_headers,
    make_customer,
    make_plan,
    ops_headers,
    token,
)

STAFF = "staff-console-7"


# -- helpers ------------------------------------------------------------------------------------------------------


def login(client, sub: str = STAFF, **token_options) -> str:
    """Sign in through the form (its CSRF token included) as a fresh session; returns the session cookie."""
    client.cookies.pop("ops_session", None)
    form = client.get("/ops/login")
    response = client.post(
        "/ops/login",
        data={"token": token(sub, "ops", **token_options), "csrf": field(form, "csrf")},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/ops", response.text
    return client.cookies["ops_session"]


def text(response) -> str:
    """The page's visible text, tags stripped and whitespace collapsed."""
    body = response.text.split("<main>", 1)[-1]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def field(response, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', response.text)
    assert match, f"no {name} field on the page"
    return html.unescape(match.group(1))


def csrf(client, path: str = "/ops") -> str:
    return field(client.get(path), "csrf")


def setup_paid(client, sub: str = "alice", email: str | None = None, amount: int = 2000):
    make_plan(client, amount=amount)
    customer = make_customer(client, sub, email=email)
    buy(client, customer)
    [payment] = payments_of(client, customer)
    return customer, payment


def api_payment(client, payment_id: str) -> dict:
    return client.get(f"/v1/payments/{payment_id}", headers=ops_headers()).json()


def api_refunds(client, payment_id: str) -> list[dict]:
    return client.get(f"/v1/payments/{payment_id}/refunds", headers=ops_headers()).json()["data"]


def api_customer(client, customer_id: str) -> dict:
    return client.get(f"/v1/customers/{customer_id}", headers=ops_headers()).json()


def audit(client, customer_id: str) -> list[dict]:
    response = client.get("/v1/audit-events", params={"customer_id": customer_id, "limit": 100}, headers=ops_headers())
    return response.json()["data"]


def preview_refund(client, payment_id: str, amount: str, reason: str):
    token_ = csrf(client, f"/ops/payments/{payment_id}")
    return client.post(f"/ops/payments/{payment_id}/refund", data={"csrf": token_, "amount": amount, "reason": reason})


def confirm_form(confirmation) -> dict:
    """The hidden fields of the confirmation page's form, as the browser would post them."""
    return {name: field(confirmation, name) for name in ("csrf", "nonce", "confirm", "amount", "reason")}


# -- sign-in ------------------------------------------------------------------------------------------------------


def login_form(client, path: str = "/ops/login"):
    page = client.get(path, follow_redirects=False)
    assert page.status_code == 200 and 'action="/ops/login"' in page.text, page.text
    return page


def test_login_with_an_ops_token_sets_a_lax_httponly_cookie_holding_only_a_session_id(client):
    """R2/R3 (only ops staff act): the cookie is an opaque random session id, never the pasted token; SameSite=Lax
    so that a link from elsewhere (a helpdesk ticket) keeps staff signed in, the CSRF tokens guarding every POST."""
    pasted = token(STAFF, "ops")
    form = login_form(client)
    response = client.post("/ops/login", data={"token": pasted, "csrf": field(form, "csrf")}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ops"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith("ops_session=") and "httponly" in attributes and "secure" not in attributes
    assert "samesite=lax" in cookie.lower() and "path=/ops" in cookie.lower()
    session_id = client.cookies["ops_session"]
    assert pasted not in cookie and session_id != pasted and "." not in session_id and len(session_id) >= 40
    page = client.get("/ops")
    assert page.status_code == 200 and f"Signed in as <strong>{STAFF}</strong>" in page.text
    # Over https the cookie is also Secure; a pasted "Bearer <jwt>" header value works too.
    client.cookies.pop("ops_session")
    secure_form = login_form(client, "https://testserver/ops/login")
    secure = client.post(
        "https://testserver/ops/login",
        data={"token": f"Bearer {token(STAFF, 'ops')}", "csrf": field(secure_form, "csrf")},
        follow_redirects=False,
    )
    assert secure.status_code == 303 and "secure" in secure.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    "pasted, status",
    [
        (token("alice", "customer"), 403),
        ("garbage", 401),
        ("", 401),
        (token(STAFF, "ops", hours=-1), 401),  # expired
        (token(STAFF, "ops", secret="another-secret-0123456789abcdef-0123456789"), 401),  # not signed by us
    ],
)
def test_login_refuses_customer_tokens_and_garbage(client, pasted, status):
    form = login_form(client)
    response = client.post("/ops/login", data={"token": pasted, "csrf": field(form, "csrf")}, follow_redirects=False)
    assert response.status_code == status
    assert "ops_session" not in response.headers.get("set-cookie", "") and "ops_session" not in client.cookies
    assert "Sign in" in response.text and ("customer token" in text(response) or "refused" in text(response))
    assert field(response, "csrf") == field(form, "csrf")  # the form is offered again, ready to retry
    assert client.get("/ops", follow_redirects=False).status_code == 303


def test_console_sign_in_without_the_forms_csrf_token_is_refused(client):
    """R2/R3: a forged sign-in (login CSRF: another site posting its own ops token to sign staff in as someone
    else) is refused: the form's token is bound to a cookie set with the form, and both must match."""
    form = login_form(client)
    good = field(form, "csrf")
    for bad in (None, "", "0" * 64, good[:-1] + ("0" if good[-1] != "0" else "1"), "é" * 64):
        data = {"token": token(STAFF, "ops")}
        if bad is not None:
            data["csrf"] = bad
        response = client.post("/ops/login", data=data, follow_redirects=False)
        assert response.status_code == 403, bad
        assert "security token is missing or wrong" in text(response)
        assert "ops_session" not in client.cookies
    # A token from the form, but without the cookie it is bound to (another browser's form): refused too.
    client.cookies.pop("ops_login", None)
    response = client.post("/ops/login", data={"token": token(STAFF, "ops"), "csrf": good}, follow_redirects=False)
    assert response.status_code == 403 and "ops_session" not in client.cookies
    login(client)  # the real form still works


def test_every_page_needs_a_valid_session(client):
    customer, payment = setup_paid(client)
    pages = {
        "/ops": "/ops/login",
        "/ops?q=alice": "/ops/login?next=%2Fops%3Fq%3Dalice",
        f"/ops/customers/{customer['id']}": f"/ops/login?next=%2Fops%2Fcustomers%2F{customer['id']}",
        f"/ops/payments/{payment['id']}": f"/ops/login?next=%2Fops%2Fpayments%2F{payment['id']}",
    }
    for path, location in pages.items():
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == location, path
    for path, data in (
        (f"/ops/payments/{payment['id']}/refund", {"amount": "1", "reason": "x", "confirm": "yes"}),
        (f"/ops/customers/{customer['id']}/suspend", {"reason": "x"}),
        (f"/ops/customers/{customer['id']}/credit", {"amount": "1", "currency": "usd", "reason": "x"}),
    ):
        response = client.post(path, data=data, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/ops/login"), path
    # A token in the cookie (the old kind of session), a customer's, an expired one, or anything else unknown is
    # no session either: back to the login page.
    for bad in (token(STAFF, "ops"), token("alice", "customer"), token(STAFF, "ops", hours=-1), "garbage"):
        response = client.get("/ops", headers={"Cookie": f"ops_session={bad}"}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ops/login?expired=1"
    assert "expired" in text(client.get("/ops/login?expired=1"))
    assert api_payment(client, payment["id"])["refunded_amount"] == 0
    assert api_customer(client, customer["id"])["status"] == "active"


def test_console_request_without_the_session_cookie_does_not_clear_it(client):
    """R2/R3: a request that arrives without the cookie (a browser that did not send it, e.g. across sites) is sent
    to sign in, but its answer must not delete the cookie: that signed staff out of their other tabs."""
    customer, _payment = setup_paid(client)
    for path in ("/ops", f"/ops/customers/{customer['id']}"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and "set-cookie" not in response.headers, path


def test_logout_clears_the_session(client):
    login(client)
    response = client.post("/ops/logout", data={"csrf": csrf(client)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ops/login"
    assert "ops_session" not in client.cookies
    assert client.get("/ops", follow_redirects=False).status_code == 303


def test_console_sign_out_ends_the_session_for_every_copy_of_the_cookie(client):
    """R2/R3: the session lives on the server; signing out ends it, so a copy of the cookie taken before (another
    tab, a stolen cookie) gets the sign-in page, not the data."""
    customer, _payment = setup_paid(client)
    copied = login(client)
    page = f"/ops/customers/{customer['id']}"
    assert client.get(page, headers={"Cookie": f"ops_session={copied}"}).status_code == 200
    assert client.post("/ops/logout", data={"csrf": csrf(client)}, follow_redirects=False).status_code == 303
    replay = client.get(page, headers={"Cookie": f"ops_session={copied}"}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/ops/login")
    assert customer["id"] not in text(client.get(page, headers={"Cookie": f"ops_session={copied}"}))
    posted = client.post(
        f"{page}/suspend",
        data={"reason": "x", "csrf": "0" * 64},
        headers={"Cookie": f"ops_session={copied}"},
        follow_redirects=False,
    )
    assert posted.status_code == 303 and api_customer(client, customer["id"])["status"] == "active"


@pytest.fixture
def walled(settings):
    """A client whose infrastructure wall clock the test moves (console sessions run on it, not on business time)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    wall = ManualWall()
    with TestClient(create_app(settings, system_clock=wall), raise_server_exceptions=False) as c:
        c.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers())
        yield c, wall


def test_console_idle_session_ends_after_30_minutes_of_the_wall_clock(walled):
    """R2/R3: a console left open ends after 30 idle minutes (`console_session_idle_minutes`); use keeps it going,
    up to the absolute lifetime (`console_session_hours`, 12) whatever the activity."""
    client, wall = walled
    login(client, hours=24)
    for _ in range(3):  # active: 29 minutes between requests, well past 30 minutes in all
        wall.offset += _dt.timedelta(minutes=29)
        assert client.get("/ops", follow_redirects=False).status_code == 200
    wall.offset += _dt.timedelta(minutes=31)
    idle = client.get("/ops", follow_redirects=False)
    assert idle.status_code == 303 and idle.headers["location"] == "/ops/login?expired=1"
    assert "expired" in text(client.get(idle.headers["location"]))

    login(client, hours=24)
    for _ in range(12 * 3 - 1):  # 11 h 40 min of steady use
        wall.offset += _dt.timedelta(minutes=20)
        assert client.get("/ops", follow_redirects=False).status_code == 200
    wall.offset += _dt.timedelta(minutes=21)
    over = client.get("/ops", follow_redirects=False)
    assert over.status_code == 303 and over.headers["location"] == "/ops/login?expired=1"


def test_console_sign_in_returns_to_the_page_asked_for(client):
    """R2/R3: staff who follow a link to a customer's page and must sign in first land on that page."""
    customer, _payment = setup_paid(client)
    page = f"/ops/customers/{customer['id']}"
    asked = client.get(page, follow_redirects=False)
    assert asked.status_code == 303
    form = login_form(client, asked.headers["location"])
    assert field(form, "next") == page
    signed_in = client.post(
        "/ops/login",
        data={"token": token(STAFF, "ops"), "csrf": field(form, "csrf"), "next": field(form, "next")},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == page
    assert customer["id"] in text(client.get(page))
    # With a query string too; and a signed-in visit to the login page goes straight there.
    straight = client.get("/ops/login?next=%2Fops%3Fq%3Dalice", follow_redirects=False)
    assert straight.headers["location"] == "/ops?q=alice"


_T0 = _dt.datetime(2030, 1, 15, 12, 0, tzinfo=_dt.UTC)


@pytest.mark.parametrize(
    "last_seen_ago, ends_in, state",
    [
        (_dt.timedelta(seconds=0), _dt.timedelta(hours=12), "live"),
        (_dt.timedelta(seconds=59), _dt.timedelta(hours=12), "live"),  # seen under a minute ago: no write
        (_dt.timedelta(minutes=1), _dt.timedelta(hours=12), "touch"),  # at most one write a minute
        (_dt.timedelta(minutes=29, seconds=59), _dt.timedelta(hours=12), "touch"),
        (_dt.timedelta(minutes=30), _dt.timedelta(hours=12), "expired"),  # idle
        (_dt.timedelta(seconds=5), _dt.timedelta(seconds=1), "live"),
        (_dt.timedelta(seconds=5), _dt.timedelta(0), "expired"),  # the absolute end
        (_dt.timedelta(seconds=5), -_dt.timedelta(hours=1), "expired"),
    ],
)
def test_console_session_state_idle_and_absolute_ends_and_at_most_one_write_a_minute(last_seen_ago, ends_in, state):
    """R2/R3: what a request finds in a console session, with the wall time passed in."""
    from app.console.sessions import session_state

    assert session_state(_T0 - last_seen_ago, _T0 + ends_in, _T0, _dt.timedelta(minutes=30)) == state


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/ops",
        "https://evil.example/ops",
        "http:/evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/ops\\evil.example",
        "/ops/\\evil.example",
        "/ops//evil.example",
        "javascript:alert(1)",
        "/opsevil",
        "/ops/../v1/plans",
        "/ops/%2e%2e/v1",
        "/ops\r\nSet-Cookie: x=1",
        "/ops/\t/evil",
        "/v1/plans",
        " /ops",
        "ops",
        "",
        "/ops/login",
        "/ops/logout",
    ],
)
def test_console_sign_in_never_redirects_off_the_console(client, target):
    """R2/R3: `next` is only ever a local path under /ops: no open redirect (other hosts, scheme-relative `//`,
    backslashes, control characters, dot segments); anything else lands on /ops."""
    form = login_form(client)
    response = client.post(
        "/ops/login",
        data={"token": token(STAFF, "ops"), "csrf": field(form, "csrf"), "next": target},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/ops", target
    client.cookies.pop("ops_session", None)
    shown = client.get("/ops/login", params={"next": target})
    assert shown.status_code == 200 and 'name="next"' not in shown.text, target


def test_console_sessions_can_be_revoked_by_staff_member(client, monkeypatch, settings, capsys):
    """R2/R3: `billing console-sessions revoke --staff ID` ends every console session of that staff member at once
    (a lost laptop, someone leaving); other staff stay signed in."""
    from app.cli import main

    mine = login(client)
    other = login(client, "staff-other")
    monkeypatch.setenv("BILLING_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BILLING_AUTH_SECRET", SECRET)
    monkeypatch.setenv("BILLING_SANDBOX", "true")
    assert main(["console-sessions", "revoke", "--staff", STAFF]) == 0
    assert "1 console session" in capsys.readouterr().out
    gone = client.get("/ops", headers={"Cookie": f"ops_session={mine}"}, follow_redirects=False)
    assert gone.status_code == 303
    assert client.get("/ops", headers={"Cookie": f"ops_session={other}"}).status_code == 200


def test_the_console_is_not_in_the_openapi_document_and_sends_no_script(client):
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/ops")]
    login(client)
    page = client.get("/ops")
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text.lower()


# -- search and the customer's page -------------------------------------------------------------------------------


def test_search_by_email_ignores_case_and_spaces_and_finds_every_account(client):
    make_plan(client)
    one = make_customer(client, "alice-1", email="Alice@Example.com")
    two = make_customer(client, "alice-2", email="alice@example.COM")
    other = make_customer(client, "bob", email="bob@example.com")
    login(client)
    found = client.get("/ops", params={"q": "  ALICE@example.com "})
    assert found.status_code == 200
    assert one["id"] in found.text and two["id"] in found.text and other["id"] not in found.text
    assert "2 customers found" in text(found)
    by_id = client.get("/ops", params={"q": other["id"]})
    assert other["id"] in by_id.text and one["id"] not in by_id.text
    assert other["id"] in client.get("/ops", params={"q": "bob"}).text  # the external id
    assert "No customer matches" in text(client.get("/ops", params={"q": "nobody@example.com"}))


def test_customer_page_shows_everything_and_escapes_it(client):
    make_plan(client)
    customer = make_customer(client, "eve", email="eve@example.com")
    client.patch(f"/v1/customers/{customer['id']}", json={"name": "<b>Eve</b> & co"}, headers=customer_headers("eve"))
    sub = buy(client, customer)
    [payment] = payments_of(client, customer)
    login(client)
    page = client.get(f"/ops/customers/{customer['id']}")
    assert page.status_code == 200
    assert "<b>Eve</b>" not in page.text and "&lt;b&gt;Eve&lt;/b&gt; &amp; co" in page.text
    body = text(page)
    for expected in (
        sub["id"],
        payment["id"],
        "20.00 USD",
        "customer.created",
        "Subscriptions",
        "Trials",
        "Payments",
        "Refunds",
        "Credits",
        "Notices",
        "Audit log",
        "Left to refund",
    ):
        assert expected in body, expected
    assert client.get("/ops/customers/cus_missing").status_code == 404
    assert client.get("/ops/payments/pay_missing").status_code == 404


# -- refunds (R2) -------------------------------------------------------------------------------------------------


def test_refund_goes_through_a_confirmation_then_is_made_like_the_api(client):
    customer, payment = setup_paid(client)
    login(client)
    confirmation = preview_refund(client, payment["id"], "5.00", "service outage on 3 March")
    assert confirmation.status_code == 200
    body = text(confirmation)
    assert "Confirm the refund" in body and "Nothing has been refunded yet" in body
    assert "Left to refund now 20.00 USD" in body and "This refund 5.00 USD" in body
    assert "Left to refund after it 15.00 USD" in body
    assert api_payment(client, payment["id"])["refunded_amount"] == 0 and api_refunds(client, payment["id"]) == []

    form = confirm_form(confirmation)
    done = client.post(f"/ops/payments/{payment['id']}/refund", data=form, follow_redirects=False)
    assert done.status_code == 303 and "refund=re_" in done.headers["location"]
    page = client.get(done.headers["location"])
    assert "of 5.00 USD made" in text(page) and "Left to refund: 15.00 USD" in text(page)

    assert api_payment(client, payment["id"])["refunded_amount"] == 500
    [made] = api_refunds(client, payment["id"])
    assert made["amount"] == 500 and made["currency"] == "usd" and made["reason"] == "service outage on 3 March"
    assert made["created_by"] == STAFF and made["status"] == "succeeded" and made["source"] == "ops"

    # A double submit of the same confirmation (double click, re-post) refunds once.
    again = client.post(f"/ops/payments/{payment['id']}/refund", data=form, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].endswith("?done=duplicate")
    assert "already been submitted" in text(client.get(again.headers["location"]))
    assert api_payment(client, payment["id"])["refunded_amount"] == 500 and len(api_refunds(client, payment["id"])) == 1

    # The rest, then nothing more.
    rest = confirm_form(preview_refund(client, payment["id"], "15", "goodwill"))
    assert client.post(f"/ops/payments/{payment['id']}/refund", data=rest).status_code == 200
    assert api_payment(client, payment["id"])["refunded_amount"] == 2000
    assert "fully refunded" in text(client.get(f"/ops/payments/{payment['id']}"))
    assert [e["actor"] for e in audit(client, customer["id"]) if e["action"] == "refund.requested"] == [STAFF, STAFF]


def test_over_refund_shows_refund_exceeds_payment_and_changes_nothing(client):
    _customer, payment = setup_paid(client)
    login(client)
    over = preview_refund(client, payment["id"], "20.01", "too much")
    assert over.status_code == 422
    assert "refund_exceeds_payment" in over.text and "Only 20.00 USD of this payment is left to refund" in text(over)
    assert 'name="confirm"' not in over.text and "too much" in over.text  # the form is kept, no confirmation
    # A stale confirmation: it was valid when shown, but someone refunded in the meantime. The service refuses.
    stale = confirm_form(preview_refund(client, payment["id"], "20.00", "full refund"))
    assert (
        client.post(
            f"/v1/payments/{payment['id']}/refunds", json={"amount": 100, "reason": "api"}, headers=ops_headers()
        ).status_code
        == 201
    )
    refused = client.post(f"/ops/payments/{payment['id']}/refund", data=stale)
    assert refused.status_code == 422 and "refund_exceeds_payment" in refused.text
    assert "Only 19.00 USD of this payment is left to refund" in text(refused)
    assert api_payment(client, payment["id"])["refunded_amount"] == 100 and len(api_refunds(client, payment["id"])) == 1


@pytest.mark.parametrize(
    "amount, reason, message",
    [
        ("5.00", "", "a reason is required"),
        ("5.00", "   ", "a reason is required"),
        ("0", "x", "amount"),
        ("-5", "x", "amount"),
        ("5.001", "x", "at most 2 decimals"),
        ("five", "x", "amount"),
    ],
)
def test_refund_form_refuses_bad_input_readably(client, amount, reason, message):
    _customer, payment = setup_paid(client)
    login(client)
    response = preview_refund(client, payment["id"], amount, reason)
    assert response.status_code == 422 and "validation_error" in response.text and message in text(response)
    assert api_payment(client, payment["id"])["refunded_amount"] == 0


# -- CSRF ---------------------------------------------------------------------------------------------------------


def test_posts_without_or_with_a_wrong_csrf_token_are_403_and_change_nothing(client):
    customer, payment = setup_paid(client)
    login(client, "staff-other")
    other_csrf = csrf(client)  # valid, but for another session
    login(client)
    confirmation = preview_refund(client, payment["id"], "5.00", "outage")
    form = confirm_form(confirmation)
    cid, pid = customer["id"], payment["id"]
    posts = [
        (f"/ops/payments/{pid}/refund", {**form}),
        (f"/ops/payments/{pid}/refund", {k: v for k, v in form.items() if k != "nonce"}),
        (f"/ops/customers/{cid}/credit", {"amount": "5", "currency": "usd", "reason": "x", "nonce": "n" * 32}),
        (f"/ops/customers/{cid}/suspend", {"reason": "abuse"}),
        (f"/ops/customers/{cid}/terminate", {"reason": "abuse", "confirm": "yes"}),
    ]
    for path, data in posts:
        for bad in (None, "", "0" * 64, other_csrf, form["csrf"][:-1] + "x", "é" * 64):
            sent = {k: v for k, v in data.items() if k != "csrf"}
            if bad is not None:
                sent["csrf"] = bad
            response = client.post(path, data=sent, follow_redirects=False)
            assert response.status_code == 403, (path, bad)
            assert "security token is missing or wrong" in text(response)
    assert api_payment(client, pid)["refunded_amount"] == 0 and api_refunds(client, pid) == []
    assert api_customer(client, cid)["status"] == "active"
    credits = client.get(f"/v1/customers/{cid}/credits", headers=ops_headers()).json()
    assert credits["data"] == [] and credits["balances"] == {}
    assert not [
        e
        for e in audit(client, cid)
        if e["actor"] == STAFF
        or e["action"].startswith(("refund.", "credit.", "customer.suspended", "customer.terminated"))
    ]
    # The right token still works afterwards (the refusals spent nothing).
    assert client.post(f"/ops/payments/{pid}/refund", data=form).status_code == 200
    assert api_payment(client, pid)["refunded_amount"] == 500


# -- credit, suspension, lifting, termination (R2, R3) ------------------------------------------------------------


def test_credit_suspend_unsuspend_terminate_need_a_reason_and_are_audited(client):
    customer, payment = setup_paid(client)
    cid = customer["id"]
    login(client)
    page = client.get(f"/ops/customers/{cid}")
    token_, nonce = field(page, "csrf"), field(page, "nonce")

    def post(action: str, **data: str):
        return client.post(f"/ops/customers/{cid}/{action}", data={"csrf": token_, **data})

    # Empty reasons are refused with a readable message; nothing changes.
    empty = post("credit", amount="7.50", currency="usd", reason="  ", nonce=nonce)
    assert empty.status_code == 422 and "a reason is required" in text(empty) and "7.50" in empty.text
    for action in ("suspend", "terminate"):
        refused = post(action, reason="", confirm="yes")
        assert refused.status_code == 422 and "a reason is required" in text(refused), action
    unticked = post("terminate", reason="fraud")
    assert unticked.status_code == 422 and "tick the box" in text(unticked)
    assert api_customer(client, cid)["status"] == "active"
    assert client.get(f"/v1/customers/{cid}/credits", headers=ops_headers()).json()["data"] == []

    # R2: a credit in another currency than the customer's billing one (usd) is refused; the page says why and
    # offers the form again (with a fresh nonce: the refused one was spent before the service said no).
    mismatch = post("credit", amount="7.50", currency="eur", reason="apology for the outage", nonce="k" * 32)
    assert mismatch.status_code == 422 and "currency_mismatch" in mismatch.text and "usd" in text(mismatch)
    assert client.get(f"/v1/customers/{cid}/credits", headers=ops_headers()).json()["data"] == []

    # Credit (the refused attempt with an empty reason spent no nonce), once even when posted twice.
    granted = post("credit", amount="7.50", currency="usd", reason="apology for the outage", nonce=nonce)
    assert granted.status_code == 200 and "Credit granted" in text(granted) and "7.50 USD" in text(granted)
    assert "already been submitted" in text(
        post("credit", amount="7.50", currency="usd", reason="apology for the outage", nonce=nonce)
    )
    credits = client.get(f"/v1/customers/{cid}/credits", headers=ops_headers()).json()
    assert credits["balances"] == {"usd": 750} and len(credits["data"]) == 1
    assert credits["data"][0]["created_by"] == STAFF and credits["data"][0]["reason"] == "apology for the outage"

    suspended = post("suspend", reason="chargeback under review")
    assert suspended.status_code == 200 and "The account is suspended" in text(suspended)
    assert api_customer(client, cid)["status"] == "suspended"
    assert client.get(f"/v1/customers/{cid}/access", headers=ops_headers()).json()["has_access"] is False
    lifted = post("unsuspend", reason="chargeback withdrawn")
    assert lifted.status_code == 200 and "suspension is lifted" in text(lifted)
    assert api_customer(client, cid)["status"] == "active"
    terminated = post("terminate", reason="fraud confirmed", confirm="yes")
    assert terminated.status_code == 200 and "The account is terminated" in text(terminated)
    assert api_customer(client, cid)["status"] == "terminated"
    # R3: nothing refunded, the credit forfeited.
    assert api_payment(client, payment["id"])["refunded_amount"] == 0
    assert client.get(f"/v1/customers/{cid}/credits", headers=ops_headers()).json()["balances"] == {}

    # A terminated account: the services refuse, the page says why, nothing changes.
    late = post("credit", amount="1", currency="usd", reason="late", nonce="m" * 32)
    assert late.status_code == 409 and "customer_terminated" in late.text
    again = post("suspend", reason="again")
    assert again.status_code == 409 and "customer_terminated" in again.text

    events = {e["action"]: e for e in audit(client, cid) if e["actor"] == STAFF}
    for action, reason in (
        ("credit.granted", "apology for the outage"),
        ("customer.suspended", "chargeback under review"),
        ("customer.unsuspended", "chargeback withdrawn"),
        ("customer.terminated", "fraud confirmed"),
    ):
        assert events[action]["reason"] == reason and events[action]["actor_role"] == "ops", action
    page = text(client.get(f"/ops/customers/{cid}"))
    assert "customer.terminated" in page and "fraud confirmed" in page and STAFF in page


def test_unknown_action_is_404(client):
    customer, _payment = setup_paid(client)
    login(client)
    response = client.post(f"/ops/customers/{customer['id']}/delete", data={"csrf": csrf(client), "reason": "x"})
    assert response.status_code == 404
    assert api_customer(client, customer["id"])["status"] == "active"


def test_a_form_nonce_is_spent_once_even_under_concurrent_submissions(settings):
    """The guarantee behind "a double submit refunds once": of concurrent claims of one nonce, exactly one wins."""
    from app.auth import Principal
    from app.console import service
    from app.main import build_context

    async def claim_together() -> list[bool]:
        ctx = build_context(settings)
        try:
            staff = Principal(STAFF, "ops")
            return await asyncio.gather(
                *(service.use_once(ctx, staff, "refund", "n" * 32, "pay_1:500:x") for _ in range(8))
            )
        finally:
            await ctx.db.dispose()

    assert sorted(asyncio.run(claim_together())) == [False] * 7 + [True]


# -- plan changes (C3/C4, issue 16) -------------------------------------------------------------------------------


def test_C3_console_shows_schedules_and_withdraws_a_plan_change_with_a_reason_through_the_api_use_case(client):
    make_plan(client, "pro-monthly", amount=2000)
    make_plan(client, "pro-yearly", amount=20000, interval="year")
    customer = make_customer(client, "alice")
    cid = customer["id"]
    sub = buy(client, customer)
    login(client)

    def api_pending() -> dict | None:
        return client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()["pending_change"]

    def post(path: str, **data: str):
        page = client.get(f"/ops/customers/{cid}")
        form = {"csrf": field(page, "csrf"), "nonce": field(page, "nonce"), **data}
        return client.post(f"/ops/subscriptions/{sub['id']}/{path}", data=form)

    page = text(client.get(f"/ops/customers/{cid}"))
    assert "Plan changes" in page and "No plan change pending" in page and "pro-yearly" in page

    # A reason and the ticked confirmation are required; nothing changes without them.
    no_reason = post("plan-change", plan="pro-yearly", reason=" ", confirm="yes")
    assert no_reason.status_code == 422 and "a reason is required" in text(no_reason)
    unticked = post("plan-change", plan="pro-yearly", reason="customer asked by phone")
    assert unticked.status_code == 422 and "tick the box" in text(unticked)
    # The use case's refusals are shown with their code (C3: the plan it is on already).
    same = post("plan-change", plan="pro-monthly", reason="customer asked by phone", confirm="yes")
    assert same.status_code == 409 and "same_plan" in same.text
    assert api_pending() is None
    # Without the CSRF token: 403, nothing changes.
    forged = client.post(
        f"/ops/subscriptions/{sub['id']}/plan-change",
        data={"plan": "pro-yearly", "reason": "x", "confirm": "yes", "nonce": "n" * 32},
    )
    assert forged.status_code == 403 and api_pending() is None

    # Scheduled at the period end, at the price of today (C3), once even when the form is posted twice.
    page = client.get(f"/ops/customers/{cid}")
    form = {
        "csrf": field(page, "csrf"),
        "nonce": field(page, "nonce"),
        "plan": "pro-yearly",
        "reason": "customer asked by phone",
        "confirm": "yes",
    }
    done = client.post(f"/ops/subscriptions/{sub['id']}/plan-change", data=form)
    assert done.status_code == 200 and "plan change is scheduled" in text(done)
    again = client.post(f"/ops/subscriptions/{sub['id']}/plan-change", data=form)
    assert "already been submitted" in text(again)
    pending = api_pending()
    assert pending is not None and pending["plan"] == "pro-yearly" and pending["price"]["amount"] == 20000
    shown = text(client.get(f"/ops/customers/{cid}"))
    assert "Pending change: to pro-yearly" in shown and "200.00 USD" in shown and "2030-02-15 12:00 UTC" in shown

    # Withdrawn, with a reason (as the API's DELETE): the subscription renews on its plan.
    refused = post("plan-change/withdraw", reason="")
    assert refused.status_code == 422 and "a reason is required" in text(refused) and api_pending() is not None
    withdrawn = post("plan-change/withdraw", reason="customer changed their mind")
    assert withdrawn.status_code == 200 and "pending plan change is withdrawn" in text(withdrawn)
    assert api_pending() is None and "No plan change pending" in text(withdrawn)

    events = [e for e in audit(client, cid) if e["actor"] == STAFF]
    by_action = {e["action"]: e for e in events}
    assert by_action["subscription.plan_change_scheduled"]["reason"] == "customer asked by phone"
    assert by_action["subscription.plan_change_withdrawn"]["reason"] == "customer changed their mind"
    assert sum(e["action"] == "subscription.plan_change_scheduled" for e in events) == 1
    assert client.post("/ops/subscriptions/sub_missing/plan-change", data=form).status_code == 404


def test_C4_console_shows_an_upgrade_waiting_for_the_customers_action_and_withdraws_it(client):
    make_plan(client, "pro-monthly", amount=2000)
    make_plan(client, "enterprise-monthly", amount=9000, tier="enterprise")
    customer = make_customer(client, "alice")
    sub = buy(client, customer)
    use_method(client, sub, "pm_card_authenticationRequired")
    asked = client.post(
        f"/v1/subscriptions/{sub['id']}/change",
        json={"plan": "enterprise-monthly", "when": "now"},
        headers=customer_headers("alice"),
    )
    assert asked.status_code == 200 and asked.json()["pending_change"]["client_secret"], asked.text
    login(client)
    page = client.get(f"/ops/customers/{customer['id']}")
    shown = text(page)
    assert "an upgrade to enterprise-monthly" in shown and "waiting for the customer's action" in shown
    assert "90.00 USD" in shown and asked.json()["pending_change"]["client_secret"] not in page.text
    form = {"csrf": field(page, "csrf"), "nonce": field(page, "nonce"), "reason": "customer gave up on 3-D Secure"}
    withdrawn = client.post(f"/ops/subscriptions/{sub['id']}/plan-change/withdraw", data=form)
    assert withdrawn.status_code == 200 and "No plan change pending" in text(withdrawn)
    after = client.get(f"/v1/subscriptions/{sub['id']}", headers=ops_headers()).json()
    assert after["pending_change"] is None and after["plan"] == "pro-monthly"
    assert [p["status"] for p in payments_of(client, customer) if p["purpose"] == "upgrade"] == ["failed"]


def test_I1_I2_a_customers_page_lists_their_invoices_and_credit_notes_with_their_pdfs(client):
    customer, payment = setup_paid(client)
    refund = client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 500, "reason": "goodwill"},
        headers={**ops_headers(), "Idempotency-Key": "console-docs"},
    ).json()
    invoice = client.get(f"/v1/invoices/{payment['invoice_id']}", headers=ops_headers()).json()
    note = client.get(f"/v1/credit-notes/{refund['credit_note_id']}", headers=ops_headers()).json()
    links = {
        f"/ops/invoices/{invoice['id']}/pdf": f"/v1/invoices/{invoice['id']}/pdf",
        f"/ops/credit-notes/{note['id']}/pdf": f"/v1/credit-notes/{note['id']}/pdf",
    }
    for path in links:  # signed out: to the login page, as every page
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/ops/login"), path
    login(client)
    page = client.get(f"/ops/customers/{customer['id']}")
    assert page.status_code == 200, page.text
    for number, path in ((invoice["number"], next(iter(links))), (note["number"], list(links)[1])):
        assert number in page.text and f'href="{path}"' in page.text
    for path, api in links.items():
        served = client.get(path)
        assert served.status_code == 200 and served.headers["content-type"] == "application/pdf"
        assert served.content == client.get(api, headers=ops_headers()).content
    assert client.get("/ops/invoices/inv_missing/pdf").status_code == 404


def test_R2_console_amounts_are_typed_in_the_currencys_own_units():
    """The refund and credit forms read an amount with its currency's decimals, as the pages show it: 500 yen is
    500 minor units (not 50000), 1.234 dinars 1234; the placeholder (`major`) reads back as the same amount."""
    from app.console.routes import FormError, major, parse_amount

    assert parse_amount("500", "jpy") == 500
    assert parse_amount("1.234", "kwd") == 1234
    assert parse_amount("12.5", "usd") == 1250
    for amount, currency in ((100000, "jpy"), (1234, "kwd"), (1250, "usd")):
        assert parse_amount(major(amount, currency), currency) == amount
    for text, currency in (("5.5", "jpy"), ("1.2345", "kwd"), ("1.234", "usd")):
        with pytest.raises(FormError):
            parse_amount(text, currency)
