"""HTTP plumbing for the BentoML service: body limits, raw-body input, JSON error objects.

Why not BentoML's own parsing: it coerces unless told otherwise, renders some errors as
JSON arrays, and has no body-size limit. The APIs here receive the undecoded request
(``RawJSONInput``), validate the bytes themselves (``schemas.parse``) and always answer a
client mistake with one JSON object ``{"error", "field", "message"}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import bentoml
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraud_assets.lib import contracts
from fraud_assets.serving.logs import DayLog, encode_json
from fraud_assets.serving.schemas import MAX_BODY_BYTES, EmptyRequest, RequestError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


TIMEOUT_STATUS = 504
TIMEOUT_ERROR = "timeout"


def error_response(error: RequestError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _error_code(body: bytes) -> str:
    """The ``error`` member of a JSON error body, else the start of the body as text."""
    try:
        return str(json.loads(body).get("error"))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


class ErrorLogging:
    """ASGI middleware: every 4xx/5xx answer of an API route becomes a row of a day-partitioned
    error log (``errors/date=YYYY-MM-DD/part-<pid>.jsonl``: request_time, route, status,
    error), the denominator-side of ``serving_metrics``' error rate. It sits outside the body
    limits, so their rejections count too; an exception escaping the app counts as a 500.

    Timeouts: BentoML's ``TimeoutMiddleware`` (``traffic.timeout``) sits *outside* every
    middleware a service adds. When a request runs past the timeout it cancels the request's
    task and sends its own 504 with the outer ``send``, which this middleware never sees: what
    reaches it is the cancellation. A request cancelled before any answer started is therefore
    logged as a 504 ``timeout`` (the only other canceller is a forced shutdown, whose client
    gets no answer at all)."""

    def __init__(self, app: ASGIApp, *, state_root: str, api_routes: tuple[str, ...]) -> None:
        self.app = app
        self.routes = frozenset(api_routes)
        self.log = DayLog(state_root, contracts.ERRORS_LOG)

    def _record(self, route: str, status: int, error: str) -> None:
        now = datetime.now(UTC)
        row = {"request_time": now.isoformat(), "route": route, "status": status, "error": error}
        self.log.write([row], now.date())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.routes:
            await self.app(scope, receive, send)
            return
        status, body = 0, b""

        async def watch(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < 4096:
                body += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if status == 0:  # nothing answered yet: BentoML's timeout answers 504 (see above)
                self._record(scope["path"], TIMEOUT_STATUS, TIMEOUT_ERROR)
            raise
        except Exception:
            self._record(scope["path"], 500, "unhandled exception")
            raise
        if status >= 400:
            self._record(scope["path"], status, _error_code(body))


def json_response(content: Any) -> Response:
    """A 200 JSON answer encoded by msgspec (C): starlette's ``JSONResponse`` runs
    ``json.dumps``, several times slower on a 1000-row batch answer. Same JSON values."""
    return Response(encode_json(content), media_type="application/json")


class RequestLimits:
    """ASGI middleware: cap request bodies; answer method and media-type mistakes on the API
    routes with the service's JSON error object instead of Starlette's plain text.

    The cap is enforced twice: from Content-Length (reject before reading) and from the bytes
    actually received (chunked or lying clients); the body is buffered (at most the cap) and
    replayed to the app. ``get_routes``: BentoML APIs are POST-only, so a GET on one of
    these paths is passed on as a POST with an empty body.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = MAX_BODY_BYTES,
        api_routes: tuple[str, ...] = (),
        get_routes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_routes = frozenset(api_routes) | frozenset(get_routes)
        self.get_routes = frozenset(get_routes)

    async def _reject(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: RequestError,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        await error_response(error, headers)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if path in self.api_routes:
            if method == "GET" and path in self.get_routes:
                scope = {**scope, "method": "POST"}
                method = "POST"
            elif method != "POST":
                takes = ("GET", "POST") if path in self.get_routes else ("POST",)
                message = f"{path} takes {' or '.join(takes)}"
                error = RequestError(405, "method_not_allowed", None, message)
                allow = {"Allow": ", ".join(takes)}  # RFC 9110: a 405 lists what is allowed
                await self._reject(scope, receive, send, error, allow)
                return
        if method not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-type" and value.startswith(b"application/vnd.bentoml+pickle"):
                error = RequestError(415, "unsupported_media_type", "content-type", "send JSON")
                await self._reject(scope, receive, send, error)
                return
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
                if declared < 0:
                    error = RequestError(
                        400, "invalid_request", "content-length", "not a valid byte count"
                    )
                    await self._reject(scope, receive, send, error)
                    return
                if declared > self.max_body_bytes:
                    await self._reject(scope, receive, send, self._too_large())
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._reject(scope, receive, send, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> RequestError:
        return RequestError(
            413,
            "payload_too_large",
            "body",
            f"request body exceeds the limit of {self.max_body_bytes} bytes",
        )


class RawJSONInput(bentoml.IODescriptor):
    """Input spec that hands the API method the starlette ``Request`` (body already read).

    The class attributes only document the route in the OpenAPI document (``openapi``);
    validation happens in the method, strictly, with errors in the service's own shape.
    ``schema_model``: the body (None: no parameters, an empty body or ``{}``). ``answers``:
    refusals of this route beyond those every API route can give (status -> what they mean).
    ``admin``: the route needs the admin key.
    """

    __root_input__: ClassVar[bool] = True
    schema_model: ClassVar[type[BaseModel] | None] = None
    answers: ClassVar[Mapping[int, str]] = {}
    admin: ClassVar[bool] = False

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return (cls.schema_model or EmptyRequest).model_json_schema(*args, **kwargs)

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:  # type: ignore[override]
        await request.body()  # cached on the request for the method
        return request


def raw_json_input(
    model: type[BaseModel] | None,
    *,
    answers: Mapping[int, str] | None = None,
    admin: bool = False,
) -> type[RawJSONInput]:
    """A ``RawJSONInput`` whose documentation shows ``model``, ``answers`` and ``admin``."""
    name = model.__name__ if model is not None else "NoParameters"
    namespace = {
        "schema_model": model,
        "answers": dict(answers or {}),
        "admin": admin,
        "__module__": __name__,
        "__qualname__": name,
    }
    return type(name, (RawJSONInput,), namespace)  # type: ignore[return-value]
