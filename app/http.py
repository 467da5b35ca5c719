"""JSON and problem+json responses, serialised once with orjson (RFC 3339 UTC times with a `Z`)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from app.errors import PROBLEM_JSON, problem
from app.schemas import page as page  # the list envelope, declared with `ListOf`

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=_OPTIONS)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def problem_response(code: str, detail: str = "", status: int | None = None, **extra: Any) -> Response:
    status, body = problem(code, detail, status, **extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON)
