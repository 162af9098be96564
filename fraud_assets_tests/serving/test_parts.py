"""The service's small parts on their own: routing, schemas, logs, the body-limit middleware."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from fraud_assets.serving.http import RequestLimits
from fraud_assets.serving.logs import FeedbackLog, PredictionLog
from fraud_assets.serving.routing import bucket, route
from fraud_assets.serving.schemas import BatchRequest, RequestError, ScoreRequest, parse


def test_bucket_is_the_documented_stable_hash() -> None:
    import hashlib

    digest = hashlib.blake2b(b"C42", digest_size=8).digest()
    assert bucket("C42") == int.from_bytes(digest, "big") / 2**64
    values = [bucket(f"c{i}") for i in range(20_000)]
    assert all(0 <= v < 1 for v in values)
    assert abs(sum(v < 0.3 for v in values) / len(values) - 0.3) < 0.02


def test_route_modes() -> None:
    inside = next(f"c{i}" for i in range(100) if bucket(f"c{i}") < 0.5)
    outside = next(f"c{i}" for i in range(100) if bucket(f"c{i}") >= 0.5)
    assert route(inside, share=0.5, mode="split", has_challenger=True) == ("challenger", False)
    assert route(outside, share=0.5, mode="split", has_challenger=True) == ("champion", False)
    assert route(inside, share=0.5, mode="shadow", has_challenger=True) == ("champion", True)
    assert route(inside, share=0.5, mode="split", has_challenger=False) == ("champion", False)
    assert route(inside, share=0.0, mode="split", has_challenger=True) == ("champion", False)


def test_parse_names_the_first_field_and_lists_the_others() -> None:
    body = {"transactions": [{"transaction_id": 1, "amount": "3"}]}
    with pytest.raises(RequestError) as info:
        parse(BatchRequest, json.dumps(body).encode())
    error = info.value.body()
    assert error["error"] == "invalid_request" and error["field"] == "transactions.0.transaction_id"
    fields = {d["field"] for d in error["details"]}
    assert {"transactions.0.amount", "transactions.0.ts", "transactions.0.customer_id"} <= fields


def test_parse_accepts_iso_timestamps_with_any_offset_and_normalises_to_utc() -> None:
    tx = {
        "transaction_id": "t",
        "ts": "2026-03-07T13:00:00+01:00",
        "customer_id": "c",
        "terminal_id": "t",
        "amount": 5,
    }
    parsed = parse(ScoreRequest, json.dumps({"transaction": tx}).encode())
    assert parsed.transaction.ts == datetime(2026, 3, 7, 12, tzinfo=UTC)
    assert parsed.transaction.ts.tzinfo is UTC
    assert parsed.transaction.amount == 5.0 and parsed.explain is False


def test_prediction_log_rotates_by_day_and_flushes_each_write(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.write([{"a": 1}], date(2026, 3, 7))
    log.write([{"a": 2}, {"a": 3}], date(2026, 3, 7))
    # Readable before close: flushed.
    first = log.path_for(date(2026, 3, 7))
    assert first.name == f"part-{os.getpid()}.jsonl"
    assert [json.loads(x)["a"] for x in first.read_text().splitlines()] == [1, 2, 3]
    log.write([{"a": 4}], date(2026, 3, 8))
    assert log.path_for(date(2026, 3, 8)).read_text() == '{"a":4}\n'
    log.close()
    assert log.rows == 4


def test_feedback_log_appends_across_reopen(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path)
    log.append({"transaction_id": "a"})
    log.close()
    again = FeedbackLog(tmp_path)
    again.append({"transaction_id": "b"})
    assert [json.loads(x)["transaction_id"] for x in again.path.read_text().splitlines()] == [
        "a",
        "b",
    ]
    again.close()


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"method": request.method, "size": len(await request.body())})


@pytest.fixture
def limited() -> TestClient:
    app = Starlette(
        routes=[Route("/echo", _echo, methods=["POST"]), Route("/post", _echo, methods=["POST"])]
    )
    limits = RequestLimits(app, max_body_bytes=1_000, api_routes=("/post",), get_routes=("/echo",))
    return TestClient(limits)


def test_middleware_passes_small_bodies_and_rewrites_get(limited: TestClient) -> None:
    assert limited.post("/echo", content=b"x" * 1_000).json() == {"method": "POST", "size": 1000}
    assert limited.get("/echo").json() == {"method": "POST", "size": 0}


def test_middleware_rejects_by_declared_and_by_real_size(limited: TestClient) -> None:
    declared = limited.post("/echo", content=b"x" * 1_001)
    assert declared.status_code == 413 and declared.json()["field"] == "body"

    def chunks():
        for _ in range(5):
            yield b"x" * 300

    streamed = limited.post("/echo", content=chunks())
    assert streamed.status_code == 413 and streamed.json()["error"] == "payload_too_large"
    bad = limited.post("/echo", content=b"{}", headers={"content-length": "abc"})
    assert bad.status_code == 400


def test_middleware_answers_method_and_media_type_mistakes_in_json(limited: TestClient) -> None:
    wrong = limited.get("/post")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert limited.put("/echo").json()["message"] == "/echo takes GET or POST"
    pickle = limited.post(
        "/post", content=b"x", headers={"content-type": "application/vnd.bentoml+pickle"}
    )
    assert pickle.status_code == 415 and pickle.json()["field"] == "content-type"
