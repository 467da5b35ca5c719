"""Structured JSON logs with a request id, Prometheus metrics, and the request body limit."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.clock import SystemClock
from app.http import problem_response
from app.ids import new_id

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
MAX_BODY_BYTES = 1_048_576
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = logging.getLogger("billing.http")


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Only ids and codes go into log fields, never personal data (D-rules)."""

    # uvicorn's `color_message` repeats the message with terminal colour codes: never written.
    _skip = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One plain line per record, for a person at a terminal: time (UTC), level, logger, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)sZ %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self.converter = time.gmtime


def log_format_for(configured: str, stream: object) -> str:
    """`json` or `text`: as configured, or for `auto`, text on a terminal and JSON otherwise (log collectors)."""
    if configured != "auto":
        return configured
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(level: str, log_format: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if log_format_for(log_format, sys.stderr) == "text":
        formatter = TextFormatter()
    else:
        formatter = JsonFormatter()
        formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn.access",):  # our own access line replaces it
        logging.getLogger(name).disabled = True
    # APScheduler narrates every run of the scheduler's tick at INFO; its warnings and errors still come through.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # Drivers that log statements with their parameters (personal data) at DEBUG stay quiet at any level.
    for name in ("aiosqlite", "asyncpg", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Metrics:
    def __init__(self, backlog_refresh_seconds: float = 15.0) -> None:
        from app.health.backlog import Backlog

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "billing_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "billing_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.jobs = Counter(
            "billing_job_items_total", "Items processed by scheduled jobs", ["job"], registry=self.registry
        )
        self.gateway_refusals = Counter(
            "billing_gateway_refusals_total",
            "Scheduled charges the gateway refused itself (a request or configuration problem, not a decline)",
            registry=self.registry,
        )
        self.backlog = Backlog(self.registry, backlog_refresh_seconds)
        self._children: dict[tuple[str, str, int], tuple] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request and its latency. The labelled children are looked up once per (method, route, status):
        routes are templates, so there are few."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


class BodyTooLarge(Exception):
    pass


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = SystemClock.perf_counter()
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else new_id("req")
        token = request_id_var.set(request_id)
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        async def too_large() -> None:
            await problem_response("payload_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")(
                scope, receive, send_wrapper
            )

        try:
            if (
                b"%00" in scope.get("raw_path", b"")
                or b"%00" in scope.get("query_string", b"")
                or "\x00" in scope["path"]
            ):
                # No database stores a NUL in text: refuse it at the door rather than as a 500 deeper in.
                return await problem_response(
                    "validation_error",
                    "NUL characters are not allowed in URLs",
                    errors=[{"field": "url", "location": "path", "message": "NUL character"}],
                )(scope, receive, send_wrapper)
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                    return await too_large()
            elif scope["method"] in ("POST", "PUT", "PATCH"):
                # No declared length (chunked): read the body up to the limit before the app sees it. An error
                # raised from `receive` inside the app would be turned into a 400 by the framework, not a 413.
                buffered = await _buffer_body(receive)
                if buffered is None:
                    return await too_large()
                receive = _replaying(buffered, receive)
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                if response_started:
                    raise
                await too_large()
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = SystemClock.perf_counter() - started
            self.metrics.observe_request(scope["method"], template, status, elapsed)
            if template not in ("/healthz", "/metrics") and log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id_var.reset(token)


async def _buffer_body(receive: Receive) -> list[Message] | None:
    """The request's messages up to the end of its body, or None once they exceed MAX_BODY_BYTES."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > MAX_BODY_BYTES:
            return None
        if not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
