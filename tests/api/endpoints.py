"""THE table of every endpoint the service offers, with who may call it and a valid example body.

`tests/api/test_auth.py` drives its checks from this table and fails when the application has a route that is not
listed here, so a new endpoint must join the table (and so gets the authentication and ownership checks for free).

access:
- "public": no token needed (plans catalogue, health, metrics, the OpenAPI document and its viewers);
- "any":    any valid token, customer or ops;
- "owner":  a customer token reaches only its own customer and what belongs to it, named in the path or in the
            body's `customer_id` (others answer 404, existence not revealed); ops reach every customer;
- "ops":    ops tokens only; a customer token answers 403.
- "signed": the payment webhook, which takes Stripe's signature instead of a token: without a valid signature it
            answers 400 whatever token is sent. (Not one of the four token classes, so it gets a class of its own.)
- "console": the ops console's HTML pages and forms, which take an ops session cookie (made by signing in at
            /ops/login) and, on forms, a CSRF token, instead of a bearer token: without an ops session they send
            the browser to /ops/login (303) and change nothing; with one but without the CSRF token a form is 403.
- "console_sign_in": the console's sign-in and sign-out, reachable without a session.

Paths (and string values in bodies) use the application's own placeholders; `test_auth.py` fills them in:
- {customer_id}: a customer owned by OWNER_SUB;
- {code}:        the plan code PLAN_CODE (trial available), created before each check;
- {action}:      a console standing change ("suspend");
- {other_code}:  a second plan (yearly), to change a subscription to (C3);
- {trial_id}, {subscription_id}, {payment_id}: a trial, a paid subscription (bought with `pm_card_visa`) and its
  first payment, of the OWNER_SUB customer; made only for the checks of endpoints that name them;
- {invoice_id}, {credit_note_id}: that payment's invoice, and the credit note of a refund of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Access = Literal["public", "any", "owner", "ops", "signed", "console", "console_sign_in"]

OWNER_SUB = "owner-1"
OTHER_SUB = "intruder-1"
PLAN_CODE = "table-plan"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    access: Access
    body: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS: list[Endpoint] = [
    # Operations
    Endpoint("GET", "/healthz", "public"),
    Endpoint("GET", "/readyz", "public"),
    Endpoint("GET", "/metrics", "public"),
    Endpoint("GET", "/openapi.json", "public"),
    Endpoint("GET", "/docs", "public"),
    Endpoint("GET", "/docs/oauth2-redirect", "public"),
    Endpoint("GET", "/redoc", "public"),
    # Customers. POST creates the caller's own customer (external_id = the token's sub).
    Endpoint("POST", "/v1/customers", "any", {"email": "new@example.com", "name": "New Customer", "country": "DE"}),
    Endpoint("GET", "/v1/customers/{customer_id}", "owner"),
    Endpoint("PATCH", "/v1/customers/{customer_id}", "owner", {"name": "Corrected Name", "marketing_opt_out": True}),
    Endpoint("GET", "/v1/customers/{customer_id}/export", "owner"),
    Endpoint("DELETE", "/v1/customers/{customer_id}", "owner"),
    Endpoint("GET", "/v1/customers/{customer_id}/access", "owner"),
    Endpoint("GET", "/v1/customers/{customer_id}/trials", "owner"),
    Endpoint("GET", "/v1/customers/{customer_id}/notices", "owner"),
    Endpoint("GET", "/v1/customers/{customer_id}/subscriptions", "owner"),
    Endpoint("GET", "/v1/customers/{customer_id}/payments", "owner"),
    Endpoint("GET", "/v1/customers/{customer_id}/credits", "owner"),
    Endpoint(
        "POST",
        "/v1/customers/{customer_id}/credits",
        "ops",
        {"amount": 500, "currency": "usd", "reason": "goodwill after an outage"},
    ),
    Endpoint(
        "POST",
        "/v1/customers/{customer_id}/messages",
        "ops",
        {"category": "service", "subject": "Planned maintenance", "body": "We will be down on Sunday."},
    ),
    Endpoint("POST", "/v1/customers/{customer_id}/suspend", "ops", {"reason": "chargeback under review"}),
    Endpoint("POST", "/v1/customers/{customer_id}/unsuspend", "ops", {"reason": "chargeback resolved"}),
    Endpoint("POST", "/v1/customers/{customer_id}/terminate", "ops", {"reason": "fraud confirmed"}),
    # Trials
    Endpoint("POST", "/v1/trials", "owner", {"customer_id": "{customer_id}", "plan": "{code}"}),
    Endpoint("GET", "/v1/trials/{trial_id}", "owner"),
    # Subscriptions
    Endpoint(
        "POST",
        "/v1/subscriptions",
        "owner",
        {"customer_id": "{customer_id}", "plan": "{code}", "payment_method": "pm_card_visa"},
    ),
    Endpoint("GET", "/v1/subscriptions/{subscription_id}", "owner"),
    Endpoint("POST", "/v1/subscriptions/{subscription_id}/cancel", "owner"),
    Endpoint("POST", "/v1/subscriptions/{subscription_id}/resume", "owner"),
    Endpoint("POST", "/v1/subscriptions/{subscription_id}/payment-method", "owner", {"payment_method": "pm_card_visa"}),
    Endpoint("POST", "/v1/subscriptions/{subscription_id}/change", "owner", {"plan": "{other_code}"}),
    Endpoint("DELETE", "/v1/subscriptions/{subscription_id}/pending-change", "owner"),
    # Payments and refunds
    Endpoint("GET", "/v1/payments/{payment_id}", "owner"),
    Endpoint("GET", "/v1/payments/{payment_id}/refunds", "owner"),
    Endpoint("POST", "/v1/payments/{payment_id}/refunds", "ops", {"amount": 100, "reason": "goodwill"}),
    # Invoices and credit notes (issue 17): issued through app/invoices/service.py until the payment path does
    Endpoint("GET", "/v1/customers/{customer_id}/invoices", "owner"),
    Endpoint("GET", "/v1/customers/{customer_id}/credit-notes", "owner"),
    Endpoint("GET", "/v1/invoices/{invoice_id}", "owner"),
    Endpoint("GET", "/v1/invoices/{invoice_id}/pdf", "owner"),
    Endpoint("GET", "/v1/credit-notes/{credit_note_id}", "owner"),
    Endpoint("GET", "/v1/credit-notes/{credit_note_id}/pdf", "owner"),
    # Audit
    Endpoint("GET", "/v1/audit-events", "ops"),
    # Ops console (HTML forms; bodies are sent as forms)
    Endpoint("GET", "/ops/login", "console_sign_in"),
    Endpoint("POST", "/ops/login", "console_sign_in"),
    Endpoint("POST", "/ops/logout", "console_sign_in"),
    Endpoint("GET", "/ops", "console"),
    Endpoint("GET", "/ops/customers/{customer_id}", "console"),
    Endpoint(
        "POST",
        "/ops/customers/{customer_id}/credit",
        "console",
        {"amount": "5.00", "currency": "usd", "reason": "goodwill", "nonce": "n" * 32},
    ),
    Endpoint("POST", "/ops/customers/{customer_id}/{action}", "console", {"reason": "chargeback under review"}),
    Endpoint("GET", "/ops/payments/{payment_id}", "console"),
    Endpoint("GET", "/ops/invoices/{invoice_id}/pdf", "console"),
    Endpoint("GET", "/ops/credit-notes/{credit_note_id}/pdf", "console"),
    Endpoint(
        "POST",
        "/ops/payments/{payment_id}/refund",
        "console",
        {"amount": "1.00", "reason": "goodwill", "nonce": "n" * 32},
    ),
    # Ops console: plan changes (C3/C4, issue 16)
    Endpoint(
        "POST",
        "/ops/subscriptions/{subscription_id}/plan-change",
        "console",
        {"plan": "{other_code}", "reason": "asked by phone", "confirm": "yes", "nonce": "n" * 32},
    ),
    Endpoint(
        "POST",
        "/ops/subscriptions/{subscription_id}/plan-change/withdraw",
        "console",
        {"reason": "asked by phone", "nonce": "n" * 32},
    ),
    # Domain events (the outbox of outbound webhooks)
    Endpoint("GET", "/v1/events", "ops"),
    Endpoint("GET", "/v1/events/{event_id}", "ops"),
    # Payment webhooks
    Endpoint(
        "POST",
        "/v1/webhooks/stripe",
        "signed",
        {"id": "evt_table_1", "object": "event", "type": "customer.created", "data": {"object": {}}},
    ),
    # Plans
    Endpoint("GET", "/v1/plans", "public"),
    Endpoint("GET", "/v1/plans/{code}", "public"),
    Endpoint(
        "POST",
        "/v1/plans",
        "ops",
        {
            "code": "example-yearly",
            "name": "Example, yearly",
            "tier": "subscription",
            "interval": "year",
            "amount": 19900,
            "currency": "eur",
            "trial_available": False,
        },
    ),
    Endpoint("PATCH", "/v1/plans/{code}", "ops", {"amount": 1500}),
    # Sandbox (mounted while BILLING_SANDBOX is on, as in the tests)
    Endpoint("GET", "/v1/sandbox/clock", "any"),
    Endpoint("POST", "/v1/sandbox/clock", "ops", {"now": "2030-02-01T00:00:00Z"}),
    Endpoint("POST", "/v1/sandbox/run-due", "ops"),
]
