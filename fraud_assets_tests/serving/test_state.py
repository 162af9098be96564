"""Serving state against real servers: restarts, workers and replicas, rollouts, freshness.

Every server is a real ``bentoml serve`` on 127.0.0.1; the Redis store runs on a real
``redis-server`` (``redis_server`` fixture). One transaction stream is scored once by a
single worker on the embedded store (the reference); the other runs must log exactly its
feature vectors: after a ``kill -9`` of the whole service in the middle (both stores), and
with two workers in each of two ``bentoml serve`` processes sharing one Redis store.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraud_assets.lib import contracts, control
from fraud_assets.lib.bundle import read_manifest
from fraud_assets.lib.processes import ScoringServer
from fraud_assets.lib.sample_world import World, write_world_bundle
from fraud_assets.lib.store_seed import read_terminals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STORE_DAY = datetime(2026, 3, 7, tzinfo=UTC)  # the sample bundle's store day
ADMIN_KEY = "state-admin-key"


def stream(n: int = 240, cards: int = 6, seed: int = 5) -> list[dict[str, Any]]:
    """A card-testing-like stream: few cards, many small online purchases, distinct instants
    per card (so the order in which concurrent writers apply them cannot matter)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ts = STORE_DAY + timedelta(hours=8, seconds=13 * i)
        rows.append(
            {
                "transaction_id": f"st-{seed}-{i}",
                "ts": ts.isoformat().replace("+00:00", "Z"),
                "customer_id": f"card-{rng.randrange(cards)}",
                "terminal_id": f"T{rng.randrange(5)}",
                "amount": round(rng.choice([1.5, 2.0, 3.5, 40.0, 120.0]), 2),
                "merchant_category": rng.choice(["grocery", "electronics"]),
                "channel": rng.choice(["online", "card_present"]),
            }
        )
    return rows


def logged_features(state: Path) -> dict[str, dict[str, Any]]:
    """transaction_id -> the features the service logged (answered rows, every process)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((state / contracts.PREDICTIONS_LOG).glob("date=*/part-*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["variant"] != contracts.SHADOW:
                assert row["transaction_id"] not in out, "a transaction was applied twice"
                out[row["transaction_id"]] = row["features"]
    return out


def send(url: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        answers = []
        for row in rows:
            r = client.post("/score", json={"transaction": row})
            assert r.status_code == 200, r.text
            answers.append(r.json())
        return answers


class Server(ScoringServer):
    """A scoring server with extra settings (store URL, workers, lag) and the test's key."""

    def __init__(self, bundle: Path, root: Path, **settings: str) -> None:
        super().__init__(bundle, root / "state", root / "home", ADMIN_KEY, settings)


@pytest.fixture(scope="module")
def bundle(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world_bundle(world, tmp_path_factory.mktemp("bundle") / "b", challenger=False)


@pytest.fixture(scope="module")
def reference(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stream scored in order by one worker on the embedded store, never interrupted."""
    srv = Server(bundle, tmp_path_factory.mktemp("reference"))
    srv.start()
    try:
        send(srv.url, stream())
    finally:
        srv.stop()
    features = logged_features(srv.state)
    assert len(features) == len(stream())
    return features


def redis_db(url: str, db: int) -> str:
    """The session's Redis server, another (emptied) database."""
    import redis

    other = url.rsplit("/", 1)[0] + f"/{db}"
    with redis.Redis.from_url(other) as client:
        client.flushdb()
    return other


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_a_kill_9_in_the_middle_loses_nothing(
    backend: str,
    bundle: Path,
    reference: dict[str, Any],
    redis_server: str,
    tmp_path: Path,
) -> None:
    env = {contracts.ONLINE_STORE_ENV: redis_db(redis_server, 1)} if backend == "redis" else {}
    rows = stream()
    srv = Server(bundle, tmp_path, **env)
    srv.start()
    try:
        send(srv.url, rows[: len(rows) // 2])
        srv.stop(signal.SIGKILL)  # the whole tree, no shutdown hook runs
        srv.start()
        models = httpx.get(f"{srv.url}/models").json()
        if backend == "embedded":
            assert models["recovered_from_log"] == len(rows) // 2
        # A retry of an answered transaction after the restart gets the same answer.
        again = send(srv.url, rows[:1])[0]
        send(srv.url, rows[len(rows) // 2 :])
    finally:
        srv.stop()
    assert again["transaction_id"] == rows[0]["transaction_id"]
    assert logged_features(srv.state) == reference


def test_two_workers_in_two_servers_on_one_redis_store_match_one_worker(
    bundle: Path, reference: dict[str, Any], redis_server: str, tmp_path: Path
) -> None:
    """Four workers (2 processes x 2 workers) on one Redis store, four client threads each
    sending its cards' transactions in order, alternating between the two servers: one card's
    consecutive transactions land on different processes, and every feature vector equals
    the single worker's. (Truly simultaneous writes to one card are ordered by the store's
    optimistic transactions: ``test_online_store``.)"""
    url = redis_db(redis_server, 2)
    env = {contracts.ONLINE_STORE_ENV: url, contracts.WORKERS_ENV: "2"}
    servers = [Server(bundle, tmp_path / f"s{i}", **env) for i in range(2)]
    for srv in servers:
        srv.start()
    try:
        rows = stream()
        errors: list[BaseException] = []

        def client(k: int) -> None:
            mine = [r for r in rows if int(r["customer_id"].split("-")[1]) % 4 == k]
            try:
                for i, row in enumerate(mine):
                    send(servers[i % 2].url, [row])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        workers = {pid for srv in servers for pid in srv.pids()}
        assert len(workers) >= 6  # 2 x (main process + 2 workers)
        stores = [httpx.get(f"{srv.url}/models").json()["store"] for srv in servers]
    finally:
        for srv in servers:
            srv.stop()
    assert all(s["backend"] == "redis" for s in stores)
    merged: dict[str, Any] = {}
    for srv in servers:
        part = logged_features(srv.state)
        assert merged.keys().isdisjoint(part)
        merged |= part
    assert merged == reference


def test_the_embedded_store_refuses_two_workers(bundle: Path, tmp_path: Path) -> None:
    srv = Server(bundle, tmp_path, **{contracts.WORKERS_ENV: "2"})
    with pytest.raises(RuntimeError, match="needs a shared online store"):
        srv.start(timeout=60)
    assert not srv.running()


@pytest.fixture
def served(bundle: Path, tmp_path: Path) -> Iterator[Server]:
    srv = Server(bundle, tmp_path, **{contracts.STORE_MAX_LAG_ENV: "86400"})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_rollout_under_load_fails_no_request_and_rollback_reaches_the_service(
    served: Server, world: World, tmp_path: Path
) -> None:
    old = read_manifest(served.bundle)["bundle_id"]
    new_bundle = write_world_bundle(
        world, tmp_path / "next", versions=("9", "10"), challenger=False
    )
    new = read_manifest(new_bundle)["bundle_id"]
    stop = threading.Event()
    failures: list[str] = []
    seen: dict[int, list[tuple[str, float]]] = {k: [] for k in range(3)}  # (version, ms)

    def load(k: int) -> None:
        with httpx.Client(base_url=served.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                row = {**stream(1)[0], "transaction_id": f"ro-{k}-{i}"}
                body = {"transaction": {**row, "customer_id": f"ro-card-{k}-{i}"}}
                sent = time.perf_counter()
                try:
                    r = c.post("/score", json=body)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    elapsed = (time.perf_counter() - sent) * 1000
                    seen[k].append((r.json()["model_version"], elapsed))

    threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        control.set_deployment(served.state, new_bundle, reason="test rollout")
        switched, workers = control.wait_for_workers(served.state, new, timeout_s=30)
        assert switched and workers, workers
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not failures, failures[:5]
    for answers in seen.values():  # each client's requests are sequential
        versions = [v for v, _ in answers]
        assert versions[0] == "1" and versions[-1] == "9"
        # Once a request saw the new model, none saw the old one again.
        assert set(versions[versions.index("9") :]) == {"9"}
        assert max(ms for _, ms in answers) < 2_000  # a loose bound; the benchmark measures

    started = time.monotonic()
    control.roll_back(served.state, reason="test rollback")
    back, _ = control.wait_for_workers(served.state, old, timeout_s=30)
    assert back and time.monotonic() - started < 10
    models = httpx.get(f"{served.url}/models").json()
    assert models["bundle_id"] == old and models["variants"]["champion"]["version"] == "1"


def test_stale_store_is_reported_and_a_terminal_refresh_clears_it(
    served: Server, bundle: Path
) -> None:
    fresh = httpx.get(f"{served.url}/readyz")
    assert fresh.status_code == 200 and fresh.json()["status"] == "ready"
    late = {**stream(1)[0], "transaction_id": "late-1"}
    late["ts"] = (STORE_DAY + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    send(served.url, [late])
    status = httpx.get(f"{served.url}/readyz").json()
    assert status["status"] == "degraded" and status["store_lag_s"] > 86_400, status
    metrics = httpx.get(f"{served.url}/metrics").text
    stale = [
        line
        for line in metrics.splitlines()
        if line.startswith("fraud_store_stale_requests_total") and 'route="/score"' in line
    ]
    assert stale and float(stale[0].split()[-1]) >= 1, stale
    # The daily refresh publishes snapshots as of the traffic's day: every worker takes them.
    terminals = read_terminals(
        bundle / contracts.BUNDLE_STORE_DIR / contracts.BUNDLE_TERMINALS_FILE
    )
    day = date(2026, 3, 10)
    control.publish_terminals(served.state, terminals, day)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = httpx.get(f"{served.url}/readyz").json()
        if status["status"] == "ready":
            break
        time.sleep(0.2)
    assert status["status"] == "ready" and status["store_as_of"] == day.isoformat(), status
