"""Helpers for the reliability tests: replicas (real `billing serve` processes), an HTTP client that pages through
lists, and the API's own view of a customer."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SECRET, customer_headers, ops_headers
from tests.support.processes import start_server
from tests.support.servers import Replica

ROOT = Path(__file__).resolve().parents[2]


def parse(value: str | None) -> _dt.datetime | None:
    return None if value is None else _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def start_service(
    database_url: str,
    *,
    wall_offset: _dt.timedelta | None = None,
    charge_delay: float = 0.0,
    charge_log: Path | None = None,
    log_file: Path | None = None,
    **env: str,
) -> Replica:
    """Like tests.support.servers.start_replica, optionally with the real clock shifted or a slow gateway (see
    _launch), and its log (JSON lines on stderr) appended to `log_file`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    environment.update(
        BILLING_DATABASE_URL=database_url,
        BILLING_AUTH_SECRET=SECRET,
        BILLING_SANDBOX="true",
        BILLING_DEMO_PLANS="false",
        BILLING_SCHEDULER_ENABLED="false",
        BILLING_LOG_LEVEL="WARNING",
        BILLING_RATE_LIMIT_WRITES_PER_MINUTE="0",
        RELIABILITY_WALL_OFFSET_SECONDS=str((wall_offset or _dt.timedelta()).total_seconds()),
        RELIABILITY_CHARGE_DELAY_SECONDS=str(charge_delay),
        RELIABILITY_CHARGE_LOG=str(charge_log or ""),
    )
    environment.update(env)
    patched = wall_offset or charge_delay or charge_log or "RELIABILITY_LOST_HEARTBEAT_ANSWERS" in env
    module = "tests.reliability._launch" if patched else "app.cli"
    return start_server(
        [sys.executable, "-m", module, "serve"],
        environment,
        name="replica",
        cwd=ROOT,
        log_path=log_file,
        seconds=60,
    )


def server_errors(log_file: Path) -> list[str]:
    """The unhandled errors replicas logged (JSON lines): the exception, and where in app/ it was raised."""
    import json

    found = []
    for line in log_file.read_text(errors="replace").splitlines() if log_file.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") != "error" or not entry.get("exc") or entry.get("logger") == "uvicorn.error":
            continue  # uvicorn logs the same exception again for the request
        lines = [x.strip() for x in entry["exc"].splitlines()]
        errors = [
            x
            for x in lines
            if not x.startswith(("File ", "(Background", "^", "Traceback", "The above"))
            and ("Error" in x.split(":")[0] or "Exception" in x.split(":")[0])
        ]
        frames = [x for x in lines if x.startswith("File ") and "/app/" in x]
        found.append(f"{entry.get('msg')}: {errors[-1] if errors else lines[-1]} at {frames[-1] if frames else '?'}")
    return found


class Api:
    """A small synchronous client: ops by default, `as_customer(sub)` for a customer token."""

    def __init__(self, http: Any, headers: dict[str, str] | None = None) -> None:
        self.http = http  # an httpx.Client with base_url, or a Starlette TestClient
        self.headers = headers or ops_headers()

    def as_customer(self, sub: str) -> Api:
        return Api(self.http, customer_headers(sub))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def all(self, path: str, params: dict[str, Any] | None = None) -> list[dict]:
        """Every item of a list endpoint, following `starting_after` (newest first)."""
        items: list[dict] = []
        query = dict(params or {}, limit=100)
        while True:
            page = self.ok("GET", path, params=query)
            items.extend(page["data"])
            if not page["has_more"]:
                return items
            query["starting_after"] = page["data"][-1]["id"]

    def view(self, customer_id: str) -> dict[str, Any]:
        """Everything the API shows about one customer (ops view)."""
        base = f"/v1/customers/{customer_id}"
        payments = self.all(f"{base}/payments")
        return {
            "customer": self.ok("GET", base),
            "subscriptions": self.all(f"{base}/subscriptions"),
            "trials": self.all(f"{base}/trials"),
            "payments": payments,
            "refunds": {
                p["id"]: self.all(f"/v1/payments/{p['id']}/refunds") for p in payments if p["status"] == "succeeded"
            },
            "notices": self.all(f"{base}/notices"),
            "access": self.ok("GET", f"{base}/access"),
        }

    def quick_view(self, customer_id: str) -> dict[str, Any]:
        """The same view from the customer's export (D1) and access: two requests instead of many."""
        export = self.ok("GET", f"/v1/customers/{customer_id}/export")
        refunds: dict[str, list] = {p["id"]: [] for p in export["payments"] if p["status"] == "succeeded"}
        for refund in export["refunds"]:
            refunds.setdefault(refund["payment_id"], []).append(refund)
        return {
            "customer": export["customer"],
            "subscriptions": export["subscriptions"],
            "trials": export["trials"],
            "payments": export["payments"],
            "refunds": refunds,
            "notices": export["notices"],
            "credits": export["credits"],
            "access": self.ok("GET", f"/v1/customers/{customer_id}/access"),
        }

    def clock(self) -> _dt.datetime:
        return parse(self.ok("GET", "/v1/sandbox/clock")["now"])

    def move_clock(self, to: _dt.datetime) -> httpx.Response:
        return self.post("/v1/sandbox/clock", json={"now": iso(to)})
