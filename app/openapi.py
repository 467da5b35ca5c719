"""The OpenAPI document (/openapi.json, /docs, /redoc): FastAPI's, with the errors described as the app really sends
them and the bearer token declared, so that "Authorize" in /docs works. The documentation pages load Swagger UI and
ReDoc from the service itself (the assets of the `fastapi-offline` package), never from a CDN: they work offline and
behind a strict proxy.

FastAPI documents a 422 `HTTPValidationError` in application/json for every operation with parameters and no other
error. The app answers every refusal with `application/problem+json` (api.md "Conventions", app/errors.py): a
`Problem` {type, title, status, detail, code, ...}, and for a refused request a `ValidationProblem` that also lists
the offending fields in `errors`. Each operation documents the problems it can answer with, derived from

- what the route is: a token (401), ops only (403), an id in the path (404), parameters or a body, and every
  POST's Idempotency-Key (422), a body (413), a POST with a token: Idempotency-Key replays (409, 422), a write with
  a token while rate limits are on (429, Retry-After);
- DOMAIN_REFUSALS below: the domain codes each operation may answer with. Their statuses and titles come from
  app.errors.ERROR_TABLE, the one table that maps codes to HTTP.

The document is built once, on the first request for it, and cached by FastAPI (`app.openapi_schema`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from app.auth import current_principal, ops_principal
from app.errors import ERROR_TABLE, PROBLEM_JSON

try:
    from fastapi.routing import iter_route_contexts  # the routes of included routers, with their prefixes
except ImportError:  # FastAPI before lazily included routers: app.routes holds every APIRoute itself

    def iter_route_contexts(routes: list) -> Iterator:  # type: ignore[misc]  # the older FastAPI's stand-in
        return iter(routes)


PROBLEM = "#/components/schemas/Problem"
VALIDATION_PROBLEM = "#/components/schemas/ValidationProblem"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})  # ObservabilityMiddleware limits these bodies (413)
BEARER = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token minted by `billing token --sub ID --role customer|ops` (HS256, "
        "signed with BILLING_AUTH_SECRET).",
    }
}
DOCS_ASSETS = "/docs/assets"
RETRY_AFTER_CODES = frozenset({"rate_limited", "charge_in_progress"})  # answered with a Retry-After header

# The domain refusals of each operation, beyond those its shape implies (see the module docstring). A code that
# app.errors.ERROR_TABLE does not know is left out of the document.
DOMAIN_REFUSALS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/readyz"): ("service_unavailable",),
    ("POST", "/v1/webhooks/stripe"): ("invalid_signature", "invalid_event"),
    ("POST", "/v1/customers"): ("customer_exists",),
    ("POST", "/v1/customers/{customer_id}/suspend"): ("customer_terminated", "charge_in_progress"),
    ("POST", "/v1/customers/{customer_id}/unsuspend"): ("customer_terminated",),
    ("POST", "/v1/customers/{customer_id}/terminate"): ("customer_terminated",),
    ("POST", "/v1/customers/{customer_id}/credits"): ("customer_terminated",),
    ("GET", "/v1/plans/{code}"): ("plan_not_found",),
    ("POST", "/v1/plans"): ("plan_exists",),
    ("PATCH", "/v1/plans/{code}"): ("plan_not_found",),
    ("POST", "/v1/trials"): (
        "not_found",
        "plan_not_found",
        "customer_inactive",
        "trial_not_eligible",
        "trial_not_available",
    ),
    ("POST", "/v1/subscriptions"): (
        "not_found",
        "plan_not_found",
        "customer_inactive",
        "subscription_exists",
        "card_declined",
        "gateway_error",
        "gateway_unavailable",
    ),
    ("POST", "/v1/subscriptions/{subscription_id}/cancel"): ("subscription_ended", "charge_in_progress"),
    ("POST", "/v1/subscriptions/{subscription_id}/resume"): ("subscription_ended",),
    ("POST", "/v1/subscriptions/{subscription_id}/payment-method"): ("subscription_ended",),
    ("POST", "/v1/payments/{payment_id}/refunds"): (
        "payment_not_refundable",
        "refund_exceeds_payment",
        "refund_failed",
    ),
    ("POST", "/v1/sandbox/clock"): ("clock_backwards",),
}


def problem_schemas() -> dict[str, dict[str, Any]]:
    """The component schemas of the problem responses (app.errors.problem and the handlers in app.main)."""
    return {
        "Problem": {
            "title": "Problem",
            "type": "object",
            "description": "A refusal (RFC 9457 problem details, `application/problem+json`) with a stable machine "
            "`code`. Some problems carry more members, e.g. `retry_after` (seconds), "
            "`decline_code` and `payment_id` (card_declined), `refundable` (refund refusals), "
            "`rule` (the policy rule that refused).",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": {
                    "type": "string",
                    "description": "A URI naming the problem type: https://billing.example.com/problems/{code}",
                },
                "title": {"type": "string", "description": "The same for every problem with this code."},
                "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status code."},
                "detail": {"type": "string", "description": "What went wrong with this request, for humans."},
                "code": {
                    "type": "string",
                    "pattern": "^[a-z][a-z_]*$",
                    "description": "Stable machine code; each response names the codes it may carry.",
                },
            },
            "additionalProperties": True,
        },
        "FieldError": {
            "title": "FieldError",
            "type": "object",
            "required": ["field", "location", "message"],
            "properties": {
                "field": {
                    "type": "string",
                    "description": "The refused field, dotted for nested ones "
                    "(e.g. `amount`, `price.currency`); the location "
                    "itself when the whole part was refused.",
                },
                "location": {"type": "string", "description": "Where it was: body, query, path or header."},
                "message": {"type": "string"},
            },
        },
        "ValidationProblem": {
            "title": "ValidationProblem",
            "description": "A 422 problem. A refused request (`validation_error`) lists the offending fields in "
            "`errors`; the other 422 codes an operation names carry no `errors`.",
            "allOf": [
                {"$ref": PROBLEM},
                {
                    "type": "object",
                    "properties": {
                        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
                    },
                },
            ],
        },
    }


def install_openapi(app: FastAPI, *, rate_limited: bool) -> None:
    """Serve FastAPI's document (built once, cached) with the problem responses described."""
    described: list[dict] = []

    def openapi() -> dict[str, Any]:
        document = FastAPI.openapi(app)  # cached in app.openapi_schema (rebuilt only if the routes change)
        if not described or described[0] is not document:
            describe_problems(document, app.routes, rate_limited=rate_limited)
            described[:] = [document]
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's way to replace the schema


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, their JavaScript and CSS served from DOCS_ASSETS. Create the app with
    `docs_url=None, redoc_url=None` so that FastAPI's CDN-loading pages are not installed as well."""
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def describe_problems(document: dict[str, Any], routes: list, *, rate_limited: bool) -> None:
    """Replace FastAPI's default 422 and add the problem responses of every documented operation, in place."""
    for route, method, operation in _operations(document, routes):
        if current_principal in set(_calls(route.dependant)):
            operation["security"] = [{name: []} for name in BEARER]
        responses = operation.setdefault("responses", {})
        responses.pop("422", None)  # FastAPI's HTTPValidationError (application/json): never sent
        for status, codes in sorted(_statuses(route, method, operation, rate_limited=rate_limited).items()):
            responses.setdefault(str(status), _problem_response(status, codes))
    document.setdefault("components", {})["securitySchemes"] = BEARER
    components = document["components"].setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, unused once the 422s are replaced
        components.pop(name, None)
    components.update(problem_schemas())
    document["components"]["schemas"] = dict(sorted(components.items()))


def _operations(document: dict[str, Any], routes: list) -> Iterator[tuple[Any, str, dict[str, Any]]]:
    """(route, method, documented operation) for every operation in the document. `route` is the APIRoute or its
    effective context in the app (path with the router prefixes, dependencies with the router's)."""
    paths = document.get("paths", {})
    for route in iter_route_contexts(routes):
        if not isinstance(getattr(route, "original_route", route), APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is not None:
                yield route, method, operation


def _calls(dependant: Dependant) -> Iterator[Callable]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def refusals(route: APIRoute, method: str, operation: dict[str, Any], *, rate_limited: bool) -> list[str]:
    """The problem codes an operation (`route`'s `method`, documented as `operation`) may answer with."""
    calls = set(_calls(route.dependant))
    with_token = current_principal in calls
    parameters = operation.get("parameters", [])
    codes = []
    if with_token:
        codes.append("unauthenticated")
    if ops_principal in calls:
        codes.append("forbidden")
    if any(parameter.get("in") == "path" for parameter in parameters):
        codes.append("not_found")
    if parameters or "requestBody" in operation or method == "POST":  # every POST: a malformed Idempotency-Key
        codes.append("validation_error")
    if method in WITH_BODY:
        codes.append("payload_too_large")
    if method == "POST" and with_token:  # IdempotencyMiddleware keys POSTs per verified caller
        codes += ["idempotency_key_reused", "idempotency_key_in_use"]
    if method in WRITES and with_token and rate_limited:  # RateLimitMiddleware counts verified callers' writes
        codes.append("rate_limited")
    codes += DOMAIN_REFUSALS.get((method, route.path_format), ())
    return list(dict.fromkeys(code for code in codes if code in ERROR_TABLE))


def _statuses(route: APIRoute, method: str, operation: dict[str, Any], *, rate_limited: bool) -> dict[int, list[str]]:
    statuses: dict[int, list[str]] = {}
    for code in refusals(route, method, operation, rate_limited=rate_limited):
        statuses.setdefault(ERROR_TABLE[code][0], []).append(code)
    return statuses


def _problem_response(status: int, codes: list[str]) -> dict[str, Any]:
    schema = VALIDATION_PROBLEM if status == 422 else PROBLEM
    described = "; ".join(f"`{code}`: {ERROR_TABLE[code][1]}" for code in codes)
    response: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}. {described}.",
        "content": {PROBLEM_JSON: {"schema": {"$ref": schema}}},
    }
    if RETRY_AFTER_CODES.intersection(codes):
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again (with "
                + ", ".join(f"`{c}`" for c in codes if c in RETRY_AFTER_CODES)
                + ").",
                "schema": {"type": "integer"},
            }
        }
    return response
