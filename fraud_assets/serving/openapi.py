"""The OpenAPI document at /docs.json, corrected to state what the service enforces.

BentoML generates the document from the IO descriptors and gives every API route the same
error responses of its own (400/404/500 with ``{"error", "detail"}``), which this service
never sends, and no way to change them (bentoml#2975: override ``openapi_spec`` or patch).
``OpenAPIDocs`` rewrites the generated document on its way out (``document``): the error
object the service really answers with, the statuses each route can answer (the common ones
here, the route's own from its ``RawJSONInput``), required bodies, the admin key, the GET of
/models, and OpenAPI 3.0 ``nullable`` where pydantic writes JSON Schema's ``type: null``.
Timestamp format and range come with the models (``schemas.Timestamp``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraud_assets.lib import contracts
from fraud_assets.serving.http import RawJSONInput
from fraud_assets.serving.schemas import MAX_BODY_BYTES, ErrorResponse

DOCS_PATH = "/docs.json"
ADMIN_KEY_HEADER = "x-api-key"
SECURITY_SCHEME = "adminKey"
_REF = "#/components/schemas/{model}"
_BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")
_FRAMEWORK_ERROR = {
    "type": "object",
    "title": "FrameworkError",
    "description": "BentoML's own answers (over the concurrency limit, timeouts, crashes)",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}

# Statuses every API route can answer, with the code in ``error``.
COMMON_ANSWERS: dict[int, str] = {
    400: "invalid_json: the body is not JSON; invalid_request: a field breaks the schema "
    "(`field` names the first, `details` lists up to 20) or Content-Length is not a number",
    413: f"payload_too_large: the body is over {MAX_BODY_BYTES} bytes",
    415: "unsupported_media_type: pickled bodies (application/vnd.bentoml+pickle); send JSON",
    429: "BentoML: more requests in flight than traffic.max_concurrency",
    500: "BentoML: an unexpected error (see the server log)",
    504: "BentoML: not answered within traffic.timeout",
}
_BY_FRAMEWORK = frozenset({429, 500, 504})  # answered by BentoML: {"error"} bodies
ADMIN_ANSWERS: dict[int, str] = {
    401: f"unauthorized: the {ADMIN_KEY_HEADER} header is missing or wrong",
    403: f"forbidden: admin actions are disabled (the service runs without "
    f"{contracts.ADMIN_KEY_ENV})",
}
# Route-specific refusals, given to ``raw_json_input(..., answers=...)`` in the service.
SCORING_ANSWERS: dict[int, str] = {
    409: "transaction_id_conflict: this transaction_id was answered (or came earlier in the "
    "batch) with another payload; `message` names the fields that differ. An exact retry "
    "gets the first answer again",
    422: f"timestamp_ahead: `ts` is more than {contracts.MAX_CLOCK_AHEAD_ENV} (default a day) "
    "ahead of the server's clock; too_many_at_instant: more transactions of one card at one "
    "instant than its history can order. Nothing of the request was applied (a batch "
    "applies whole or not at all)",
    503: "store_busy: the shared online store kept conflicting on these cards; retry",
}
RELOAD_ANSWERS: dict[int, str] = {
    500: "reload_failed: the bundle could not be loaded; the previous one is still served",
}
ROLLBACK_ANSWERS: dict[int, str] = {
    409: "nothing_to_roll_back: no deployment was loaded before the current one",
}
READYZ_ANSWERS: dict[int, str] = {503: "not ready: the service has not finished loading"}


def _error_schemas() -> dict[str, Any]:
    schema = ErrorResponse.model_json_schema(ref_template=_REF)
    return {**schema.pop("$defs", {}), "ErrorResponse": schema, "FrameworkError": _FRAMEWORK_ERROR}


def _response(description: str, ours: bool, theirs: bool) -> dict[str, Any]:
    """``ours``: the body can be the service's error object; ``theirs``: BentoML's."""
    refs = [
        _REF.format(model=name)
        for name, on in (("ErrorResponse", ours), ("FrameworkError", theirs))
        if on
    ]
    schema = {"$ref": refs[0]} if len(refs) == 1 else {"anyOf": [{"$ref": ref} for ref in refs]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(io: type[RawJSONInput]) -> dict[str, Any]:
    """The refusals of one API route: every route's, the admin routes', the route's own."""
    tables = [COMMON_ANSWERS, ADMIN_ANSWERS if io.admin else {}, io.answers]
    out = {}
    for status in sorted(set().union(*tables)):
        description = "; ".join(table[status] for table in tables if status in table)
        ours = status not in _BY_FRAMEWORK or any(status in table for table in tables[1:])
        out[str(status)] = _response(description, ours, status in _BY_FRAMEWORK)
    return out


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 has no ``type: null``: ``anyOf [X, {type: null}]`` becomes X, nullable."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (other,) = [option for option in options if option != {"type": "null"}]
        del node["anyOf"]
        node.update({"allOf": [other]} if "$ref" in other else other)
        node["nullable"] = True
    return node


def document(
    spec: Mapping[str, Any],
    inputs: Mapping[str, type[RawJSONInput]],
    get_routes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """BentoML's generated document, corrected (a copy). ``inputs``: route -> input spec of
    every API; ``get_routes``: the API routes that take GET too (``RequestLimits``)."""
    out = copy.deepcopy(dict(spec))
    components = out.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _BENTOML_ERRORS:
        schemas.pop(name, None)
    schemas.update(_error_schemas())
    components["securitySchemes"] = {
        SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": ADMIN_KEY_HEADER}
    }
    for route, io in inputs.items():
        item = out["paths"][route]
        operation = item["post"]
        operation["requestBody"]["required"] = io.schema_model is not None
        operation["responses"] = {"200": operation["responses"]["200"], **_responses(io)}
        if io.admin:
            operation["security"] = [{SECURITY_SCHEME: []}]
        if route in get_routes:
            reading = {k: v for k, v in operation.items() if k != "requestBody"}
            reading["operationId"] = f"{operation['operationId']}__get"
            item["get"] = reading
    readyz = out["paths"].get("/readyz", {}).get("get")
    if readyz is not None:
        for status, description in READYZ_ANSWERS.items():
            readyz["responses"][str(status)] = {"description": description}
    return _nullable(out)


class OpenAPIDocs:
    """ASGI middleware: GET /docs.json answers ``document(<BentoML's document>)``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        inputs: Mapping[str, type[RawJSONInput]],
        get_routes: tuple[str, ...] = (),
        path: str = DOCS_PATH,
    ) -> None:
        self.app = app
        self.inputs = dict(inputs)
        self.get_routes = get_routes
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            if start["status"] == 200:
                body = json.dumps(document(json.loads(body), self.inputs, self.get_routes)).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)
