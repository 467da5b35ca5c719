"""The console's sign-in session, its CSRF tokens, and where sign-in may return to.

Session: staff paste an ops bearer token (the same JWT the API takes) on /ops/login. It is verified with
`app.auth.verify_token` and never kept: the server opens a session (app/console/sessions.py) and the cookie holds
only that session's random id, HttpOnly, SameSite=Lax, scoped to /ops (Secure on https). Lax, not Strict: a link
to a console page from another site (a helpdesk ticket) is a top-level GET, and must find staff signed in. Every
page looks the session up on the server, so signing out, revoking or timing out ends it for every copy of the
cookie. The cookie is written at sign-in and deleted only at the sign-out of a live session: an answer to a request
that came without a session never deletes it (a browser that did not send it must not lose it).

CSRF: Lax still keeps the cookie off cross-site POSTs; the tokens are the second, independent line. Every POST
form of a session carries HMAC-SHA256(auth_secret, "csrf:" + session id), compared in constant time before the
handler does anything: bound to the session, it changes with every sign-in and needs no storage. The sign-in form
itself (no session yet) carries HMAC-SHA256(auth_secret, "login:" + a random value in its own cookie,
`ops_login`), so another site cannot sign staff in under a token of its choosing.

Return after sign-in: `next`, only a local path under /ops (see `safe_next`); anything else returns to /ops.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import unquote, urlencode

import jwt
from starlette.requests import Request
from starlette.responses import Response

from app.auth import Principal, verify_token
from app.console import sessions
from app.errors import Unauthenticated

COOKIE = "ops_session"
COOKIE_PATH = "/ops"
LOGIN_COOKIE = "ops_login"  # the sign-in form's CSRF secret
LOGIN_PATH = "/ops/login"
MAX_TOKEN_LENGTH = 4096
MAX_NEXT_LENGTH = 2000
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


@dataclass(frozen=True)
class Session:
    principal: Principal
    id_hash: str
    csrf: str


def _mac(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _same(expected: str, submitted: str | None) -> bool:
    if not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace"))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return _same(session.csrf, submitted)


def check_token(secret: str, raw: str) -> tuple[Principal, _dt.datetime | None]:
    """The principal of a pasted token and when the token expires; Unauthenticated if it is not a valid, unexpired
    token."""
    raw = bare_token(raw)
    if not raw or len(raw) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("paste an ops bearer token")
    principal = verify_token(secret, f"Bearer {raw}")
    exp = jwt.decode(raw, options={"verify_signature": False}).get("exp")  # verified just above
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return principal, None
    return principal, _dt.datetime.fromtimestamp(exp, _dt.UTC)


def bare_token(raw: str) -> str:
    """The JWT itself: staff may paste the whole header value ("Bearer <jwt>")."""
    raw = raw.strip()
    return raw[7:].strip() if raw[:7].lower() == "bearer " else raw


def session_id(request: Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and _COOKIE_VALUE.match(value) else None


async def current_session(request: Request) -> Session | None:
    """The signed-in ops member's live session; None when signed out, expired, revoked, or not ops."""
    sid = session_id(request)
    if sid is None:
        return None
    ctx = request.app.state.ctx
    opened = await sessions.find_session(ctx, sid)
    if opened is None or not opened.principal.is_ops:
        return None
    return Session(opened.principal, opened.id_hash, _mac(ctx.settings.auth_secret, "csrf", sid))


def _cookie_options(request: Request, path: str) -> dict:
    return {"path": path, "httponly": True, "samesite": "lax", "secure": request.url.scheme == "https"}


def set_session_cookie(response: Response, request: Request, sid: str) -> None:
    response.set_cookie(COOKIE, sid, **_cookie_options(request, COOKIE_PATH))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, **_cookie_options(request, COOKIE_PATH))


# -- the sign-in form's CSRF token ---------------------------------------------------------------------------------


def login_csrf(request: Request) -> tuple[str, str | None]:
    """The sign-in form's token, and the cookie value to set with the form (None when the browser has one)."""
    secret = request.app.state.ctx.settings.auth_secret
    value = request.cookies.get(LOGIN_COOKIE)
    if value and _COOKIE_VALUE.match(value):
        return _mac(secret, "login", value), None
    value = secrets.token_urlsafe(32)
    return _mac(secret, "login", value), value


def set_login_cookie(response: Response, request: Request, value: str | None) -> None:
    if value is not None:
        response.set_cookie(LOGIN_COOKIE, value, **_cookie_options(request, LOGIN_PATH))


def login_csrf_ok(request: Request, submitted: str | None) -> bool:
    value = request.cookies.get(LOGIN_COOKIE)
    if not value or not _COOKIE_VALUE.match(value):
        return False
    return _same(_mac(request.app.state.ctx.settings.auth_secret, "login", value), submitted)


# -- where sign-in returns to --------------------------------------------------------------------------------------

_LOCAL = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no space, no control character


def safe_next(target: str | None) -> str | None:
    """`target` if it is a console page to return to after sign-in: a local path under /ops (with its query), never
    another host (`//host`, `https://...`, backslashes that browsers read as slashes), never a path that leaves
    /ops through dot segments or encoded separators, never the sign-in or sign-out page. None otherwise."""
    if not target or len(target) > MAX_NEXT_LENGTH or not _LOCAL.match(target) or "\\" in target:
        return None
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path != "/ops" and not path.startswith("/ops/"):
        return None
    decoded = unquote(path)
    if "\\" in decoded or "//" in decoded or not _LOCAL.match(decoded):
        return None
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return None
    if decoded.rstrip("/") in (LOGIN_PATH, "/ops/logout"):
        return None
    return target


def login_url(request: Request, expired: bool) -> str:
    """The sign-in page, remembering the page asked for (a GET's path and query) so that sign-in returns there."""
    params = {"expired": "1"} if expired else {}
    if request.method == "GET":
        asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if asked != "/ops" and safe_next(asked):
            params["next"] = asked
    return LOGIN_PATH + (f"?{urlencode(params)}" if params else "")
