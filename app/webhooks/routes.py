from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.context import AppContext
from app.errors import InvalidEvent
from app.gateways.stripe_events import BadSignature, verify_event
from app.http import JSON, problem_response
from app.webhooks.service import handle_event

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("billing.webhooks")


@router.post("/v1/webhooks/stripe")
async def stripe_webhook(request: Request) -> Response:
    """Stripe's signature instead of a token. Bad or stale signature: 400 and nothing changes; a signed event of a
    shape that can never be processed: 400 `invalid_event`, nothing changes; a repeat: 200."""
    ctx: AppContext = request.app.state.ctx  # what the `Ctx` dependency returns, without resolving a dependency
    payload = await request.body()
    try:
        event = verify_event(
            payload,
            request.headers.get("stripe-signature"),
            ctx.settings.stripe_webhook_secret,
            ctx.system_clock.wall(),
        )
    except BadSignature as exc:
        log.warning("webhook refused", extra={"why": str(exc)[:200]})
        return problem_response("invalid_signature", str(exc))
    except InvalidEvent as exc:
        log.warning("webhook event refused", extra={"why": exc.detail[:200]})
        return problem_response("invalid_event", exc.detail)
    duplicate, outcome = await handle_event(ctx, event)
    return JSON({"received": True, "duplicate": duplicate, "outcome": outcome})
