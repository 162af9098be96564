"""Online scoring latency and throughput: in-process floor, a naive BentoML service, ours.

Run: .venv/bin/python benchmarks/bench_serving.py [--size 0.5] [--seconds 10]

1. Floor: one-row CatBoost ``predict_proba`` in this process (the bundle's champion, a
   precomputed feature vector, ``thread_count=1`` as the service calls it).
2. Naive: ``benchmarks/naive_service.py`` (one worker, sync API, default telemetry) scoring a
   precomputed feature vector sent in the request.
3. Ours: ``fraud_assets.serving.service:FraudScoring`` on a bundle built like the serving tests
   build theirs (``fraud_assets_tests.serving.support``), at a realistic simulator size. It is
   sent real transactions with distinct ids in time order: the store day first, then the
   simulated days after it (one day is not enough for every phase), so features are computed
   online and every prediction is logged.

Each server runs alone under ``bentoml serve`` on a free 127.0.0.1 port; this process is the
client (asyncio + aiohttp, keep-alive connections, request bodies serialized beforehand):
- open loop at fixed offered rates: send times are scheduled at fixed intervals and latency
  is measured from the scheduled time, so queueing (server or client) shows up;
- saturation: N concurrent closed-loop clients, completed requests per second, and the server
  process tree's CPU time (psutil, arbiter + workers) per request over that phase;
- ours only: /score_batch throughput, transactions per second.
Client and servers share the machine's cores, which the output says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import polars as pl
import psutil

from fraud_assets.lib.bundle import model_path, read_manifest
from fraud_assets.lib.simulation import SimulationConfig, Simulator
from fraud_assets.serving.scoring import SINGLE_ROW_THREADS
from fraud_assets_tests.serving import support
from fraud_assets_tests.serving.support import Server, World, build_world, write_world_bundle

NAIVE_SERVICE = "benchmarks.naive_service:NaiveScoring"
SEED = 5
RATES = (50, 200, 400)
WARMUP_REQUESTS = 300
WARMUP_BATCHES = 2
MAX_SATURATION_REQUESTS = 40_000  # count bound of the closed loop (besides its time bound)
MAX_BATCHES = 100  # count bound of the batch phase
REQUEST_TIMEOUT = 10.0  # seconds; every request is bounded
OPEN_LOOP_CONNECTIONS = 64
GOAL_RATIO = 1.0
GOAL_P95_MS = 10.0
GOAL_BATCH_TPS = 20_000
HEADERS = {"content-type": "application/json"}


def log(message: str) -> None:
    print(message, flush=True)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    """p50/p95/p99 in milliseconds (NaN when there is nothing to measure)."""
    if not seconds:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def fmt_pct(p: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in p) + " ms"


# ------------------------------------------------------------------------------ servers


class NaiveServer(Server):
    """``support.Server`` serving the naive service: ``start`` reads ``support.SERVICE``,
    so it is pointed at the naive service for the duration of the call."""

    def start(self, timeout: float = 90.0) -> None:
        saved = support.SERVICE
        support.SERVICE = NAIVE_SERVICE
        try:
            super().start(timeout)
        finally:
            support.SERVICE = saved


def tree_cpu_seconds(server: Server) -> float:
    """User + system CPU time of the server's arbiter and workers so far."""
    total = 0.0
    for pid in server.pids():
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def describe_tree(server: Server) -> str:
    return f"process tree: arbiter + {len(server.pids()) - 1} child process(es)"


# --------------------------------------------------------------------------------- data


def transactions(world: World, size: float, needed: int) -> list[dict[str, Any]]:
    """The store day's transactions in time order, then the following simulated days'."""
    cols = ["transaction_id", "ts", "customer_id", "terminal_id", "amount", *world.categoricals]
    frames = [world.history.filter(pl.col("ts").dt.date() == world.last_day)]
    sim = Simulator(SimulationConfig(seed=SEED, size=size))
    total, day = frames[0].height, world.last_day
    while total < needed:
        day += timedelta(days=1)
        frames.append(sim.transactions(day))
        total += frames[-1].height
    frame = pl.concat([f.select(cols) for f in frames]).sort("ts", "transaction_id")
    frame = frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    return frame.head(needed).to_dicts()


# ------------------------------------------------------------------------------- client


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    lags: list[float] = field(default_factory=list)  # open loop: send time - scheduled time
    errors: Counter[str] = field(default_factory=Counter)
    items: int = 0  # transactions scored (batches count their rows)
    elapsed: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def error_text(self) -> str:
        return ", ".join(f"{k} x{v}" for k, v in self.errors.most_common(3)) or "none"


class Client:
    def __init__(self, base_url: str, connections: int) -> None:
        self.session = aiohttp.ClientSession(
            base_url,
            connector=aiohttp.TCPConnector(limit=connections, force_close=False),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )

    async def close(self) -> None:
        await self.session.close()

    async def post(self, path: str, body: bytes, errors: Counter[str]) -> bool:
        try:
            async with self.session.post(path, data=body, headers=HEADERS) as resp:
                payload = await resp.read()
                if resp.status == 200:
                    return True
                errors[f"HTTP {resp.status}: {payload[:80]!r}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
        return False


async def open_loop(
    client: Client, path: str, bodies: Iterator[bytes], rate: float, seconds: float
) -> Outcome:
    """``rate * seconds`` requests sent at fixed intervals; latency from the scheduled time."""
    out = Outcome()
    n = round(rate * seconds)
    interval = 1.0 / rate
    perf = time.perf_counter

    async def one(scheduled: float, body: bytes) -> None:
        out.lags.append(perf() - scheduled)
        if await client.post(path, body, out.errors):
            out.latencies.append(perf() - scheduled)

    start = perf() + 0.02
    tasks = []
    for i in range(n):
        scheduled = start + i * interval
        delay = scheduled - perf()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, next(bodies))))
    _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 2)
    for task in pending:
        task.cancel()
        out.errors["unfinished"] += 1
    out.elapsed = perf() - start
    out.items = out.ok
    return out


async def closed_loop(
    client: Client,
    path: str,
    bodies: Iterator[bytes],
    concurrency: int,
    seconds: float,
    max_requests: int,
    server: Server | None = None,
    rows_per_request: int = 1,
) -> Outcome:
    """``concurrency`` clients back to back until ``seconds`` or ``max_requests`` ran out."""
    out = Outcome()
    perf = time.perf_counter
    issued = 0

    async def worker(deadline: float) -> None:
        nonlocal issued
        while perf() < deadline and issued < max_requests:
            body = next(bodies, None)
            if body is None:
                return
            issued += 1
            t = perf()
            if await client.post(path, body, out.errors):
                out.latencies.append(perf() - t)

    cpu0 = tree_cpu_seconds(server) if server else 0.0
    client0 = time.process_time()
    start = perf()
    await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
    out.elapsed = perf() - start
    out.client_cpu = time.process_time() - client0
    out.server_cpu = (tree_cpu_seconds(server) - cpu0) if server else 0.0
    out.items = out.ok * rows_per_request
    return out


@dataclass
class ServiceResult:
    open: dict[int, Outcome] = field(default_factory=dict)
    saturation: Outcome | None = None
    batch: Outcome | None = None


async def drive(
    server: Server,
    singles: Iterator[bytes],
    batches: Iterator[bytes] | None,
    args: argparse.Namespace,
    label: str,
) -> ServiceResult:
    result = ServiceResult()
    client = Client(server.url, max(OPEN_LOOP_CONNECTIONS, args.clients))
    try:
        warm = await closed_loop(client, "/score", singles, 4, 30.0, WARMUP_REQUESTS, server=None)
        if warm.error_count:
            raise RuntimeError(f"{label}: warm-up errors: {warm.error_text()}")
        for rate in RATES:
            out = await open_loop(client, "/score", singles, rate, args.seconds)
            result.open[rate] = out
            log(
                f"  {label:5} open loop {rate:4} req/s: p50/p95/p99 "
                f"{fmt_pct(percentiles(out.latencies))}, {out.ok} ok, errors: "
                f"{out.error_text()}; client send lag p99 "
                f"{percentiles(out.lags)[2]:.2f} ms"
            )
        out = await closed_loop(
            client,
            "/score",
            singles,
            args.clients,
            args.seconds,
            MAX_SATURATION_REQUESTS,
            server=server,
        )
        result.saturation = out
        p50, _, p99 = percentiles(out.latencies)
        log(
            f"  {label:5} saturation ({args.clients} clients): {out.ok / out.elapsed:,.0f} req/s"
            f" over {out.elapsed:.1f} s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors: "
            f"{out.error_text()}, server CPU {out.server_cpu / max(out.ok, 1) * 1e3:.3f} ms/req, "
            f"client CPU {out.client_cpu / out.elapsed:.0%} of a core"
        )
        if batches is not None:
            warm = await closed_loop(
                client, "/score_batch", batches, 1, 30.0, WARMUP_BATCHES, server=None
            )
            if warm.error_count:
                raise RuntimeError(f"{label}: batch warm-up errors: {warm.error_text()}")
            out = await closed_loop(
                client,
                "/score_batch",
                batches,
                args.batch_clients,
                args.batch_seconds,
                MAX_BATCHES,
                server=server,
                rows_per_request=args.batch_size,
            )
            result.batch = out
            log(
                f"  {label:5} /score_batch ({args.batch_size}/batch, {args.batch_clients} "
                f"in flight): {out.items / out.elapsed:,.0f} tx/s over {out.elapsed:.1f} s, "
                f"batch p50 {percentiles(out.latencies)[0]:.1f} ms, errors: "
                f"{out.error_text()}, server CPU "
                f"{out.server_cpu / max(out.items, 1) * 1e6:.0f} us/tx"
            )
    finally:
        await client.close()
    return result


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# -------------------------------------------------------------------------------- floor


def floor(bundle: Path, rows: list[list[Any]], calls: int) -> tuple[float, float, float]:
    """One-row predict_proba of the bundle's champion, in this process."""
    from catboost import CatBoostClassifier

    model = CatBoostClassifier()
    model.load_model(str(model_path(bundle, read_manifest(bundle), "champion")))
    for row in rows[:100]:
        model.predict_proba([row], thread_count=SINGLE_ROW_THREADS)
    latencies = []
    perf = time.perf_counter
    for row in islice(cycle(rows), calls):
        t = perf()
        model.predict_proba([row], thread_count=SINGLE_ROW_THREADS)
        latencies.append(perf() - t)
    return percentiles(latencies)


# ------------------------------------------------------------------------------- report


def cell_open(out: Outcome | None) -> str:
    if out is None:
        return "-"
    return f"{fmt_pct(percentiles(out.latencies))} ({out.error_count} err)"


def report(
    args: argparse.Namespace,
    floor_p: tuple[float, float, float],
    naive: ServiceResult,
    ours: ServiceResult,
) -> None:
    width = (36, 20, 30, 30)

    def line(*cells: str) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, width, strict=True)).rstrip()

    def sat(res: ServiceResult) -> Outcome:
        assert res.saturation is not None
        return res.saturation

    n_sat, o_sat = sat(naive), sat(ours)
    naive_rps = n_sat.ok / n_sat.elapsed
    ours_rps = o_sat.ok / o_sat.elapsed
    rows = [
        line("", "floor (in-process)", "naive BentoML", "ours (FraudScoring)"),
        line("one-row predict_proba p50/p95/p99", fmt_pct(floor_p), "-", "-"),
    ]
    for rate in RATES:
        rows.append(
            line(
                f"open loop {rate:3} req/s p50/p95/p99",
                "-",
                cell_open(naive.open.get(rate)),
                cell_open(ours.open.get(rate)),
            )
        )
    rows += [
        line(
            f"saturation ({args.clients} clients, closed loop)",
            "-",
            f"{naive_rps:,.0f} req/s ({n_sat.error_count} err)",
            f"{ours_rps:,.0f} req/s ({o_sat.error_count} err)",
        ),
        line(
            "server CPU per request (saturation)",
            "-",
            f"{n_sat.server_cpu / max(n_sat.ok, 1) * 1e3:.3f} ms",
            f"{o_sat.server_cpu / max(o_sat.ok, 1) * 1e3:.3f} ms",
        ),
        line(
            "client CPU during saturation",
            "-",
            f"{n_sat.client_cpu / n_sat.elapsed:.0%} of a core",
            f"{o_sat.client_cpu / o_sat.elapsed:.0%} of a core",
        ),
    ]
    batch = ours.batch
    batch_tps = batch.items / batch.elapsed if batch and batch.elapsed else 0.0
    if batch is not None:
        rows.append(
            line(
                f"/score_batch ({args.batch_size}/batch) throughput",
                "-",
                "-",
                f"{batch_tps:,.0f} tx/s ({batch.error_count} err)",
            )
        )
    p95_200 = percentiles(ours.open[200].latencies)[1] if 200 in ours.open else float("nan")
    ratio = ours_rps / naive_rps if naive_rps else float("nan")
    lag = max(percentiles(o.lags)[2] for r in (naive, ours) for o in r.open.values())

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    log("\n" + "=" * 100)
    log("\n".join(rows))
    log("")
    log(
        f"ours saturation / naive saturation = {ratio:.2f}x "
        f"(goal >= {GOAL_RATIO:.1f}: {verdict(ratio >= GOAL_RATIO)})"
    )
    log(
        f"ours p95 at 200 req/s = {p95_200:.2f} ms "
        f"(goal <= {GOAL_P95_MS:.0f} ms: {verdict(p95_200 <= GOAL_P95_MS)})"
    )
    log(
        f"ours /score_batch = {batch_tps:,.0f} tx/s "
        f"(goal >= {GOAL_BATCH_TPS:,}: {verdict(batch_tps >= GOAL_BATCH_TPS)})"
    )
    log(
        f"note: client (this process, asyncio + aiohttp) and server share {os.cpu_count()} CPU "
        f"cores; latencies are measured from the scheduled send time and include the client's "
        f"timer lag (p99 at most {lag:.2f} ms over the open-loop phases)."
    )


# --------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=float, default=0.5, help="simulator size")
    parser.add_argument("--seconds", type=float, default=10.0, help="per load phase")
    parser.add_argument("--clients", type=int, default=16, help="saturation concurrency")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-clients", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=8.0)
    parser.add_argument("--floor-calls", type=int, default=2000)
    args = parser.parse_args()
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    t0 = time.perf_counter()

    log(f"building the world (simulator size {args.size}, seed {SEED}) and two models...")
    world = build_world(seed=SEED, size=args.size)
    log(
        f"  {time.perf_counter() - t0:.0f} s: {len(world.seed_histories):,} customers, "
        f"{len(world.seed_terminals):,} terminals in the store seed, "
        f"{len(world.features)} features"
    )
    single_needed = WARMUP_REQUESTS + round(sum(RATES) * args.seconds) + MAX_SATURATION_REQUESTS
    batch_needed = (WARMUP_BATCHES + MAX_BATCHES) * args.batch_size
    txs = transactions(world, args.size, single_needed + batch_needed)
    store_day = world.history.filter(pl.col("ts").dt.date() == world.last_day).height
    singles = iter([dumps({"transaction": tx}) for tx in txs[:single_needed]])
    batch_txs = txs[single_needed:]
    batches = iter(
        [
            dumps({"transactions": batch_txs[i : i + args.batch_size]})
            for i in range(0, len(batch_txs) - args.batch_size + 1, args.batch_size)
        ]
    )
    vectors = [list(r) for r in world.day_features.select(world.features).iter_rows()]
    naive_bodies = cycle([dumps({"features": v}) for v in vectors])
    log(
        f"  {len(txs):,} transactions ready: the store day {world.last_day} ({store_day:,}), "
        f"then the days after it; {len(vectors):,} precomputed feature vectors for the naive "
        f"service"
    )

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        root = Path(tmp)
        try:
            bundle = write_world_bundle(world, root / "bundle")
            manifest = read_manifest(bundle)
            log(f"bundle written; traffic {manifest['traffic']}")
            floor_p = floor(bundle, vectors, args.floor_calls)
            log(f"floor: one-row predict_proba p50/p95/p99 {fmt_pct(floor_p)}")

            naive_server = NaiveServer(bundle, root / "naive_state", root / "naive_home", None)
            servers.append(naive_server)
            naive_server.start()
            log(f"naive service up on {naive_server.url} ({describe_tree(naive_server)})")
            naive = run_async(drive(naive_server, naive_bodies, None, args, "naive"))
            naive_server.stop()

            server = Server(bundle, root / "state", root / "home", None)
            servers.append(server)
            server.start()
            log(f"our service up on {server.url} ({describe_tree(server)})")
            ours = run_async(drive(server, singles, batches, args, "ours"))
            info = httpx.get(f"{server.url}/models", timeout=REQUEST_TIMEOUT).json()
            sent_ok = (
                WARMUP_REQUESTS
                + sum(o.ok for o in ours.open.values())
                + (ours.saturation.ok if ours.saturation else 0)
                + (WARMUP_BATCHES + (ours.batch.ok if ours.batch else 0)) * args.batch_size
            )
            log(
                f"our service: {info.get('predictions_logged')} predictions logged for "
                f"{sent_ok} transactions answered 200, replayed {info.get('replayed_requests')}"
                f", store {info.get('store')}"
            )
            server.stop()
            report(args, floor_p, naive, ours)
        except BaseException:
            for srv in servers:
                log(f"--- server log tail ({srv.log_path}) ---\n{srv.log_tail(2000)}")
            raise
        finally:
            for srv in servers:
                srv.stop()
    log(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
