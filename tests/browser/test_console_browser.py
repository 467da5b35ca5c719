"""The ops console end to end in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright's
Python package; no browser download) against the service running as a real `billing serve` process.

A staff member signs in by pasting an ops token, finds a customer who bought a subscription through the API,
opens the payment, makes a partial refund through the confirmation step, sees the refund and what is left, then
suspends the customer. One screenshot is saved (to $BILLING_CONSOLE_SCREENSHOT, or the test's tmp dir).

Locally the test is skipped when /usr/bin/chromium is missing; CI installs it with tests/system-packages.sh.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import START, customer_headers, ops_headers, token
from tests.support.servers import start_replica

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STAFF = "staff-browser-3"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is not installed (Debian's `chromium` package; CI runs tests/system-packages.sh)",
)


@pytest.fixture
def service(clean_db: str):
    replica = start_replica(clean_db)
    try:
        with httpx.Client(base_url=replica.url, timeout=30) as api:
            assert api.post("/v1/sandbox/clock", json={"now": START}, headers=ops_headers()).status_code == 200
            yield replica.url, api
    finally:
        replica.stop()


@pytest.fixture
def browser_page(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (dev extra) is needed")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            locale="en-US",
        )
        try:
            context.set_default_timeout(15_000)
            page = context.pages[0] if context.pages else context.new_page()
            yield page, sync_api.expect
        finally:
            context.close()


def test_staff_refund_part_of_a_payment_then_suspend_the_customer(service, browser_page, tmp_path):
    base, api = service
    page, expect = browser_page

    # A customer with a purchased subscription, all through the API.
    plan = api.post(
        "/v1/plans",
        json={
            "code": "pro-monthly",
            "name": "Pro Monthly",
            "tier": "subscription",
            "interval": "month",
            "amount": 2000,
            "currency": "usd",
            "trial_available": False,
        },
        headers=ops_headers(),
    )
    assert plan.status_code == 201, plan.text
    customer = api.post(
        "/v1/customers",
        json={"email": "Dana.Scully@Example.com", "name": "Dana Scully", "country": "US"},
        headers=customer_headers("dana"),
    )
    assert customer.status_code == 201, customer.text
    customer_id = customer.json()["id"]
    bought = api.post(
        "/v1/subscriptions",
        json={"customer_id": customer_id, "plan": "pro-monthly", "payment_method": "pm_card_visa"},
        headers=customer_headers("dana"),
    )
    assert bought.status_code == 201 and bought.json()["status"] == "active", bought.text
    [payment] = api.get(f"/v1/customers/{customer_id}/payments", headers=ops_headers()).json()["data"]

    # Signed out: any console page leads to the sign-in form. Paste an ops token.
    page.goto(f"{base}/ops")
    expect(page).to_have_url(re.compile(r"/ops/login$"))
    page.get_by_label("Ops token").fill(token(STAFF, "ops"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header")).to_contain_text(f"Signed in as {STAFF}")

    # Find the customer by email, whatever its case and spaces.
    page.get_by_label("Find a customer by email or id").fill("  dana.scully@EXAMPLE.com ")
    page.locator("header").get_by_role("button", name="Find").click()
    expect(page.locator("main")).to_contain_text("1 customer found")
    page.get_by_role("link", name=customer_id).click()
    expect(page.locator("h1")).to_contain_text("Dana Scully")
    expect(page.locator("h1")).to_contain_text("active")

    # Open the payment and refund part of it, through the confirmation step.
    page.get_by_role("link", name=payment["id"]).first.click()
    expect(page.locator("#left-to-refund")).to_have_text("20.00 USD")
    page.get_by_label("Amount (USD)").fill("7.25")
    page.get_by_label("Reason (required)").fill("Outage on 14 January <b>apology</b>")
    page.get_by_role("button", name="Review refund").click()
    expect(page.locator("h1")).to_have_text("Confirm the refund")
    expect(page.locator("#left-now")).to_have_text("20.00 USD")
    expect(page.locator("#this-refund")).to_have_text("7.25 USD")
    expect(page.locator("#left-after")).to_have_text("12.75 USD")
    assert api.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()["refunded_amount"] == 0
    page.get_by_role("button", name="Refund 7.25 USD").click()

    expect(page.locator(".notice")).to_contain_text("of 7.25 USD made")
    expect(page.locator("#refunded")).to_have_text("7.25 USD")
    expect(page.locator("#left-to-refund")).to_have_text("12.75 USD")
    expect(page.locator("table")).to_contain_text("Outage on 14 January <b>apology</b>")  # shown as text
    after = api.get(f"/v1/payments/{payment['id']}", headers=ops_headers()).json()
    assert after["refunded_amount"] == 725
    [made] = api.get(f"/v1/payments/{payment['id']}/refunds", headers=ops_headers()).json()["data"]
    assert made["amount"] == 725 and made["created_by"] == STAFF and made["status"] == "succeeded"

    # Back to the customer, suspend with a reason.
    page.get_by_role("link", name=re.compile("Dana Scully")).click()
    page.get_by_label("Suspend: reason (required)").fill("Chargeback under review")
    page.get_by_role("button", name="Suspend account").click()
    expect(page.locator(".notice")).to_contain_text("The account is suspended")
    expect(page.locator("h1")).to_contain_text("suspended")
    expect(page.locator("main")).to_contain_text("customer.suspended")
    assert api.get(f"/v1/customers/{customer_id}", headers=ops_headers()).json()["status"] == "suspended"
    events = api.get(
        "/v1/audit-events", params={"customer_id": customer_id, "actor": STAFF}, headers=ops_headers()
    ).json()["data"]
    assert {e["action"] for e in events} >= {"refund.requested", "customer.suspended"}

    shot = Path(os.environ.get("BILLING_CONSOLE_SCREENSHOT") or tmp_path / "console.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ops/login$"))
    page.goto(f"{base}/ops/customers/{customer_id}")
    expect(page).to_have_url(re.compile(r"/ops/login"))


def test_console_a_link_from_another_site_keeps_staff_signed_in_and_sign_in_returns_to_it(
    service, browser_page, tmp_path
):
    """R2/R3, issue 19: staff follow a link to a customer's page from another site (a helpdesk ticket; here a
    data: URL page, an opaque origin, so the navigation is cross-site). Signed in, they see the page and stay
    signed in (the cookie is SameSite=Lax, and a request without it never deletes it). Signed out, they sign in
    and land on the page the link asked for, not on /ops."""
    base, api = service
    page, expect = browser_page
    customer = api.post(
        "/v1/customers",
        json={"email": "fox@example.com", "name": "Fox Mulder", "country": "US"},
        headers=customer_headers("fox"),
    )
    assert customer.status_code == 201, customer.text
    target = f"{base}/ops/customers/{customer.json()['id']}"
    ticket = "data:text/html," + quote(f'<h1>Ticket 4711</h1><p><a id="link" href="{target}">the customer</a></p>')

    def sign_in() -> None:
        expect(page).to_have_url(re.compile(r"/ops/login"))
        page.get_by_label("Ops token").fill(token(STAFF, "ops"))
        page.get_by_role("button", name="Sign in").click()

    page.goto(f"{base}/ops/login")
    shot = Path(os.environ.get("BILLING_LOGIN_SCREENSHOT") or tmp_path / "login.png")
    page.screenshot(path=str(shot), full_page=True)
    sign_in()
    expect(page.locator("header")).to_contain_text(f"Signed in as {STAFF}")

    # Signed in: the ticket's link opens the customer's page, and the console stays signed in.
    page.goto(ticket)
    page.locator("#link").click()
    expect(page).to_have_url(target)
    expect(page.locator("h1")).to_contain_text("Fox Mulder")
    expect(page.locator("header")).to_contain_text(f"Signed in as {STAFF}")
    page.goto(f"{base}/ops")
    expect(page.locator("header")).to_contain_text(f"Signed in as {STAFF}")

    # Signed out: the link asks for sign-in, which then returns to the customer's page.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ops/login$"))
    page.goto(ticket)
    page.locator("#link").click()
    sign_in()
    expect(page).to_have_url(target)
    expect(page.locator("h1")).to_contain_text("Fox Mulder")


def test_C3_staff_schedule_a_plan_change_then_withdraw_it(service, browser_page):
    """C3 (issue 16, item 7): the customer's page shows the pending change; staff schedule one at the period end
    (reason and confirmation), then withdraw it (reason), through the API's use case."""
    base, api = service
    page, expect = browser_page
    for code, amount, interval in (("pro-monthly", 2000, "month"), ("pro-yearly", 20000, "year")):
        plan = {"code": code, "name": code.title(), "tier": "subscription", "interval": interval, "amount": amount}
        made = api.post("/v1/plans", json={**plan, "currency": "usd"}, headers=ops_headers())
        assert made.status_code == 201, made.text
    customer = api.post(
        "/v1/customers",
        json={"email": "walter@example.com", "name": "Walter Skinner", "country": "US"},
        headers=customer_headers("walter"),
    )
    assert customer.status_code == 201, customer.text
    customer_id = customer.json()["id"]
    bought = api.post(
        "/v1/subscriptions",
        json={"customer_id": customer_id, "plan": "pro-monthly", "payment_method": "pm_card_visa"},
        headers=customer_headers("walter"),
    )
    assert bought.status_code == 201, bought.text
    sub_id = bought.json()["id"]

    page.goto(f"{base}/ops/customers/{customer_id}")
    page.get_by_label("Ops token").fill(token(STAFF, "ops"))
    page.get_by_role("button", name="Sign in").click()
    section = page.get_by_role("region", name=f"Plan change of {sub_id}")
    expect(section).to_contain_text("No plan change pending")

    section.get_by_text("Schedule a plan change at the period end").click()
    section.get_by_label("New plan", exact=True).select_option("pro-yearly")
    section.locator(f"#plan-reason-{sub_id}").fill("Asked by phone")
    section.locator(f"#plan-confirm-{sub_id}").check()
    section.get_by_role("button", name="Schedule plan change").click()
    expect(page.locator(".notice")).to_contain_text("plan change is scheduled")
    section = page.get_by_role("region", name=f"Plan change of {sub_id}")
    expect(section).to_contain_text("Pending change: to pro-yearly")
    expect(section).to_contain_text("200.00 USD")
    pending = api.get(f"/v1/subscriptions/{sub_id}", headers=ops_headers()).json()["pending_change"]
    assert pending["plan"] == "pro-yearly"

    section.locator(f"#withdraw-reason-{sub_id}").fill("Changed their mind")
    section.get_by_role("button", name="Withdraw plan change").click()
    expect(page.locator(".notice")).to_contain_text("pending plan change is withdrawn")
    assert api.get(f"/v1/subscriptions/{sub_id}", headers=ops_headers()).json()["pending_change"] is None
