"""Who may call: HS256 bearer tokens with `sub`, `role` (customer|ops) and `exp`."""

from __future__ import annotations

import datetime as _dt
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Literal

import jwt
from fastapi import Depends, Request

from app.clock import SystemClock
from app.errors import Forbidden, NotFound, Unauthenticated

ROLES = ("customer", "ops")
# `sub` becomes a customer's external_id and the audit log's actor (VARCHAR(255) both), and is matched against
# them: control characters (NUL, which PostgreSQL refuses in text, and the rest) and lone surrogates (not UTF-8)
# make a token bad, as they would make it unusable.
MAX_SUB_LENGTH = 255
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: Literal["customer", "ops"]

    @property
    def is_ops(self) -> bool:
        return self.role == "ops"

    @property
    def caller_key(self) -> str:
        """Scope of the caller's idempotency keys."""
        return f"{self.role}:{self.sub}"

    def check_owns(self, external_id: str | None) -> None:
        """A customer token reaches only its own customer; anything else is 404 (existence is not revealed)."""
        if not self.is_ops and external_id != self.sub:
            raise NotFound("no such resource")

    def require_ops(self) -> None:
        if not self.is_ops:
            raise Forbidden("this action is for ops staff only")


class Tokens:
    """The bearer tokens of one app (its secret), verified recently: token -> (principal, exp). A client sends the
    same token with every request; its signature is checked once, its expiry on every use. Only a token that
    verified is kept (keyed by its exact text, so nothing else can match it), bounded in size. One per app context
    (`ctx.tokens`), so apps with different secrets never share it.

    Expiry is checked against real time (`SystemClock.wall`, the class's: app/clock.py), the time PyJWT checks a
    token's first use against, so a cached token expires exactly when an uncached one would; not against the app's
    `ctx.system_clock`, which tests move forward to age leases."""

    MAX = 10_000

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._verified: OrderedDict[str, tuple[Principal, int]] = OrderedDict()

    def verify(self, authorization: str | None) -> Principal:
        """`verify_token` with this app's secret, remembering the tokens that verified."""
        token = _bearer(authorization)
        cached = self._verified.get(token)
        if cached is not None:
            if SystemClock.wall().timestamp() < cached[1]:
                return cached[0]
            del self._verified[token]
            raise Unauthenticated("token expired")
        principal, exp = _decode(self.secret, token)
        if exp is not None:
            self._verified[token] = (principal, exp)
            if len(self._verified) > self.MAX:
                self._verified.popitem(last=False)
        return principal


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("expected 'Authorization: Bearer <token>'")
    return token


def verify_token(secret: str, authorization: str | None) -> Principal:
    """Verify `Authorization: Bearer <jwt>`; anything but a valid, unexpired HS256 token is 401. Nothing is
    remembered (requests go through their app's `Tokens`)."""
    return _decode(secret, _bearer(authorization))[0]


def _decode(secret: str, token: str) -> tuple[Principal, int | None]:
    """The token's principal and its `exp` as PyJWT compares it (None when it is not a number)."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from None
    sub, role, exp = claims.get("sub"), claims.get("role"), claims.get("exp")
    if not isinstance(sub, str) or not sub or not isinstance(role, str) or role not in ROLES:
        raise Unauthenticated("token claims 'sub' and 'role' (customer|ops) are required")
    if len(sub) > MAX_SUB_LENGTH or _UNSTORABLE.search(sub):
        raise Unauthenticated(f"token claim 'sub' must be 1 to {MAX_SUB_LENGTH} characters, without control characters")
    principal = Principal(sub=sub, role="ops" if role == "ops" else "customer")  # one of ROLES, checked above
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return principal, int(exp)  # as PyJWT compares it
    return principal, None


def mint_token(secret: str, sub: str, role: str, ttl: _dt.timedelta, now: _dt.datetime) -> str:
    """A token for development and operators (`billing token`)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    return jwt.encode({"sub": sub, "role": role, "exp": int((now + ttl).timestamp())}, secret, algorithm="HS256")


async def current_principal(request: Request) -> Principal:  # async: no thread-pool hop
    # The rate limiter or the idempotency middleware may already have verified the token for this request (read
    # from the scope's state directly: `request.state` raises, and catches, an AttributeError when it is not set).
    state = request.scope.setdefault("state", {})
    principal = state.get("principal")
    if principal is None:
        principal = state["principal"] = request.app.state.ctx.tokens.verify(request.headers.get("authorization"))
    return principal


async def ops_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    principal.require_ops()
    return principal


Caller = Annotated[Principal, Depends(current_principal)]
OpsCaller = Annotated[Principal, Depends(ops_principal)]
