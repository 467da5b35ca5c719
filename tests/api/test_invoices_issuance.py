"""I1/I2: every payment and refund path issues exactly one document, in the transaction that records the success:
a purchase (direct, and completed by Stripe's `payment_intent.succeeded`), the renewal batch (numbered at once), a
success that bought nothing (B1) and its correction refund, an ops refund (R2) and a refund made in Stripe's
dashboard (`charge.refunded`). The payment names its invoice (`invoice_id`), the refund its credit note
(`credit_note_id`), and the events `invoice.issued` / `credit_note.issued` are recorded with the change."""

from __future__ import annotations

from sqlalchemy import func, select

from app.invoices import service as invoicing
from app.models import credit_notes, invoices, payments, refunds
from policies.states import PaymentStatus, RefundStatus
from tests.api.test_b1_corrections import SUCCEEDED, abandon, pending_purchase, refunds_of, send, service, wall  # noqa: F401 (fixtures)
from tests.api.test_events import events_of
from tests.api.test_subscriptions import buy, payments_of
from tests.conftest import make_customer, make_plan, move_clock, ops_headers, run_due
from tests.support.webhooks import event, post_event


def get(client, path: str) -> dict:
    response = client.get(path, headers=ops_headers())
    assert response.status_code == 200, response.text
    return response.json()


def one_document_each(client) -> tuple[int, int]:
    """Every succeeded payment has exactly one invoice and names it; every succeeded refund exactly one credit
    note and names it; nothing else has one. Returns (invoices, credit notes)."""

    async def check(conn):
        paid = (
            await conn.execute(
                select(payments.c.id, payments.c.invoice_id).where(payments.c.status == PaymentStatus.SUCCEEDED)
            )
        ).all()
        issued = (await conn.execute(select(invoices.c.id, invoices.c.payment_id))).all()
        made = (
            await conn.execute(
                select(refunds.c.id, refunds.c.credit_note_id).where(refunds.c.status == RefundStatus.SUCCEEDED)
            )
        ).all()
        notes = (await conn.execute(select(credit_notes.c.id, credit_notes.c.refund_id))).all()
        unlinked = (
            await conn.execute(
                select(func.count())
                .select_from(payments)
                .where(payments.c.status != PaymentStatus.SUCCEEDED, payments.c.invoice_id.is_not(None))
            )
        ).scalar_one()
        return paid, issued, made, notes, unlinked

    async def run():
        async with client.app.state.ctx.db.transaction() as conn:
            return await check(conn)

    paid, issued, made, notes, unlinked = client.portal.call(run)
    assert sorted((i, p) for p, i in paid) == sorted((i, p) for i, p in issued)
    assert sorted((n, r) for r, n in made) == sorted((n, r) for n, r in notes)
    assert unlinked == 0
    return len(issued), len(notes)


def test_I1_a_purchase_issues_its_invoice_with_the_payment(client) -> None:
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    invoice = get(client, f"/v1/invoices/{payment['invoice_id']}")
    assert (invoice["payment_id"], invoice["total"], invoice["number"]) == (payment["id"], 2000, "INV-2030-000001")
    issued = events_of(client, alice["id"], type="invoice.issued")
    assert [e["data"]["object"] for e in issued] == [invoice]
    [paid_event] = [e for e in events_of(client, alice["id"]) if e["type"] == "payment.succeeded"]
    assert paid_event["data"]["object"]["invoice_id"] == invoice["id"]
    assert one_document_each(client) == (1, 0)


def test_I1_the_renewal_batch_numbers_its_invoices_at_once(client) -> None:
    make_plan(client, amount=2000)
    people = [make_customer(client, name) for name in ("alice", "bob", "carol")]
    for person in people:
        buy(client, person)
    move_clock(client, "2030-02-15T12:00:00Z")
    jobs = run_due(client)
    assert jobs["subscription_renewals"] == 3
    assert jobs["document_pdfs"] == 3  # the batch stored them without PDF; the job rendered them right after
    renewals = [payments_of(client, person)[0] for person in people]
    numbers = sorted(get(client, f"/v1/invoices/{p['invoice_id']}")["number"] for p in renewals)
    assert numbers == ["INV-2030-000004", "INV-2030-000005", "INV-2030-000006"]
    assert run_due(client)["subscription_renewals"] == 0
    assert one_document_each(client) == (6, 0)
    assert len(events_of(client, type="invoice.issued")) == 6


def test_I2_an_ops_refund_and_a_dashboard_refund_each_issue_a_credit_note(client, settings) -> None:
    make_plan(client, amount=2000)
    alice = make_customer(client, "alice")
    buy(client, alice)
    [payment] = payments_of(client, alice)
    made = client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": 500, "reason": "goodwill"},
        headers={**ops_headers(), "Idempotency-Key": "r1"},
    ).json()
    assert made["status"] == "succeeded" and made["credit_note_id"]
    note = get(client, f"/v1/credit-notes/{made['credit_note_id']}")
    assert (note["refund_id"], note["amount"], note["number"]) == (made["id"], 500, "CN-2030-000001")
    charge = {
        "id": "ch_alice",
        "object": "charge",
        "amount": 2000,
        "payment_intent": payment["gateway_payment_id"],
        "refunds": {
            "object": "list",
            "data": [
                {"id": "re_dash_1", "object": "refund", "amount": 300, "status": "succeeded", "metadata": {}},
                {"id": made["gateway_refund_id"], "object": "refund", "amount": 500, "status": "succeeded",
                 "metadata": {"refund_id": made["id"]}},
            ],
        },
    }  # fmt: skip
    reply = post_event(client, event("charge.refunded", charge), settings.stripe_webhook_secret)
    assert reply.status_code == 200 and reply.json()["outcome"] == "applied", reply.text
    dashboard = next(r for r in get(client, f"/v1/payments/{payment['id']}/refunds")["data"] if r["id"] != made["id"])
    assert get(client, f"/v1/credit-notes/{dashboard['credit_note_id']}")["amount"] == 300
    assert len(events_of(client, alice["id"], type="credit_note.issued")) == 2
    assert one_document_each(client) == (1, 2)


def test_I1_I2_a_success_that_bought_nothing_is_invoiced_and_its_correction_credited(service) -> None:  # noqa: F811
    client, _, secret = service
    _, sub, payment = pending_purchase(client)
    abandon(client, secret, "canceled", sub, payment)
    send(client, secret, SUCCEEDED, payment["gateway_payment_id"])
    paid = get(client, f"/v1/payments/{payment['id']}")
    assert paid["status"] == "succeeded" and paid["invoice_id"]
    [correction] = refunds_of(client, payment["id"])
    assert correction["status"] == "succeeded" and correction["credit_note_id"]
    note = get(client, f"/v1/credit-notes/{correction['credit_note_id']}")
    assert note["invoice_id"] == paid["invoice_id"] and note["amount"] == 2000
    assert one_document_each(client) == (1, 1)


def stored_pdfs(client) -> dict[str, bytes | None]:
    async def run():
        async with client.app.state.ctx.db.transaction() as conn:
            return dict((await conn.execute(select(invoices.c.id, invoices.c.pdf))).all())

    return client.portal.call(run)


def test_I1_a_pdf_is_the_same_bytes_whoever_renders_it_and_whenever(client, monkeypatch) -> None:
    """A purchase renders its PDF at issue; a renewal batch stores none and the `document_pdfs` job renders it; a
    download before the job renders and stores it. Every one of them is the render of the stored document alone."""
    make_plan(client, amount=2000)
    alice, bob = make_customer(client, "alice"), make_customer(client, "bob")
    buy(client, alice)
    buy(client, bob)
    assert all(pdf is not None for pdf in stored_pdfs(client).values())  # rendered inline at the purchase
    monkeypatch.setattr("app.invoices.service.render_pending_pdfs", _nothing)
    monkeypatch.setattr(invoicing, "render_pending_pdfs", _nothing)
    move_clock(client, "2030-02-15T12:00:00Z")
    assert run_due(client)["subscription_renewals"] == 2
    pending = sorted(i for i, pdf in stored_pdfs(client).items() if pdf is None)
    assert len(pending) == 2
    downloaded = client.get(f"/v1/invoices/{pending[0]}/pdf", headers=ops_headers()).content  # before the job
    monkeypatch.undo()
    move_clock(client, "2030-02-15T12:05:00Z")
    assert run_due(client)["document_pdfs"] == 1  # the other one; the downloaded one is stored already
    stored = stored_pdfs(client)
    assert stored[pending[0]] == downloaded
    for invoice_id, body in stored.items():
        document = get(client, f"/v1/invoices/{invoice_id}")
        assert body == invoicing.render("invoices", document)  # rendered again now, from the API's JSON
        assert client.get(f"/v1/invoices/{invoice_id}/pdf", headers=ops_headers()).content == body


async def _nothing(*args, **kwargs) -> int:
    return 0


def test_I1_the_receipt_names_the_invoice_and_carries_its_pdf_when_mailed(clean_db) -> None:
    """With SMTP configured (a real local server), a purchase's and a renewal's receipts are mailed with their
    invoice's PDF attached, the very bytes the download serves; the notice's text names the invoice number."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import START, make_settings
    from tests.support.servers import SmtpServer

    server = SmtpServer().start()
    try:
        settings = make_settings(clean_db, smtp_url=server.url, smtp_from="billing@test.example")
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            move_clock(client, START)
            make_plan(client, amount=2000)
            alice = make_customer(client, "alice")
            buy(client, alice)
            move_clock(client, "2030-02-15T12:00:00Z")
            assert run_due(client)["deliver_notices"] == 2  # the purchase's receipt, then the renewal's
            receipts = [m for _, m in server.inbox.messages if m["Subject"].startswith("Receipt")]
            assert len(receipts) == 2
            for payment, message in zip(reversed(payments_of(client, alice)), receipts, strict=True):
                invoice = get(client, f"/v1/invoices/{payment['invoice_id']}")
                text = message.get_body(preferencelist=("plain",)).get_content()
                assert f"Invoice: {invoice['number']}" in text
                [attachment] = list(message.iter_attachments())
                assert attachment.get_filename() == f"{invoice['number']}.pdf"
                assert attachment.get_content_type() == "application/pdf"
                pdf = client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=ops_headers()).content
                assert attachment.get_content() == pdf
            notices = get(client, f"/v1/customers/{alice['id']}/notices")["data"]
            assert sum("Invoice: INV-2030-00000" in n["body"] for n in notices if n["type"] == "receipt") == 2
    finally:
        server.stop()
