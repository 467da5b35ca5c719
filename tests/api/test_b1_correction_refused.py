"""B1/R2 (review finding 10a): a B1 correction refund the gateway refuses is never retried (its id is fixed), so it
is counted by `billing_corrections_failed` (alerted on: money owed to a customer) until ops re-issue it as an R2
refund of the same amount with the reason "B1 correction re-issued" (docs/operations.md); once the payment is
refunded in full the count is back to zero."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.gateways.base import GatewayError
from tests.api.test_b1_corrections import FAILED, SUCCEEDED, Gateway, payment, pending_purchase, refunds_of, send
from tests.conftest import START, ManualWall, make_settings, move_clock, ops_headers, run_due
from tests.test_alerts import scrape

GAUGE = "billing_corrections_failed"


class RefusingGateway(Gateway):
    """The recording sandbox gateway; `refund_refused`: the gateway refuses refunds (not the card: the request)."""

    refund_refused = False

    async def refund(self, payment_id: str, amount: int, idempotency_key: str):
        if self.refund_refused:
            self.refunds.append((payment_id, amount, idempotency_key))
            raise GatewayError("the gateway refused the refund")
        return await super().refund(payment_id, amount, idempotency_key)


@pytest.fixture
def service(clean_db: str):
    from app.main import create_app

    settings = make_settings(clean_db, backlog_refresh_seconds=0)
    app = create_app(settings, system_clock=ManualWall())
    gateway = app.state.ctx.gateway = RefusingGateway(app.state.ctx.gateway)
    with TestClient(app, raise_server_exceptions=False) as client:
        move_clock(client, START)
        yield client, gateway, settings.stripe_webhook_secret


def test_B1_R2_a_refused_correction_refund_is_counted_until_ops_reissue_it(service):
    client, gateway, secret = service
    _alice, _sub, pending = pending_purchase(client)
    assert send(client, secret, FAILED, pending["gateway_payment_id"])["outcome"] == "applied"
    assert scrape(client)[GAUGE] == 0
    gateway.refund_refused = True
    assert send(client, secret, SUCCEEDED, pending["gateway_payment_id"])["outcome"] == "refunded_late_success"
    [refused] = refunds_of(client, pending["id"])
    assert (refused["status"], refused["source"], refused["amount"]) == ("failed", "correction", 2000)
    assert payment(client, pending["id"])["refunded_amount"] == 0  # the customer keeps nothing back
    run_due(client)
    assert len(gateway.refunds) == 1  # no job retries it
    assert scrape(client)[GAUGE] == 1  # money owed: BillingCorrectionRefundFailed pages
    # Ops re-issue it (R2): a refund of the same amount, with the reason that says what it is.
    gateway.refund_refused = False
    reissued = client.post(
        f"/v1/payments/{pending['id']}/refunds",
        json={"amount": 2000, "reason": "B1 correction re-issued"},
        headers=ops_headers(),
    )
    assert reissued.status_code == 201, reissued.text
    assert (reissued.json()["status"], reissued.json()["source"]) == ("succeeded", "ops")
    assert payment(client, pending["id"])["refunded_amount"] == 2000
    assert scrape(client)[GAUGE] == 0
