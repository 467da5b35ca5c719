"""The ops console at /ops: find a customer, see everything about them, refund, credit, suspend, lift, terminate.

Same rules as the API: every action calls the domain service the API calls (refunds.service.create_refund,
credits.service.grant_credit, customers.standing.*), with the same request schemas; a refusal (DomainError or a
schema error) is shown on the page as a readable message with its stable code, and nothing changes. Pages are
plain HTML forms (no JavaScript), rendered by Jinja2 with autoescaping, and sent with a CSP that allows no script.
Sign-in and CSRF: see app/console/security.py.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError
from sqlalchemy import Table
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.auth import Principal
from app.console import service, sessions
from app.console.security import (
    COOKIE,
    Session,
    check_token,
    clear_session_cookie,
    csrf_ok,
    current_session,
    login_csrf,
    login_csrf_ok,
    login_url,
    safe_next,
    session_id,
    set_login_cookie,
    set_session_cookie,
)
from app.context import AppContext, Ctx
from app.credits import service as credits_service
from app.credits.schemas import CreditCreate
from app.customers import standing
from app.customers.schemas import StandingChange
from app.errors import ERROR_TABLE, DomainError, NotFound, Unauthenticated
from app.formatting import format_money, minor_unit_digits
from app.invoices import service as invoicing
from app.invoices.routes import pdf_response
from app.models import credit_notes, invoices
from app.plan_changes import service as plan_change_service
from app.plan_changes.schemas import PlanChangeCreate
from app.refunds import service as refunds_service
from app.refunds.schemas import RefundCreate
from app.schemas import Reason, RequestModel
from app.uow import unit_of_work
from policies.decision import Decision

router = APIRouter(prefix="/ops", include_in_schema=False)

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# No script at all; the only inline content is the <style> block; forms post only to this origin.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def money(amount: int | None, currency: str | None) -> str:
    """Integer minor units as major units, sign kept, "—" for none (app.formatting)."""
    return "—" if amount is None else format_money(amount, currency or "")


def when(value: _dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def as_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)


_env.filters.update(money=money, when=when, json=as_json, major=lambda amount, currency: major(amount, currency))


# -- small helpers ------------------------------------------------------------------------------------------------


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    defaults: dict[str, Any] = {
        "session": None,
        "notice": None,
        "error": None,
        "values": {},
        "failed": None,
        "query": "",
    }
    response = HTMLResponse(_env.get_template(name).render({**defaults, **context}), status_code=status)
    response.headers.update(_HEADERS)
    return response


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(_HEADERS)
    return response


def _to_login(request: Request) -> RedirectResponse:
    """No live session: to the sign-in page ("expired" when the browser sent a session cookie), which returns to
    the page asked for. The cookie is left alone (see security.py)."""
    return _redirect(login_url(request, expired=bool(request.cookies.get(COOKIE))))


def _error(code: str, detail: str = "") -> dict[str, str]:
    _status, title = ERROR_TABLE.get(code, (500, "Error"))
    return {"code": code, "title": title, "detail": detail if detail and detail != title else ""}


def _status(code: str) -> int:
    return ERROR_TABLE.get(code, (500, ""))[0]


def _domain_error(exc: DomainError, currency: str | None = None) -> dict[str, str]:
    detail = exc.detail
    if exc.code == "refund_exceeds_payment" and isinstance(exc.extra.get("refundable"), int) and currency:
        detail = f"Only {money(exc.extra['refundable'], currency)} of this payment is left to refund."
    if exc.code == "gateway_unavailable":
        detail = (
            f"{detail} The refund is recorded as pending and will be sent again automatically; "
            "do not issue it a second time."
        ).strip()
    return _error(exc.code, detail)


def _decision_detail(decision: Decision, left: int, currency: str) -> str:
    if decision.code == "refund_exceeds_payment":  # the policy counts in minor units; staff read currency units
        return f"Only {money(left, currency)} of this payment is left to refund."
    return decision.reason


class FormError(ValueError):
    pass


# The schemas' messages where they would confuse on a form (amounts are typed in currency units there).
_FRIENDLY = {
    ("reason", "string_too_short"): "a reason is required",
    ("amount", "greater_than_equal"): "the amount must be more than zero",
    ("amount", "less_than_equal"): "the amount is too large",
}


def _form_error(exc: Exception) -> dict[str, str]:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ())) or "form"
            message = _FRIENDLY.get((where, err.get("type")), str(err.get("msg", "invalid")))
            parts.append(f"{where}: {message.removeprefix('Value error, ')}")
        return _error("validation_error", "; ".join(parts))
    return _error("validation_error", str(exc))


def parse_amount(text: str, currency: str) -> int:
    """A form amount in units of `currency` ("5", "5.00"; "500" yen; "1.234" dinars) to integer minor units, with
    the currency's own number of decimals (ISO 4217, `app.formatting`); never through a float."""
    text = text.strip()
    digits = minor_unit_digits(currency)
    decimals = rf"(?:\.\d{{1,{digits}}})?" if digits else ""
    if not re.fullmatch(rf"\d{{1,10}}{decimals}", text):
        example = "500" if not digits else "5 or 12." + "5" * digits
        raise FormError(
            f"amount: enter an amount in {currency.upper() or 'currency'} units with at most {digits} decimals,"
            f" like {example}"
        )
    units, _, fraction = text.partition(".")
    return int(units) * 10**digits + (int((fraction + "0" * digits)[:digits]) if digits else 0)


def major(amount: int, currency: str) -> str:
    """Integer minor units as the amount a form takes back (`parse_amount`): no grouping, no currency code."""
    digits = minor_unit_digits(currency)
    if not digits:
        return str(amount)
    whole, fraction = divmod(amount, 10**digits)
    return f"{whole}.{fraction:0{digits}d}"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _nonce() -> str:
    return secrets.token_urlsafe(24)


async def _post_guard(request: Request) -> tuple[Session, FormData] | Response:
    """Every POST: a verified session, then the CSRF token, before anything else happens. The session and the form,
    or the response that refuses the request."""
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    form = await request.form()
    if not csrf_ok(session, _text(form, "csrf")):
        return _page(
            "error.html",
            403,
            session=session,
            title="Forbidden",
            error=_error(
                "forbidden",
                "The form's security token is missing or wrong. Nothing was changed; reload the page and try again.",
            ),
        )
    return session, form


def _not_found(session: Session, exc: DomainError) -> HTMLResponse:
    return _page("error.html", 404, session=session, title="Not found", error=_error("not_found", exc.detail))


# -- sign-in ------------------------------------------------------------------------------------------------------


def _login_page(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    """The sign-in form with its CSRF token (and the cookie the token is bound to, when the browser has none)."""
    csrf, new_cookie = login_csrf(request)
    response = _page("login.html", status, csrf=csrf, next=context.pop("next", None), **context)
    set_login_cookie(response, request, new_cookie)
    return response


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    target = safe_next(next)
    if await current_session(request) is not None:
        return _redirect(target or "/ops")
    notice = (
        "Your session has expired or is no longer valid. Paste a new token."
        if request.query_params.get("expired")
        else None
    )
    return _login_page(request, notice=notice, next=target)


@router.post("/login")
async def login(request: Request, ctx: Ctx) -> Response:
    form = await request.form()
    target = safe_next(_text(form, "next"))
    if not login_csrf_ok(request, _text(form, "csrf")):
        return _login_page(
            request,
            403,
            next=target,
            error=_error(
                "forbidden", "The form's security token is missing or wrong. Nothing was done; sign in again."
            ),
        )
    try:
        principal, token_expires_at = check_token(ctx.settings.auth_secret, _text(form, "token"))
    except Unauthenticated as exc:
        return _login_page(
            request, 401, next=target, error=_error("unauthenticated", f"This token was refused: {exc.detail}.")
        )
    if not principal.is_ops:
        return _login_page(
            request,
            403,
            next=target,
            error=_error("forbidden", "This is a customer token; the console is for ops staff only."),
        )
    sid = await sessions.open_session(ctx, principal, token_expires_at, replaces=session_id(request))
    response = _redirect(target or "/ops")
    set_session_cookie(response, request, sid)
    return response


@router.post("/logout")
async def logout(request: Request, ctx: Ctx) -> Response:
    """Ends the session on the server, so that no copy of the cookie works any more."""
    session = await current_session(request)
    if session is None:
        return _redirect("/ops/login")
    form = await request.form()
    if not csrf_ok(session, _text(form, "csrf")):
        return _page(
            "error.html",
            403,
            session=session,
            title="Forbidden",
            error=_error("forbidden", "The form's security token is missing or wrong."),
        )
    await sessions.end_session(ctx, session.id_hash)
    response = _redirect("/ops/login")
    clear_session_cookie(response, request)
    return response


# -- pages --------------------------------------------------------------------------------------------------------


@router.get("")
async def home(request: Request, ctx: Ctx, q: str = "") -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    query = q.strip()
    results = await service.find_customers(ctx, query) if query else []
    return _page("search.html", session=session, query=query, results=results, searched=bool(query))


_DONE = {
    "credit": "Credit granted.",
    "suspended": "The account is suspended: no access until the suspension is lifted.",
    "unsuspended": "The suspension is lifted.",
    "terminated": "The account is terminated: every subscription and trial has ended; nothing was refunded.",
    "duplicate": "That form had already been submitted; nothing more was done.",
    "change_scheduled": "The plan change is scheduled for the end of the current period.",
    "change_withdrawn": "The pending plan change is withdrawn.",
}


async def _customer_page(
    ctx: AppContext, session: Session, customer_id: str, status: int = 200, **context: Any
) -> HTMLResponse:
    try:
        overview = await service.customer_overview(ctx, session.principal, customer_id)
    except NotFound as exc:
        return _not_found(session, exc)
    return _page("customer.html", status, session=session, o=overview, c=overview.customer, nonce=_nonce(), **context)


@router.get("/customers/{customer_id}")
async def customer_page(customer_id: str, request: Request, ctx: Ctx) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    return await _customer_page(ctx, session, customer_id, notice=_DONE.get(request.query_params.get("done", "")))


@router.post("/customers/{customer_id}/credit")
async def grant_credit(customer_id: str, request: Request, ctx: Ctx) -> Response:
    guarded = await _post_guard(request)
    if isinstance(guarded, Response):
        return guarded
    session, form = guarded
    values = {k: _text(form, k) for k in ("amount", "currency", "reason")}
    try:
        currency = values["currency"].strip().lower()
        body = CreditCreate(amount=parse_amount(values["amount"], currency), currency=currency, reason=values["reason"])
    except (ValidationError, FormError) as exc:
        return await _customer_page(
            ctx, session, customer_id, 422, error=_form_error(exc), values=values, failed="credit"
        )
    nonce = _text(form, "nonce")
    if not _NONCE.match(nonce):
        return await _customer_page(
            ctx,
            session,
            customer_id,
            422,
            values=values,
            failed="credit",
            error=_error("validation_error", "The form is incomplete; try again."),
        )
    if not await service.use_once(ctx, session.principal, "credit", nonce, f"{customer_id}:{body.model_dump()}"):
        return _redirect(f"/ops/customers/{customer_id}?done=duplicate")
    try:
        async with unit_of_work(ctx) as uow:
            await credits_service.grant_credit(uow, session.principal, customer_id, body)
    except NotFound as exc:
        return _not_found(session, exc)
    except DomainError as exc:
        return await _customer_page(
            ctx, session, customer_id, _status(exc.code), error=_domain_error(exc), values=values, failed="credit"
        )
    return _redirect(f"/ops/customers/{customer_id}?done=credit")


_STANDING = {
    "suspend": (standing.suspend, "suspended"),
    "unsuspend": (standing.unsuspend, "unsuspended"),
    "terminate": (standing.terminate, "terminated"),
}


@router.post("/customers/{customer_id}/{action}")
async def change_standing(customer_id: str, action: str, request: Request, ctx: Ctx) -> Response:
    """R3: suspend, lift a suspension, terminate; always with a reason."""
    if action not in _STANDING:
        session = await current_session(request)
        if session is None:
            return _to_login(request)
        return _not_found(session, NotFound(f"no action {action!r}"))
    guarded = await _post_guard(request)
    if isinstance(guarded, Response):
        return guarded
    session, form = guarded
    change, done = _STANDING[action]
    values = {"reason": _text(form, "reason"), "confirm": _text(form, "confirm")}
    try:
        body = StandingChange(reason=values["reason"])
        if action == "terminate" and values["confirm"] != "yes":
            raise FormError("confirm: tick the box to confirm that the account is terminated for good")
    except (ValidationError, FormError) as exc:
        return await _customer_page(
            ctx, session, customer_id, 422, error=_form_error(exc), values=values, failed=action
        )
    try:
        async with unit_of_work(ctx) as uow:
            await change(uow, session.principal, customer_id, body.reason)
    except NotFound as exc:
        return _not_found(session, exc)
    except DomainError as exc:
        return await _customer_page(
            ctx, session, customer_id, _status(exc.code), error=_domain_error(exc), values=values, failed=action
        )
    return _redirect(f"/ops/customers/{customer_id}?done={done}")


async def _payment_page(
    ctx: AppContext,
    session: Session,
    payment_id: str,
    status: int = 200,
    refusal: DomainError | None = None,
    **context: Any,
) -> HTMLResponse:
    try:
        view = await service.payment_view(ctx, session.principal, payment_id)
    except NotFound as exc:
        return _not_found(session, exc)
    if refusal is not None:
        context["error"] = _domain_error(refusal, view.payment.currency)
    context.setdefault("made", None)
    return _page("payment.html", status, session=session, v=view, p=view.payment, **context)


@router.get("/invoices/{invoice_id}/pdf")
async def invoice_pdf(invoice_id: str, request: Request, ctx: Ctx) -> Response:
    """I1: an invoice's PDF, for the staff signed in (the links of a customer's page)."""
    return await _document_pdf(request, ctx, invoices, invoice_id, "invoice")


@router.get("/credit-notes/{credit_note_id}/pdf")
async def credit_note_pdf(credit_note_id: str, request: Request, ctx: Ctx) -> Response:
    """I2: a credit note's PDF, for the staff signed in."""
    return await _document_pdf(request, ctx, credit_notes, credit_note_id, "credit note")


async def _document_pdf(request: Request, ctx: AppContext, table: Table, document_id: str, noun: str) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    try:
        number, body = await invoicing.pdf_of(ctx, session.principal, table, document_id, noun)
    except NotFound as exc:
        return _not_found(session, exc)
    return pdf_response(number, body)


@router.get("/payments/{payment_id}")
async def payment_page(payment_id: str, request: Request, ctx: Ctx) -> Response:
    session = await current_session(request)
    if session is None:
        return _to_login(request)
    notice = None
    if request.query_params.get("done") == "duplicate":
        notice = _DONE["duplicate"]
    return await _payment_page(ctx, session, payment_id, notice=notice, made=request.query_params.get("refund"))


@router.post("/payments/{payment_id}/refund")
async def refund(payment_id: str, request: Request, ctx: Ctx) -> Response:
    """R2, in two steps through this one handler: without `confirm` it shows what would be refunded and what is left
    (nothing changes); with `confirm=yes` it makes the refund through the API's service function.

    A double submit of the confirmation (double click, re-post, two tabs) must not refund twice. Relying on the
    refund reservation rule alone (never more than what is left, enforced under the payment's row lock) would bound
    the damage but still let a partial refund go through twice, so the confirmation form also carries a one-time
    nonce that is spent atomically before the service is called (service.use_once); a second submission finds it
    spent and changes nothing. The reservation rule still guards against stale confirmations: confirming after
    someone else refunded the rest is refused with refund_exceeds_payment.
    """
    guarded = await _post_guard(request)
    if isinstance(guarded, Response):
        return guarded
    session, form = guarded
    principal: Principal = session.principal
    values = {"amount": _text(form, "amount"), "reason": _text(form, "reason")}
    try:  # the amount is typed in the payment's currency, with that currency's decimals
        currency = (await service.payment_view(ctx, principal, payment_id)).payment.currency
    except NotFound as exc:
        return _not_found(session, exc)
    try:
        body = RefundCreate(amount=parse_amount(values["amount"], currency), reason=values["reason"])
    except (ValidationError, FormError) as exc:
        return await _payment_page(ctx, session, payment_id, 422, error=_form_error(exc), values=values)

    if _text(form, "confirm") != "yes":
        try:
            view = await service.payment_view(ctx, principal, payment_id)
        except NotFound as exc:
            return _not_found(session, exc)
        payment = view.payment
        # The preview asks the same policy function the service applies (R2); the service decides again, under
        # the payment's lock, when the refund is confirmed.
        decision = refunds_service.refund_check(principal, payment, body)
        if not decision.allowed:
            return _page(
                "payment.html",
                _status(decision.code or "validation_error"),
                session=session,
                v=view,
                p=payment,
                values=values,
                made=None,
                error=_error(
                    decision.code or "validation_error",
                    _decision_detail(decision, view.left_to_refund, payment.currency),
                ),
            )
        return _page(
            "refund_confirm.html",
            session=session,
            v=view,
            p=payment,
            amount=body.amount,
            amount_text=major(body.amount, payment.currency),
            reason=body.reason,
            nonce=_nonce(),
        )

    nonce = _text(form, "nonce")
    if not _NONCE.match(nonce):
        return await _payment_page(
            ctx,
            session,
            payment_id,
            422,
            values=values,
            error=_error("validation_error", "The confirmation is incomplete; start again."),
        )
    if not await service.use_once(ctx, principal, "refund", nonce, f"{payment_id}:{body.amount}:{body.reason}"):
        return _redirect(f"/ops/payments/{payment_id}?done=duplicate")
    try:
        row = await refunds_service.create_refund(ctx, principal, payment_id, body)
    except NotFound as exc:
        return _not_found(session, exc)
    except DomainError as exc:
        return await _payment_page(ctx, session, payment_id, _status(exc.code), values=values, refusal=exc)
    return _redirect(f"/ops/payments/{payment_id}?refund={row.id}")


# -- plan changes (C3/C4, issue 16) -------------------------------------------------------------------------------


class PlanChangeForm(RequestModel):
    """A plan change asked or withdrawn by ops: the same request as the API's (C3, at the period end), with the
    reason the audit trail keeps."""

    reason: Reason


@router.post("/subscriptions/{subscription_id}/plan-change")
async def schedule_plan_change(subscription_id: str, request: Request, ctx: Ctx) -> Response:
    """C3: a change to another plan at the end of the current period, through the API's use case
    (`plan_changes.service.change`), with a reason and a ticked confirmation; once per form (its nonce)."""
    return await _plan_change_action(subscription_id, request, ctx, withdraw=False)


@router.post("/subscriptions/{subscription_id}/plan-change/withdraw")
async def withdraw_plan_change(subscription_id: str, request: Request, ctx: Ctx) -> Response:
    """C3/C4: the pending change withdrawn (`plan_changes.service.withdraw`, as the API's DELETE), with a reason."""
    return await _plan_change_action(subscription_id, request, ctx, withdraw=True)


async def _plan_change_action(subscription_id: str, request: Request, ctx: Ctx, *, withdraw: bool) -> Response:
    guarded = await _post_guard(request)
    if isinstance(guarded, Response):
        return guarded
    session, form = guarded
    try:
        customer_id = await service.subscription_owner(ctx, session.principal, subscription_id)
    except NotFound as exc:
        return _not_found(session, exc)
    failed = f"{'withdraw' if withdraw else 'change'}:{subscription_id}"
    values = {k: _text(form, k) for k in ("plan", "reason", "confirm")}
    try:
        reason = PlanChangeForm(reason=values["reason"]).reason
        body = PlanChangeCreate(plan=values["plan"] or "-", when="period_end")
        if not withdraw and not values["plan"]:
            raise FormError("plan: choose the plan to change to")
        if not withdraw and values["confirm"] != "yes":
            raise FormError("confirm: tick the box to confirm the change at the end of the current period")
    except (ValidationError, FormError) as exc:
        return await _customer_page(
            ctx, session, customer_id, 422, error=_form_error(exc), values=values, failed=failed
        )
    nonce = _text(form, "nonce")
    if not _NONCE.match(nonce):
        return await _customer_page(
            ctx,
            session,
            customer_id,
            422,
            values=values,
            failed=failed,
            error=_error("validation_error", "The form is incomplete; try again."),
        )
    # One purpose per form of the page (the page's forms share its nonce): a double submit of this form is caught.
    purpose = f"plan-{'withdraw' if withdraw else 'change'}:{subscription_id}"
    if not await service.use_once(ctx, session.principal, purpose, nonce, f"{body.plan}:{reason}"):
        return _redirect(f"/ops/customers/{customer_id}?done=duplicate")
    try:
        async with unit_of_work(ctx) as uow:
            if withdraw:
                await plan_change_service.withdraw(uow, session.principal, subscription_id, reason=reason)
            else:
                await plan_change_service.change(uow, session.principal, subscription_id, body, reason=reason)
    except NotFound as exc:
        return _not_found(session, exc)
    except DomainError as exc:
        return await _customer_page(
            ctx, session, customer_id, _status(exc.code), error=_domain_error(exc), values=values, failed=failed
        )
    return _redirect(f"/ops/customers/{customer_id}?done={'change_withdrawn' if withdraw else 'change_scheduled'}")
