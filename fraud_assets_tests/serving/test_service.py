"""End-to-end tests against a real ``bentoml serve`` process on 127.0.0.1.

One server is started for the module (and restarted once, by the crash test at the end).
Tests only use synthetic customer ids ("cust-...") except the parity test, which replays the
simulated last day and needs those customers' state to be exactly the bundle's seed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psutil
import pytest

from fraud_assets.lib.processes import ScoringServer
from fraud_assets.lib.sample_world import THRESHOLDS, World, write_world_bundle
from fraud_assets.serving.routing import bucket

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN_KEY = "test-admin-key"
TS = "2026-03-07T12:00:00Z"  # the bundle's store day
RESPONSE_FIELDS = {
    "transaction_id",
    "fraud_probability",
    "decision",
    "model_name",
    "model_version",
    "variant",
    "latency_ms",
}


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoringServer]:
    root = tmp_path_factory.mktemp("serving")
    bundle = write_world_bundle(world, root / "bundle", share=0.3, mode="split")
    srv = ScoringServer(bundle, root / "state", root / "home", ADMIN_KEY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: ScoringServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def tx(tid: str, customer: str = "cust-1", **overrides: Any) -> dict[str, Any]:
    base = {
        "transaction_id": tid,
        "ts": TS,
        "customer_id": customer,
        "terminal_id": "T1",
        "amount": 42.5,
        "merchant_category": "grocery",
        "channel": "card_present",
    }
    return {**base, **overrides}


def log_rows(server: ScoringServer) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((server.state / "predictions").glob("date=*/part-*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return rows


def admin(client: httpx.Client, action: str, key: str | None = ADMIN_KEY) -> httpx.Response:
    headers = {} if key is None else {"x-api-key": key}
    return client.post(f"/admin/{action}", headers=headers)


# --------------------------------------------------------------------------- built-ins


def test_builtin_endpoints_and_models(client: httpx.Client, world: World) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "bentoml" in metrics.text
    docs = client.get("/docs.json")
    assert docs.status_code == 200 and "/score_batch" in docs.json()["paths"]
    info = client.get("/models").json()  # GET works (BentoML APIs are POST-only)
    assert client.post("/models").json()["bundle_id"] == info["bundle_id"]
    assert info["variants"]["champion"]["version"] == "1"
    assert info["variants"]["challenger"]["thresholds"] == THRESHOLDS
    assert info["traffic"] == {"challenger_share": 0.3, "mode": "split"}
    assert info["store_as_of"] == world.last_day.isoformat()
    assert info["store"]["terminals"] == len(world.seed_terminals)
    assert info["store"]["customers"] == len(world.seed_histories)
    assert info["features"] == world.features


# ----------------------------------------------------------------------------- parity


def test_batch_replays_the_day_exactly_like_batch_features(
    client: httpx.Client, server: ScoringServer, world: World
) -> None:
    """1000 real transactions of the store day in one batch: order kept, state updated in
    order (features equal batch_features to 1e-9), scores equal the models' own."""
    day = world.history.filter(pl.col("ts").dt.date() == world.last_day).sort(
        "ts", "transaction_id"
    )
    assert day.height > 1100
    batch, single = day.head(1000), day.slice(1000, 60)

    def payload(row: dict[str, Any]) -> dict[str, Any]:
        keys = ("transaction_id", "customer_id", "terminal_id", "amount")
        out = {k: row[k] for k in keys} | {"ts": row["ts"].isoformat()}
        return out | {c: row[c] for c in world.categoricals}

    body = {"transactions": [payload(r) for r in batch.iter_rows(named=True)]}
    resp = client.post("/score_batch", json=body)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["transaction_id"] for r in results] == batch["transaction_id"].to_list()
    # The next transactions of the day, one request each: same path, same state.
    for row in single.iter_rows(named=True):
        one = client.post("/score", json={"transaction": payload(row)})
        assert one.status_code == 200, one.text
        results.append(one.json())

    scored = {r["transaction_id"]: r for r in results}
    logged = {
        r["transaction_id"]: r
        for r in log_rows(server)
        if r["transaction_id"] in scored and r["variant"] != "shadow"
    }
    assert len(logged) == len(scored) == 1060
    expected = world.day_features.filter(pl.col("transaction_id").is_in(list(scored)))
    online = pl.DataFrame(
        [logged[t]["features"] for t in expected["transaction_id"]],
        schema=expected.select(world.features).schema,
    )
    for col in world.features:
        if col in world.categoricals:
            assert online[col].equals(expected[col]), col
        else:
            diff = (online[col] - expected[col]).abs().max()
            assert diff <= 1e-9, (col, diff)
    # Scores: what each variant's model says about the batch features.
    frame = expected.select(world.features).to_pandas()
    for name, model in (("champion", world.champion), ("challenger", world.challenger)):
        mask = [scored[t]["variant"] == name for t in expected["transaction_id"]]
        assert any(mask), name
        probs = model.predict_proba(frame[mask])[:, 1]
        got = [
            scored[t]["fraud_probability"]
            for t, m in zip(expected["transaction_id"], mask, strict=True)
            if m
        ]
        assert max(abs(a - b) for a, b in zip(got, probs, strict=True)) <= 1e-9


# ---------------------------------------------------------------------------- scoring


def test_score_response_and_decision(client: httpx.Client) -> None:
    thresholds = client.get("/models").json()["variants"]
    for i, amount in enumerate((3.0, 42.5, 900.0, 5000.0)):
        resp = client.post(
            "/score", json={"transaction": tx(f"s-{i}", f"cust-s{i}", amount=amount)}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == RESPONSE_FIELDS
        assert body["transaction_id"] == f"s-{i}"
        assert body["model_name"] == "fraud_model"
        assert body["variant"] in ("champion", "challenger")
        assert body["model_version"] == thresholds[body["variant"]]["version"]
        p, thr = body["fraud_probability"], thresholds[body["variant"]]["thresholds"]
        assert 0.0 <= p <= 1.0 and body["latency_ms"] > 0
        expected = (
            "decline" if p >= thr["decline"] else "review" if p >= thr["review"] else "approve"
        )
        assert body["decision"] == expected


def test_explain_returns_top_three_reasons(client: httpx.Client, world: World) -> None:
    resp = client.post("/score", json={"transaction": tx("e-1", "cust-e"), "explain": True})
    assert resp.status_code == 200, resp.text
    reasons = resp.json()["reasons"]
    assert len(reasons) == 3
    assert all(
        r["feature"] in world.features and isinstance(r["contribution"], float) for r in reasons
    )
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_the_running_worker_never_loads_polars(client: httpx.Client, server: ScoringServer) -> None:
    """Polars is a native library: once imported, it shows in the worker's memory maps."""
    resp = client.post("/score", json={"transaction": tx("maps-1", "cust-maps"), "explain": True})
    assert resp.status_code == 200
    workers = server.pids()[1:]
    assert workers
    for pid in workers:
        assert "polars" not in Path(f"/proc/{pid}/maps").read_text()


def test_a_retried_transaction_gets_the_same_answer_and_counts_once(
    client: httpx.Client, server: ScoringServer
) -> None:
    first = client.post("/score", json={"transaction": tx("retry-1", "cust-retry")}).json()
    again = client.post("/score", json={"transaction": tx("retry-1", "cust-retry")}).json()
    assert again == first
    nxt = client.post("/score", json={"transaction": tx("retry-2", "cust-retry")})
    assert nxt.status_code == 200
    rows = [r for r in log_rows(server) if r["customer_id"] == "cust-retry"]
    assert [r["transaction_id"] for r in rows] == ["retry-1", "retry-2"]
    assert rows[1]["features"]["customer_tx_count_1d"] == 2.0  # not 3: the retry did not count


def test_prediction_log_rows_are_complete(client: httpx.Client, server: ScoringServer) -> None:
    client.post("/score", json={"transaction": tx("log-1", "cust-log", amount=12.0)})
    row = next(r for r in log_rows(server) if r["transaction_id"] == "log-1")
    for key in ("request_time", "ts", "customer_id", "terminal_id", "amount", "features"):
        assert key in row
    for key in ("score", "decision", "model_name", "model_version", "variant", "latency_ms"):
        assert key in row
    day = datetime.fromisoformat(row["request_time"]).astimezone(UTC).date()
    assert (server.state / "predictions" / f"date={day.isoformat()}").is_dir()
    assert row["amount"] == 12.0 and row["features"]["amount"] == 12.0


# ----------------------------------------------------------------------------- routing


def test_split_routing_is_sticky_and_close_to_the_share(client: httpx.Client) -> None:
    customers = [f"cust-route-{i}" for i in range(2000)]
    variants: dict[str, str] = {}
    for part in (customers[:1000], customers[1000:]):
        body = {"transactions": [tx(f"r1-{c}", c) for c in part]}
        resp = client.post("/score_batch", json=body)
        assert resp.status_code == 200, resp.text
        for c, r in zip(part, resp.json()["results"], strict=True):
            variants[c] = r["variant"]
    share = sum(v == "challenger" for v in variants.values()) / len(variants)
    assert 0.25 <= share <= 0.35, share
    # Sticky: the documented hash decides, and the same customer gets the same variant again.
    assert all((bucket(c) < 0.3) == (v == "challenger") for c, v in variants.items())
    for c in customers[:40]:
        again = client.post("/score", json={"transaction": tx(f"r2-{c}", c)}).json()
        assert again["variant"] == variants[c]


# ------------------------------------------------------------------------- bad inputs

BIG = b'{"transactions": [' + b",".join([b'{"transaction_id": "x"}'] * 12_000) + b"]}"


def _bad(name: str, path: str, body: Any, field: str, message: str, status: int = 400) -> Any:
    return pytest.param(path, body, field, message, status, id=name)


def _score(**overrides: Any) -> dict[str, Any]:
    return {"transaction": tx("bad-1", "cust-bad", **overrides)}


def _without(key: str) -> dict[str, Any]:
    body = _score()
    del body["transaction"][key]
    return body


BAD_INPUTS = [
    _bad("missing-field", "/score", _without("amount"), "transaction.amount", "missing"),
    _bad("missing-ts", "/score", _without("ts"), "transaction.ts", "missing"),
    _bad("extra-field", "/score", _score(cvv="123"), "transaction.cvv", "unexpected field"),
    _bad("extra-top-level", "/score", {**_score(), "debug": True}, "debug", "unexpected field"),
    _bad("numeric-string", "/score", _score(amount="12.5"), "transaction.amount", "valid number"),
    _bad(
        "number-as-id", "/score", _score(customer_id=123), "transaction.customer_id", "valid string"
    ),
    _bad("number-as-category", "/score", _score(channel=7), "transaction.channel", "valid string"),
    _bad("bool-amount", "/score", _score(amount=True), "transaction.amount", "valid number"),
    _bad("nan", "/score", json.dumps(_score(amount=float("nan"))), "transaction.amount", "finite"),
    _bad(
        "infinity",
        "/score",
        json.dumps(_score(amount=float("inf"))),
        "transaction.amount",
        "finite",
    ),
    _bad(
        "negative-amount",
        "/score",
        _score(amount=-0.01),
        "transaction.amount",
        "greater than or equal to 0",
    ),
    _bad("bad-timestamp", "/score", _score(ts="yesterday"), "transaction.ts", "valid datetime"),
    _bad("huge-amount", "/score", _score(amount=1e300), "transaction.amount", "less than or equal"),
    _bad(
        "ancient-timestamp",
        "/score",
        _score(ts="1900-01-01T00:00:00Z"),
        "transaction.ts",
        "between 1970",
    ),
    _bad(
        "overflowing-timestamp",
        "/score",
        _score(ts="0001-01-01T00:00:00+01:00"),
        "transaction.ts",
        "out of range",
    ),
    _bad(
        "naive-timestamp", "/score", _score(ts="2026-03-07T12:00:00"), "transaction.ts", "timezone"
    ),
    _bad("epoch-timestamp", "/score", _score(ts=1772884800), "transaction.ts", "valid datetime"),
    _bad(
        "empty-id", "/score", _score(transaction_id=""), "transaction.transaction_id", "at least 1"
    ),
    _bad("explain-string", "/score", {**_score(), "explain": "yes"}, "explain", "valid boolean"),
    _bad("invalid-json", "/score", "{not json", "body", "Invalid JSON"),
    _bad("empty-body", "/score", "", "body", "Invalid JSON"),
    _bad("json-array", "/score", [_score()], "body", "JSON object"),
    _bad("empty-batch", "/score_batch", {"transactions": []}, "transactions", "at least 1"),
    _bad(
        "batch-over-1000",
        "/score_batch",
        {"transactions": [tx(f"b{i}", "cust-bad") for i in range(1001)]},
        "transactions",
        "at most 1000",
    ),
    _bad(
        "bad-item-in-batch",
        "/score_batch",
        {"transactions": [tx("b0"), tx("b1"), tx("b2", amount="1")]},
        "transactions.2.amount",
        "valid number",
    ),
    _bad("body-too-large", "/score_batch", BIG, "body", "exceeds", status=413),
    _bad(
        "feedback-string-bool",
        "/feedback",
        {"transaction_id": "x", "is_fraud": "true", "source": "a"},
        "is_fraud",
        "valid boolean",
    ),
    _bad(
        "feedback-int-bool",
        "/feedback",
        {"transaction_id": "x", "is_fraud": 1, "source": "a"},
        "is_fraud",
        "valid boolean",
    ),
    _bad(
        "feedback-missing-source",
        "/feedback",
        {"transaction_id": "x", "is_fraud": True},
        "source",
        "missing",
    ),
    _bad("models-with-parameters", "/models", {"verbose": True}, "verbose", "unexpected field"),
]


@pytest.mark.parametrize(("path", "body", "field", "message", "status"), BAD_INPUTS)
def test_bad_input_is_a_4xx_object_naming_the_field(
    client: httpx.Client, path: str, body: Any, field: str, message: str, status: int
) -> None:
    if isinstance(body, bytes | str):
        resp = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        resp = client.post(path, json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()
    assert isinstance(error, dict), error
    assert error["field"] == field, error
    assert message.lower() in error["message"].lower(), error
    assert error["error"] in ("invalid_request", "invalid_json", "payload_too_large")


def test_oversized_chunked_body_is_rejected_by_its_real_size(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: only the bytes tell
        for i in range(0, len(BIG), 16_384):
            yield BIG[i : i + 16_384]

    resp = client.post("/score_batch", content=chunks())
    assert resp.status_code == 413 and resp.json()["field"] == "body"


def test_wrong_method_and_pickle_are_json_4xx_too(client: httpx.Client) -> None:
    wrong = client.get("/score")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    pickle = client.post(
        "/score", content=b"x", headers={"content-type": "application/vnd.bentoml+pickle"}
    )
    assert pickle.status_code == 415 and isinstance(pickle.json(), dict)


def test_service_still_answers_after_bad_inputs(client: httpx.Client) -> None:
    resp = client.post("/score", json={"transaction": tx("after-bad", "cust-after")})
    assert resp.status_code == 200 and resp.json()["transaction_id"] == "after-bad"


def test_every_rejected_request_is_in_the_error_log(
    client: httpx.Client, server: ScoringServer
) -> None:
    """What serving_metrics counts: the body-limit middleware's 413/415 included."""

    def errors() -> list[dict[str, Any]]:
        rows = []
        for path in sorted((server.state / "errors").glob("date=*/part-*.jsonl")):
            rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
        return rows

    before = len(errors())
    assert client.post("/score", json={"transaction": tx("e1", amount=-1)}).status_code == 400
    assert client.post("/score_batch", content=BIG).status_code == 413
    assert client.post("/score", json={"transaction": tx("ok-1", "cust-ok")}).status_code == 200
    new = errors()[before:]
    assert [(r["route"], r["status"]) for r in new] == [("/score", 400), ("/score_batch", 413)]
    assert new[0]["error"] == "invalid_request" and new[1]["error"] == "payload_too_large"


# ------------------------------------------------------------------------------ admin


def test_admin_requires_the_key(client: httpx.Client) -> None:
    for key in (None, "wrong"):
        resp = admin(client, "reload", key)
        assert resp.status_code == 401 and resp.json()["field"] == "x-api-key"


def test_reload_under_load_loses_no_request_then_rollback(
    client: httpx.Client, server: ScoringServer, world: World
) -> None:
    stop = threading.Event()
    failures: list[str] = []
    versions: set[str] = set()
    done = [0]

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                body = {"transaction": tx(f"h{worker}-{i}", f"cust-h{worker}-{i % 50}")}
                try:
                    r = c.post("/score", json=body)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                    else:
                        versions.add(r.json()["model_version"])
                        done[0] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for champion in ("3", "5", "7"):
            write_world_bundle(world, server.bundle, versions=(champion, str(int(champion) + 1)))
            resp = admin(client, "reload")
            assert resp.status_code == 200, resp.text
            assert resp.json()["variants"]["champion"]["version"] == champion
            time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not failures, failures[:5]
    assert done[0] > 100 and len(versions) >= 3, (done[0], versions)

    started = time.perf_counter()
    resp = admin(client, "rollback")
    elapsed = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    assert elapsed < 1.0
    assert resp.json()["variants"]["champion"]["version"] == "5"
    one = client.post("/score", json={"transaction": tx("after-rollback", "cust-rb")}).json()
    assert one["model_version"] in ("5", "6")
    # Leave the server as the module found it: the original bundle, freshly loaded.
    write_world_bundle(world, server.bundle, share=0.3, mode="split")
    assert admin(client, "reload").json()["variants"]["champion"]["version"] == "1"


def test_shadow_mode_answers_with_champion_and_logs_the_challenger(
    client: httpx.Client, server: ScoringServer, world: World
) -> None:
    write_world_bundle(world, server.bundle, mode="shadow", share=0.3, versions=("1", "2"))
    assert admin(client, "reload").json()["traffic"]["mode"] == "shadow"
    customer = next(f"cust-shadow-{i}" for i in range(1000) if bucket(f"cust-shadow-{i}") < 0.3)
    body = client.post("/score", json={"transaction": tx("shadow-1", customer)}).json()
    assert body["variant"] == "champion" and body["model_version"] == "1"
    rows = [r for r in log_rows(server) if r["transaction_id"] == "shadow-1"]
    assert sorted(r["variant"] for r in rows) == ["champion", "shadow"]
    shadow = next(r for r in rows if r["variant"] == "shadow")
    assert shadow["model_version"] == "2" and shadow["features"] == rows[0]["features"]
    batch = client.post(
        "/score_batch", json={"transactions": [tx("shadow-b1", customer), tx("shadow-b2", "x")]}
    ).json()["results"]
    assert {r["variant"] for r in batch} == {"champion"}
    logged = [r["variant"] for r in log_rows(server) if r["transaction_id"].startswith("shadow-b")]
    assert sorted(logged) == ["champion", "champion", "shadow", "shadow"]
    # Roll back to split, and put the split bundle back on disk.
    assert admin(client, "rollback").json()["traffic"]["mode"] == "split"
    write_world_bundle(world, server.bundle, share=0.3, mode="split")


# ------------------------------------------------------------------------- durability


def test_feedback_survives_kill_9_and_the_service_restarts(server: ScoringServer) -> None:
    """Runs last: kills the server (SIGKILL to the process group) and restarts it."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for i in range(3):
            resp = c.post(
                "/feedback",
                json={"transaction_id": f"fb-{i}", "is_fraud": i == 1, "source": "analyst"},
            )
            assert resp.status_code == 200 and resp.json() == {"stored": True}
        scored = c.post("/score", json={"transaction": tx("before-crash", "cust-crash")})
        assert scored.status_code == 200
    pids = server.pids()
    assert len(pids) >= 2  # arbiter + worker
    server.stop(signal.SIGKILL)  # kill -9 to the arbiter and its workers: no shutdown hook runs
    assert not [p for p in pids if psutil.pid_exists(p)]
    lines = (server.state / "feedback" / "feedback.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["transaction_id"], r["is_fraud"]) for r in rows[-3:]] == [
        ("fb-0", False),
        ("fb-1", True),
        ("fb-2", False),
    ]
    assert any(r["transaction_id"] == "before-crash" for r in log_rows(server))

    server.admin_key = None  # restart without admin key: admin actions are disabled
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert (
            c.post("/score", json={"transaction": tx("after-crash", "cust-crash")}).status_code
            == 200
        )
        resp = c.post(
            "/feedback", json={"transaction_id": "fb-3", "is_fraud": False, "source": "a"}
        )
        assert resp.status_code == 200
        forbidden = c.post("/admin/rollback", headers={"x-api-key": ADMIN_KEY})
        assert forbidden.status_code == 403
        assert "disabled" in forbidden.json()["message"]
    assert (
        len((server.state / "feedback" / "feedback.jsonl").read_text().splitlines())
        == len(rows) + 1
    )
