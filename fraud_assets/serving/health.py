"""``/readyz`` that says *how* ready: ready, or degraded when the online store is stale.

BentoML answers ``/readyz`` 200 once ``__is_ready__`` is true, 503 before. This middleware
keeps the status codes (a load balancer keeps routing to a degraded worker: stale terminal
snapshots are better than no scores) and replaces the 200's body by the worker's status:
``{"status": "ready" | "degraded", "store_as_of", "store_lag_s", "max_lag_s", ...}``.
Degraded: the newest transaction scored is more than ``FRAUD_STORE_MAX_LAG_S`` (default a
day) past the end of the store's day, i.e. the daily terminal refresh has not arrived.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraud_assets.lib.contracts import STORE_MAX_LAG_ENV
from fraud_assets.serving.logs import encode_json

DEFAULT_MAX_LAG_S = 86_400.0
READY, DEGRADED = "ready", "degraded"


def max_store_lag() -> float:
    raw = os.environ.get(STORE_MAX_LAG_ENV, "").strip()
    value = float(raw) if raw else DEFAULT_MAX_LAG_S
    if not value >= 0:
        raise ValueError(f"{STORE_MAX_LAG_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


def store_status(lag_s: float | None, max_lag_s: float) -> str:
    return DEGRADED if lag_s is not None and lag_s > max_lag_s else READY


class ReadinessDetail:
    """Replaces the body of a 200 ``/readyz`` by ``status()`` (set by the service)."""

    status: Callable[[], dict[str, Any]] | None = None  # the worker's, once it is built

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = ReadinessDetail.status
        if scope["type"] != "http" or scope["path"] != "/readyz" or status is None:
            await self.app(scope, receive, send)
            return
        code: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                code.append(message["status"])
                if message["status"] != 200:
                    await send(message)
                return
            if code and code[0] != 200:
                await send(message)
                return
            if message.get("more_body"):
                return
            body = encode_json(status())
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, watch)
