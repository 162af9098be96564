"""The service's small parts on their own: routing, schemas, logs, the body-limit middleware."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from fraud_assets.lib import contracts
from fraud_assets.serving import schemas
from fraud_assets.serving.http import RequestLimits
from fraud_assets.serving.logs import DayLog, FeedbackLog
from fraud_assets.serving.routing import bucket, route
from fraud_assets.serving.schemas import (
    BatchRequest,
    RequestError,
    ScoreRequest,
    parse,
    parse_batch,
)


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


def test_day_log_rotates_by_day_and_flushes_each_write(tmp_path: Path) -> None:
    log = DayLog(tmp_path, contracts.PREDICTIONS_LOG)
    log.write([{"a": 1}], date(2026, 3, 7))
    log.write([{"a": 2}, {"a": 3}], date(2026, 3, 7))
    # Readable before close: flushed.
    first = log.path_for(date(2026, 3, 7))
    assert first.name == f"part-{os.getpid()}.jsonl"
    assert contracts.day_log_files(tmp_path, contracts.PREDICTIONS_LOG, date(2026, 3, 7)) == [first]
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
    assert again.path == contracts.feedback_file(tmp_path)
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


# ------------------------------------------------------- /score_batch's fast parsing path

_IDS = ['"t1"', '""', '"' + "x" * 128 + '"', '"' + "x" * 129 + '"', '"' + "é" * 128 + '"']
_IDS += ['"' + "\U0001f600" * 128 + '"', '"' + "\U0001f600" * 129 + '"', '"a\\u0000b"']
_IDS += ['"\\ud800"', '"tab\\there"', "5", "null", "true", '["x"]']
_TS = [
    "2026-03-07T13:00:00Z",
    "2026-03-07T13:00:00.5Z",
    "2026-03-07T13:00:00.123456+01:00",
    "2026-03-07T13:00:00.1234567Z",
    "2026-03-07T13:00:00.9999999Z",
    "2026-03-07T23:59:59.999999-05:30",
    "2026-03-07t13:00:00z",
    "2026-03-07 13:00:00Z",
    "2026-03-07_13:00:00Z",
    "2026-03-07T13:00Z",
    "2026-03-07T13:00:00+0100",
    "2026-03-07T13:00:00+23:59",
    "2026-03-07T13:00:00-00:00",
    "2026-03-07T13:00:00,5Z",
    "2026-03-07T13:00:00",
    "20260307T130000Z",
    "2026-02-29T13:00:00Z",
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:30:00+01:00",
    "1969-12-31T23:59:59.999999Z",
    "2199-12-31T23:59:59.999999Z",
    "2200-01-01T00:00:00Z",
    "2199-12-31T23:30:00-01:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
]
_AMOUNTS = ["0", "-0", "-0.0", "5", "12.5", "1e9", "1E2", "1000000000.0000001", "1e400", "-1"]
_AMOUNTS += ["0.1234567890123456789", "123456789.12345678", '"3"', "true", "null", "NaN", "1."]
_LABELS = ['"online"', '""', '"' + "a" * 64 + '"', '"' + "a" * 65 + '"', "null", "7"]


def _fuzz_body(rng: random.Random) -> bytes:
    """A /score_batch body, valid or subtly not (JSON text built by hand: raw numbers)."""

    def odd(variants: list[str], usual: str) -> str:
        return rng.choice(variants) if rng.random() < 0.08 else usual

    def stamp() -> str:  # a valid RFC 3339 instant, any offset, 0-6 fractional digits
        digits = rng.randint(0, 6)
        fraction = "." + "".join(rng.choices("0123456789", k=digits)) if digits else ""
        offset = rng.choice(["Z", "+00:00", "+01:00", "-05:30", "+14:00", "-12:00"])
        day = f"20{rng.randint(10, 40)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"
        clock = f"{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:{rng.randint(0, 59):02}"
        return f'"{day}T{clock}{fraction}{offset}"'

    def transaction(i: int) -> str:
        fields = {
            "transaction_id": odd(_IDS, f'"t{i}"'),
            "ts": odd([json.dumps(t) for t in _TS] + ["1", "null"], stamp()),
            "customer_id": odd(_IDS, '"c1"'),
            "terminal_id": odd(_IDS, '"T1"'),
            "amount": odd(_AMOUNTS, rng.choice([repr(rng.random() * 500), str(rng.randint(0, 9))])),
        }
        for label in ("merchant_category", "channel"):
            if rng.random() < 0.6:
                fields[label] = odd(_LABELS, '"online"')
        if rng.random() < 0.05:
            del fields[rng.choice(sorted(fields))]
        items = [f'"{k}":{v}' for k, v in fields.items()]
        if rng.random() < 0.05:
            items.append('"cvv":"123"')
        if rng.random() < 0.05:
            items.append(f'"amount":{rng.choice(_AMOUNTS)}')  # a duplicate key: last wins
        rng.shuffle(items)
        return "{" + ",".join(items) + "}"

    count = rng.randint(1, 3) if rng.random() < 0.95 else 0
    body = '{"transactions":[' + ",".join(transaction(i) for i in range(count))
    body += "]" + (',"debug":true' if rng.random() < 0.03 else "") + "}"
    return body.encode()


def _pydantic_rows(body: bytes) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    try:
        return [dict(tx.__dict__) for tx in parse(BatchRequest, body).transactions], None
    except RequestError as error:
        return None, error.body()


@pytest.mark.parametrize("seed", range(4))
def test_fast_batch_parsing_accepts_only_what_pydantic_does_with_the_same_values(
    seed: int,
) -> None:
    """The msgspec path may refuse anything (pydantic then decides), but what it accepts
    pydantic must accept too, with equal values; errors are always pydantic's."""
    rng = random.Random(seed)
    taken = 0
    for _ in range(400):
        body = _fuzz_body(rng)
        want, error = _pydantic_rows(body)
        fast = schemas._fast_batch(body)
        if fast is not None:
            taken += 1
            assert error is None, (body, error)
            assert fast == want, body
            for got, expected in zip(fast, want, strict=True):
                assert got["ts"].tzinfo is UTC and type(got["amount"]) is float
                assert repr(got["amount"]) == repr(expected["amount"])  # -0.0 stays -0.0
        try:
            assert parse_batch(body) == want
        except RequestError as exc:
            assert exc.body() == error
    assert taken > 150  # the fast path is exercised, not only the fallback
