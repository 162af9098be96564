"""The service's input surface without a server: RFC 3339 timestamps through both parse paths,
the OpenAPI document /docs.json serves, 405s with ``Allow``, and timeouts in the error log."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from fraud_assets.lib import contracts
from fraud_assets.serving import openapi, schemas
from fraud_assets.serving.http import TIMEOUT_ERROR, ErrorLogging, RequestLimits, raw_json_input
from fraud_assets.serving.schemas import (
    RFC3339_PATTERN,
    BatchRequest,
    ErrorResponse,
    RequestError,
    ScoreRequest,
    parse,
    parse_batch,
)

# (sent, the UTC instant it means)
ACCEPTED = [
    ("2026-03-07T12:00:00Z", datetime(2026, 3, 7, 12, tzinfo=UTC)),
    ("2026-03-07t12:00:00z", datetime(2026, 3, 7, 12, tzinfo=UTC)),  # RFC 3339 5.6, NOTE
    ("2026-03-07T13:00:00+01:00", datetime(2026, 3, 7, 12, tzinfo=UTC)),
    ("2026-03-07T06:30:00-05:30", datetime(2026, 3, 7, 12, tzinfo=UTC)),
    ("2026-03-07T12:00:00-00:00", datetime(2026, 3, 7, 12, tzinfo=UTC)),
    ("2026-03-07T12:00:00.5Z", datetime(2026, 3, 7, 12, 0, 0, 500_000, tzinfo=UTC)),
    ("2026-03-07T12:00:00.123456Z", datetime(2026, 3, 7, 12, 0, 0, 123_456, tzinfo=UTC)),
    ("2026-03-07T12:00:00.1234569Z", datetime(2026, 3, 7, 12, 0, 0, 123_456, tzinfo=UTC)),
    ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
    ("2199-12-31T23:59:59.999999Z", datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
]
NOT_RFC3339 = [
    "1764590400",  # epoch seconds as a string
    "1764590400.5",
    "2026-03-07T12:00:00+0100",  # offset without a colon
    "2026-03-07 12:00:00Z",  # space for the T
    "2026-03-07_12:00:00Z",
    "2026-03-07T12:00Z",  # no seconds
    "2026-03-07T12:00:00,5Z",  # comma as decimal mark
    "20260307T120000Z",  # ISO 8601 basic format
    "2026-03-07T12:00:00Z\n",
    "yesterday",
    "2026-03-07T12:00:00",  # no offset
    "2026-03-07",
    "２０２６-03-07T12:00:00Z",  # not ASCII digits
]
OTHER_BAD = [  # (sent, words of the message): the RFC 3339 form, but not a valid instant
    ("2026-02-30T12:00:00Z", "day value is outside expected range"),
    ("2026-03-07T24:00:00Z", "hour value is outside expected range"),
    ("2026-03-07T12:00:60Z", "second value is outside expected range"),
    ("2026-03-07T12:00:00+24:00", "timezone offset must be less than 24 hours"),
    ("1969-12-31T23:59:59.999999Z", "between 1970 and 2200"),
    ("1970-01-01T00:30:00+01:00", "between 1970 and 2200"),
    ("2200-01-01T00:00:00Z", "between 1970 and 2200"),
    ("0001-01-01T00:00:00+01:00", "out of range"),
    (1772884800, "valid datetime"),
    (True, "valid datetime"),
    (None, "valid datetime"),
]


def _tx(ts: Any, i: int = 0) -> dict[str, Any]:
    return {
        "transaction_id": f"t{i}",
        "ts": ts,
        "customer_id": "c",
        "terminal_id": "T",
        "amount": 1,
    }


def _single(ts: Any) -> bytes:
    return json.dumps({"transaction": _tx(ts)}).encode()


def _batch(ts: Any, at: int = 3) -> bytes:
    rows = [_tx("2026-03-07T12:00:00Z", i) for i in range(5)]
    rows[at]["ts"] = ts
    return json.dumps({"transactions": rows}).encode()


def _refusal(call: Any) -> dict[str, Any]:
    with pytest.raises(RequestError) as info:
        call()
    return {"status": info.value.status, **info.value.body()}


# ---------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(("sent", "instant"), ACCEPTED)
def test_rfc3339_timestamps_are_accepted_by_every_path(sent: str, instant: datetime) -> None:
    assert parse(ScoreRequest, _single(sent)).transaction.ts == instant
    body = _batch(sent)
    slow = [tx.ts for tx in parse(BatchRequest, body).transactions]
    assert [row["ts"] for row in parse_batch(body)] == slow
    assert slow[3] == instant and slow[3].tzinfo is UTC
    fast = schemas._fast_batch(body)
    if ".1234569" in sent:  # past microseconds msgspec rounds: left to pydantic
        assert fast is None
    else:
        assert fast is not None and fast[3]["ts"] == instant


@pytest.mark.parametrize("sent", NOT_RFC3339)
def test_non_rfc3339_timestamps_are_refused_by_every_path_with_the_same_error(sent: str) -> None:
    single = _refusal(lambda: parse(ScoreRequest, _single(sent)))
    assert single["status"] == 400 and single["error"] == "invalid_request"
    assert single["field"] == "transaction.ts"
    assert single["message"].startswith("Input should be a valid datetime in RFC 3339"), single
    assert schemas.TS_FORMAT in single["message"] and "timezone" in single["message"]
    body = _batch(sent)
    assert schemas._fast_batch(body) is None
    batch = _refusal(lambda: parse_batch(body))
    assert batch == _refusal(lambda: parse(BatchRequest, body))
    assert batch["field"] == "transactions.3.ts" and batch["message"] == single["message"]


@pytest.mark.parametrize(("sent", "words"), OTHER_BAD)
def test_other_bad_timestamps_keep_their_messages(sent: Any, words: str) -> None:
    single = _refusal(lambda: parse(ScoreRequest, _single(sent)))
    assert (single["status"], single["field"]) == (400, "transaction.ts")
    assert words in single["message"], single
    body = _batch(sent)
    assert schemas._fast_batch(body) is None
    assert _refusal(lambda: parse_batch(body))["field"] == "transactions.3.ts"


def test_a_newline_inside_one_stamp_cannot_pass_the_batch_regex() -> None:
    """The fast path matches all stamps joined by newlines in one call: a stamp holding a
    newline between two valid stamps matches that regex, and msgspec must still refuse it."""
    body = _batch("2026-03-07T12:00:00Z\n2026-03-07T12:00:00Z")
    assert schemas._fast_batch(body) is None
    assert _refusal(lambda: parse_batch(body))["field"] == "transactions.3.ts"


def test_the_documented_pattern_agrees_with_the_parser() -> None:
    """What a JSON Schema validator does with the pattern (search) matches what the service
    accepts, but for the documented UTC edge (an offset across New Year 1970 or 2200)."""
    pattern = re.compile(RFC3339_PATTERN.removesuffix("$") + r"\Z")  # ECMA-262's "$"
    for sent, _ in ACCEPTED:
        assert pattern.search(sent), sent
    edge = {"1970-01-01T00:30:00+01:00"}
    for sent, _ in OTHER_BAD:
        if isinstance(sent, str) and sent not in edge and "between" in dict(OTHER_BAD)[sent]:
            assert not pattern.search(sent), sent
    for sent in NOT_RFC3339:
        assert not pattern.search(sent), sent
    assert pattern.search("1970-01-01T00:30:00+01:00")  # the edge: matches, refused (UTC)


# ----------------------------------------------------------------------------- OpenAPI


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    from fraud_assets.serving.service import _GET_ROUTES, FraudScoring

    generated = json.loads(json.dumps(FraudScoring.openapi_spec.asdict()))  # as served
    inputs = {api.route: api.input_spec for api in FraudScoring.apis.values()}
    return openapi.document(generated, inputs, _GET_ROUTES)


def _statuses(document: dict[str, Any], route: str, method: str = "post") -> set[int]:
    return {int(status) for status in document["paths"][route][method]["responses"]}


def test_every_route_states_the_statuses_it_can_answer(document: dict[str, Any]) -> None:
    bad_body = {400, 413, 415}
    framework = {429, 500, 504}
    scoring = {200, *bad_body, 409, 422, 503, *framework}
    assert _statuses(document, "/score") == scoring
    assert _statuses(document, "/score_batch") == scoring
    assert _statuses(document, "/feedback") == {200, *bad_body, *framework}
    assert _statuses(document, "/models") == _statuses(document, "/models", "get")
    assert _statuses(document, "/admin/reload") == {200, *bad_body, 401, 403, *framework}
    assert _statuses(document, "/admin/rollback") == {200, *bad_body, 401, 403, 409, *framework}
    assert 503 in _statuses(document, "/readyz", "get")
    for route in ("/score", "/admin/rollback"):
        assert 404 not in _statuses(document, route)  # BentoML's, never sent


def test_error_responses_are_the_services_error_object(document: dict[str, Any]) -> None:
    schemas_ = document["components"]["schemas"]
    assert not {"InvalidArgument", "NotFound", "InternalServerError"} & set(schemas_)
    error = schemas_["ErrorResponse"]
    assert set(error["required"]) == {"error", "field", "message"}
    assert error["properties"]["field"]["nullable"] is True
    sample = RequestError(
        400, "invalid_request", "transactions.3.ts", "m", [{"field": "a", "message": "b"}] * 2
    )
    ErrorResponse.model_validate(sample.body())  # the documented model is the sent shape
    ErrorResponse.model_validate(RequestError(409, "nothing_to_roll_back", None, "m").body())
    score = document["paths"]["/score"]["post"]["responses"]
    ours = {"$ref": "#/components/schemas/ErrorResponse"}
    assert score["400"]["content"]["application/json"]["schema"] == ours
    assert "transaction_id_conflict" in score["409"]["description"]
    assert score["504"]["content"]["application/json"]["schema"]["$ref"].endswith("FrameworkError")
    reload_500 = document["paths"]["/admin/reload"]["post"]["responses"]["500"]
    assert ours in reload_500["content"]["application/json"]["schema"]["anyOf"]
    assert "reload_failed" in reload_500["description"]


def test_bodies_keys_and_timestamps_are_documented(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/score"]["post"]["requestBody"]["required"] is True
    assert paths["/admin/reload"]["post"]["requestBody"]["required"] is False  # empty is fine
    empty = paths["/models"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert empty["additionalProperties"] is False
    assert "requestBody" not in paths["/models"]["get"]
    scheme = document["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert scheme == {"type": "apiKey", "in": "header", "name": openapi.ADMIN_KEY_HEADER}
    assert paths["/admin/rollback"]["post"]["security"] == [{openapi.SECURITY_SCHEME: []}]
    assert "security" not in paths["/score"]["post"]
    ts = document["components"]["schemas"]["Transaction"]["properties"]["ts"]
    assert ts["format"] == "date-time" and ts["pattern"] == RFC3339_PATTERN
    assert "1970-01-01T00:00:00Z" in ts["description"] and "2200" in ts["description"]
    text = json.dumps(document)
    assert '"type": "null"' not in text  # OpenAPI 3.0: nullable instead
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in document["components"]["schemas"], ref


def test_the_middleware_rewrites_docs_json_only() -> None:
    generated = {
        "openapi": "3.0.2",
        "paths": {
            "/x": {
                "post": {
                    "responses": {"200": {"description": "ok"}},
                    "operationId": "x",
                    "requestBody": {"content": {}},
                }
            }
        },
        "components": {"schemas": {"NotFound": {}}},
    }

    async def docs(request: Request) -> JSONResponse:
        return JSONResponse(generated)

    app = Starlette(routes=[Route("/docs.json", docs), Route("/other.json", docs)])
    inputs = {"/x": raw_json_input(ScoreRequest, answers=openapi.SCORING_ANSWERS)}
    client = TestClient(openapi.OpenAPIDocs(app, inputs=inputs))
    served = client.get("/docs.json")
    assert served.status_code == 200
    assert int(served.headers["content-length"]) == len(served.content)
    body = served.json()
    assert body == openapi.document(generated, inputs)
    assert "NotFound" not in body["components"]["schemas"]
    assert client.get("/other.json").json() == generated


# ----------------------------------------------------------------- 405s and timeouts


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def test_405_lists_the_allowed_methods() -> None:
    app = Starlette(
        routes=[Route("/a", _echo, methods=["POST"]), Route("/m", _echo, methods=["POST"])]
    )
    client = TestClient(RequestLimits(app, api_routes=("/a",), get_routes=("/m",)))
    for method, path, allow in (("PUT", "/a", "POST"), ("DELETE", "/m", "GET, POST")):
        answer = client.request(method, path)
        assert answer.status_code == 405 and answer.headers["allow"] == allow
        assert answer.json()["error"] == "method_not_allowed"


def _errors(state: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((state / contracts.ERRORS_LOG).glob("date=*/part-*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return rows


def test_bentoml_timeouts_reach_the_error_log(tmp_path: Path) -> None:
    """BentoML's TimeoutMiddleware, stacked as BentoML stacks it: outside the service's own
    middleware. Its 504 goes out through its own ``send``; ErrorLogging sees the cancellation."""

    async def slow(request: Request) -> JSONResponse:
        await asyncio.sleep(5)
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/slow", slow, methods=["POST"]), Route("/fast", _echo, methods=["POST"])],
        middleware=[
            Middleware(TimeoutMiddleware, timeout=0.2),
            Middleware(ErrorLogging, state_root=str(tmp_path), api_routes=("/slow", "/fast")),
            Middleware(RequestLimits, api_routes=("/slow", "/fast")),
        ],
    )
    with TestClient(app) as client:
        assert client.post("/fast", content=b"{}").status_code == 200
        started = time.monotonic()
        answer = client.post("/slow", content=b"{}")
        assert answer.status_code == 504 and time.monotonic() - started < 4
        deadline = time.monotonic() + 5
        while not _errors(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
    rows = _errors(tmp_path)
    assert [(r["route"], r["status"], r["error"]) for r in rows] == [("/slow", 504, TIMEOUT_ERROR)]
