"""A repeated webhook event is answered as a duplicate before anything else: the gateway is not called again (the
calls app/webhooks/service.py makes before its transaction: a failed purchase's cancellation, the gateway's books
following a success)."""

from __future__ import annotations

from tests.api import test_b1_corrections as b1
from tests.api.test_b1_corrections import FAILED, SUCCEEDED, pending_purchase
from tests.support.webhooks import intent_event, post_event

# The sandbox service with a recording gateway, and the real clock it is given (fixtures of the B1 tests).
service, wall = b1.service, b1.wall


class _Recording:
    """Records the gateway's `complete_action` calls, around the recording gateway of the `service` fixture."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.completed: list[str] = []

    async def complete_action(self, payment_intent_id: str) -> None:
        self.completed.append(payment_intent_id)
        await self.inner.complete_action(payment_intent_id)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_a_repeated_failure_event_does_not_cancel_at_the_gateway_again(service):
    client, gateway, secret = service
    _alice, _sub, pending = pending_purchase(client)
    evt = intent_event(FAILED, pending["gateway_payment_id"], amount=2000)
    first = post_event(client, evt, secret)
    assert first.status_code == 200 and first.json()["outcome"] == "applied", first.text
    assert len(gateway.cancels) == 1
    again = post_event(client, evt, secret)
    assert again.status_code == 200 and again.json() == {"received": True, "duplicate": True, "outcome": "duplicate"}
    assert len(gateway.cancels) == 1


def test_a_repeated_success_event_does_not_reach_the_gateway_again(service):
    client, gateway, secret = service
    recording = client.app.state.ctx.gateway = _Recording(gateway)
    _alice, _sub, pending = pending_purchase(client)
    evt = intent_event(SUCCEEDED, pending["gateway_payment_id"], amount=2000)
    first = post_event(client, evt, secret)
    assert first.status_code == 200 and first.json()["outcome"] == "applied", first.text
    again = post_event(client, evt, secret)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert recording.completed == [pending["gateway_payment_id"]]
