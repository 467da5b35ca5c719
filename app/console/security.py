"""The console's sign-in session and CSRF tokens.

Session: staff paste an ops bearer token (the same JWT the API takes) on /ops/login. It is verified with
`app.auth.verify_token` and kept in an HttpOnly, SameSite=Strict cookie scoped to /ops (Secure on https). Every
page verifies the cookie's token again, so an expired or tampered token sends the browser back to the login page;
there is no server-side session to revoke or leak.

CSRF: every POST form carries HMAC-SHA256(auth_secret, "csrf:" + session token), compared in constant time before
the handler does anything. It is bound to the session token, so it cannot be obtained without the token, changes
with every sign-in, and needs no storage. SameSite=Strict already keeps the cookie off cross-site requests; the
token is the second, independent line.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from app.auth import Principal, verify_token
from app.errors import Unauthenticated

COOKIE = "ops_session"
COOKIE_PATH = "/ops"
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class Session:
    principal: Principal
    token: str
    csrf: str


def csrf_token(secret: str, session_token: str) -> str:
    return hmac.new(secret.encode(), ("csrf:" + session_token).encode(), hashlib.sha256).hexdigest()


def csrf_ok(session: Session, submitted: str | None) -> bool:
    if not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode("utf-8", "replace"))


def check_token(secret: str, raw: str) -> Principal:
    """The principal of a pasted token; Unauthenticated if it is not a valid, unexpired token."""
    raw = bare_token(raw)
    if not raw or len(raw) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("paste an ops bearer token")
    return verify_token(secret, f"Bearer {raw}")


def bare_token(raw: str) -> str:
    """The JWT itself: staff may paste the whole header value ("Bearer <jwt>")."""
    raw = raw.strip()
    return raw[7:].strip() if raw[:7].lower() == "bearer " else raw


def current_session(request: Request) -> Session | None:
    """The signed-in ops member, verified on this request; None when signed out, expired, or not ops."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    secret = request.app.state.ctx.settings.auth_secret
    try:
        principal = check_token(secret, token)
    except Unauthenticated:
        return None
    if not principal.is_ops:
        return None
    return Session(principal, token, csrf_token(secret, token))


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
