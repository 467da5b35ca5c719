"""The baseline of the API ratios: a bare FastAPI app answering the benchmarked routes with a JSON body of the same
size as the service's answer, with no authentication, no middleware and no database.

It is served exactly as `billing serve` serves the service (app/cli.py): `uvicorn.run` in one process, one worker,
uvicorn's default (auto) loop and HTTP implementations, `log_config=None`, `proxy_headers=True`, and the access
logger disabled as the service's logging set-up disables it. Responses are serialised per request with orjson,
as the service's `app.http.JSON` does.

    python bench/bare_app.py --port 8100 --bodies bodies.json

`bodies.json` holds {"read": <the service's GET /v1/subscriptions/{id} body>, "write": <its cancel body>};
run.py captures them from the running service so that the sizes match.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import orjson
import uvicorn
from fastapi import FastAPI
from starlette.responses import Response


class JSON(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def create_app(read_body: dict, write_body: dict) -> FastAPI:
    app = FastAPI(title="bare")

    @app.get("/healthz")
    async def healthz():
        return JSON({"status": "ok"})

    @app.get("/v1/subscriptions/{subscription_id}")
    async def get_subscription(subscription_id: str):
        return JSON(read_body)

    @app.post("/v1/subscriptions/{subscription_id}/cancel")
    async def cancel(subscription_id: str):
        return JSON(write_body)

    @app.post("/v1/subscriptions/{subscription_id}/resume")
    async def resume(subscription_id: str):
        return JSON(write_body)

    @app.post("/v1/webhooks/stripe")
    async def webhook():
        return JSON({"received": True, "duplicate": False, "outcome": "applied"})

    return app


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--bodies", required=True, help="JSON file {'read': {...}, 'write': {...}}")
    args = parser.parse_args()
    with open(args.bodies) as f:
        bodies = json.load(f)
    # The service's logging set-up (app.health.observability.configure_logging at WARNING): one stderr handler on the
    # root logger and uvicorn's access logger disabled.
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True
    app = create_app(bodies["read"], bodies["write"])
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, timeout_graceful_shutdown=20, proxy_headers=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
