"""Online scoring latency and throughput: in-process floor, a naive BentoML service, ours.

Run: .venv/bin/python benchmarks/bench_serving.py [--size 0.5] [--seconds 10] [--only batch]

``--only ours`` skips the floor and the naive service; ``--only batch`` also skips our
single-transaction phases (warm-up included) and measures /score_batch alone, its
transactions then starting at the store day.

1. Floor: one-row CatBoost ``predict_proba`` in this process (the bundle's champion, a
   precomputed feature vector, ``thread_count=1`` as the service calls it).
2. Naive: ``benchmarks/naive_service.py`` (one worker, sync API, default telemetry) scoring a
   precomputed feature vector sent in the request.
3. Ours: ``fraud_assets.serving.service:FraudScoring`` on a bundle built like the serving tests
   build theirs (``fraud_assets.lib.sample_world``), at a realistic simulator size. It is
   sent real transactions with distinct ids in time order: the store day first, then the
   simulated days after it (one day is not enough for every phase), so features are computed
   online and every prediction is logged.

Each server runs alone under ``bentoml serve`` on a free 127.0.0.1 port; this process is the
client (asyncio on uvloop + aiohttp, keep-alive connections, bodies serialized beforehand):
- open loop at fixed offered rates: send times are scheduled at fixed intervals and latency
  is measured from the scheduled time, so queueing (server or client) shows up;
- saturation: N concurrent closed-loop clients, completed requests per second;
- ours only: /score_batch throughput, transactions per second.
Every phase meters CPU: the server process tree (psutil: arbiter + workers), this client
process, and the rest of the machine (other processes, interrupts). Client and servers share
the machine's cores; the output says how many and how busy the rest of the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
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
from fraud_assets.lib.processes import ScoringServer
from fraud_assets.lib.sample_world import World, build_world, write_world_bundle
from fraud_assets.lib.simulation import SimulationConfig, Simulator
from fraud_assets.serving.deployment import SINGLE_ROW_THREADS

NAIVE_SERVICE = "benchmarks.naive_service:NaiveScoring"
NAIVE_BEST_SERVICE = "benchmarks.naive_service:NaiveBestScoring"
SEED = 5
RATES = (50, 200, 400)
WARMUP_REQUESTS = 300
WARMUP_BATCHES = 2
MAX_SATURATION_REQUESTS = 40_000  # count bound of the closed loop (besides its time bound)
MAX_BATCHES = 240  # count bound of the batch phase (besides its time bound): ~6 s at 20k tx/s
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


class NaiveServer(ScoringServer):
    """``ScoringServer`` serving a naive service (``target``) instead of ours."""

    def __init__(self, *args: Any, target: str = NAIVE_SERVICE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = target


def tree_cpu_seconds(server: ScoringServer) -> float:
    """User + system CPU time of the server's arbiter and workers so far."""
    total = 0.0
    for pid in server.pids():
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy so far (all cores, idle and iowait excluded)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


@dataclass
class Cpu:
    """CPU seconds of one phase: server tree, this client process, everything else."""

    wall: float = 0.0
    server: float = 0.0
    client: float = 0.0
    others: float = 0.0


class CpuMeter:
    def __init__(self, server: ScoringServer) -> None:
        self.server = server
        self.start = (
            time.perf_counter(),
            tree_cpu_seconds(server),
            time.process_time(),
            machine_busy_seconds(),
        )

    def stop(self) -> Cpu:
        wall0, server0, client0, busy0 = self.start
        wall = time.perf_counter() - wall0
        server = tree_cpu_seconds(self.server) - server0
        client = time.process_time() - client0
        busy = machine_busy_seconds() - busy0
        return Cpu(wall, server, client, max(0.0, busy - server - client))


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
    lags: list[float] = field(default_factory=list)  # open loop: send start - scheduled time
    # open loop: (scheduled time since the phase's start, latency or None when it failed)
    trace: list[tuple[float, float | None]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rows_per_request: int = 1
    elapsed: float = 0.0
    cpu: Cpu = field(default_factory=Cpu)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def items(self) -> int:
        """Transactions scored (a batch counts its rows)."""
        return self.ok * self.rows_per_request

    @property
    def rate(self) -> float:
        return self.items / self.elapsed if self.elapsed else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def error_text(self) -> str:
        return ", ".join(f"{k} x{v}" for k, v in self.errors.most_common(3)) or "none"

    def server_cpu_per_item(self) -> float:
        return self.cpu.server / max(self.items, 1)

    def cpu_text(self) -> str:
        w = max(self.cpu.wall, 1e-9)
        return (
            f"CPU (cores): server {self.cpu.server / w:.2f}, client {self.cpu.client / w:.2f}, "
            f"rest of machine {self.cpu.others / w:.2f}"
        )


class Client:
    def __init__(self, base_url: str, connections: int) -> None:
        self.session = aiohttp.ClientSession(
            base_url,
            # Idle connections are dropped before uvicorn's 5 s keep-alive closes them, so a
            # request never races the server closing its connection.
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=2.0),
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
            errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
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
        latency = None
        if await client.post(path, body, out.errors):
            latency = perf() - scheduled
            out.latencies.append(latency)
        out.trace.append((scheduled - start, latency))

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
    return out


async def closed_loop(
    client: Client,
    path: str,
    bodies: Iterator[bytes],
    concurrency: int,
    seconds: float,
    max_requests: int,
    rows_per_request: int = 1,
) -> Outcome:
    """``concurrency`` clients back to back until ``seconds`` or ``max_requests`` ran out."""
    out = Outcome(rows_per_request=rows_per_request)
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

    start = perf()
    await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
    out.elapsed = perf() - start
    return out


async def metered(server: ScoringServer, phase: Callable[[], Awaitable[Outcome]]) -> Outcome:
    meter = CpuMeter(server)
    out = await phase()
    out.cpu = meter.stop()
    return out


@dataclass
class ServiceResult:
    open: dict[int, Outcome] = field(default_factory=dict)
    saturation: Outcome | None = None
    batch: Outcome | None = None


async def drive(
    server: ScoringServer,
    singles: Iterator[bytes],
    batches: Iterator[bytes] | None,
    args: argparse.Namespace,
    label: str,
) -> ServiceResult:
    """Warm-up, the open-loop rates, saturation, and (ours) the batch endpoint."""
    result = ServiceResult()
    client = Client(server.url, max(OPEN_LOOP_CONNECTIONS, args.clients))
    try:
        if args.only != "batch":
            await single_phases(client, server, singles, args, label, result)
        if batches is not None:
            warm = await closed_loop(client, "/score_batch", batches, 1, 30.0, WARMUP_BATCHES)
            if warm.error_count:
                raise RuntimeError(f"{label}: batch warm-up errors: {warm.error_text()}")
            out = await metered(
                server,
                lambda: closed_loop(
                    client,
                    "/score_batch",
                    batches,
                    args.batch_clients,
                    args.batch_seconds,
                    MAX_BATCHES,
                    rows_per_request=args.batch_size,
                ),
            )
            result.batch = out
            log(
                f"  {label:5} /score_batch ({args.batch_size}/batch, {args.batch_clients} in "
                f"flight): {out.rate:,.0f} tx/s over {out.elapsed:.1f} s, batch p50 "
                f"{percentiles(out.latencies)[0]:.1f} ms, errors: {out.error_text()}; server "
                f"CPU {out.server_cpu_per_item() * 1e6:.0f} us/tx; {out.cpu_text()}"
            )
    finally:
        await client.close()
    return result


async def single_phases(
    client: Client,
    server: ScoringServer,
    singles: Iterator[bytes],
    args: argparse.Namespace,
    label: str,
    result: ServiceResult,
) -> None:
    """/score: warm-up, the open-loop rates, then saturation."""
    warm = await closed_loop(client, "/score", singles, 4, 30.0, WARMUP_REQUESTS)
    if warm.error_count:
        raise RuntimeError(f"{label}: warm-up errors: {warm.error_text()}")
    for rate in RATES:
        out = await metered(
            server, lambda r=rate: open_loop(client, "/score", singles, r, args.seconds)
        )
        result.open[rate] = out
        log(
            f"  {label:5} open loop {rate:3} req/s: p50/p95/p99 "
            f"{fmt_pct(percentiles(out.latencies))}, {out.ok} ok, errors: "
            f"{out.error_text()}; client send lag p99 {percentiles(out.lags)[2]:.2f} ms; "
            f"server CPU {out.server_cpu_per_item() * 1e3:.2f} ms/req; {out.cpu_text()}"
        )
    out = await metered(
        server,
        lambda: closed_loop(
            client, "/score", singles, args.clients, args.seconds, MAX_SATURATION_REQUESTS
        ),
    )
    result.saturation = out
    p50, _, p99 = percentiles(out.latencies)
    log(
        f"  {label:5} saturation ({args.clients} clients): {out.rate:,.0f} req/s over "
        f"{out.elapsed:.1f} s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors: "
        f"{out.error_text()}; server CPU {out.server_cpu_per_item() * 1e3:.2f} ms/req; "
        f"{out.cpu_text()}"
    )


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


def report(
    args: argparse.Namespace,
    floor_p: tuple[float, float, float],
    naive: ServiceResult,
    ours: ServiceResult,
) -> None:
    width = (38, 20, 36, 36)

    def line(*cells: str) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, width, strict=True)).rstrip()

    def per_service(fn: Callable[[Outcome], str], pick: Callable[[ServiceResult], Any]) -> list:
        return [fn(o) if (o := pick(r)) is not None else "-" for r in (naive, ours)]

    def latency(o: Outcome) -> str:
        return f"{fmt_pct(percentiles(o.latencies))} ({o.error_count} err)"

    def others(o: Outcome) -> str:
        return f"{o.cpu.others / max(o.cpu.wall, 1e-9):.2f} cores"

    rows = [
        line("", "floor (in-process)", "naive BentoML", "ours (FraudScoring)"),
        line("one-row predict_proba p50/p95/p99", fmt_pct(floor_p), "-", "-"),
    ]
    for rate in RATES:
        rows.append(
            line(
                f"open loop {rate:3} req/s p50/p95/p99",
                "-",
                *per_service(latency, lambda r, rate=rate: r.open.get(rate)),
            )
        )
    sat = [
        ("saturation throughput", lambda o: f"{o.rate:,.0f} req/s ({o.error_count} err)"),
        ("  server CPU per request", lambda o: f"{o.server_cpu_per_item() * 1e3:.2f} ms"),
        ("  client CPU", lambda o: f"{o.cpu.client / max(o.cpu.wall, 1e-9):.2f} cores"),
        ("  rest of machine CPU", others),
    ]
    for title, fn in sat:
        rows.append(line(f"{title} ({args.clients} clients)", "-", *per_service(fn, _sat)))
    batch = ours.batch
    if batch is not None:
        rows.append(
            line(
                f"/score_batch ({args.batch_size}/batch) throughput",
                "-",
                "-",
                f"{batch.rate:,.0f} tx/s ({batch.error_count} err)",
            )
        )
        rows.append(
            line(
                "  server CPU per transaction",
                "-",
                "-",
                f"{batch.server_cpu_per_item() * 1e6:.0f} us",
            )
        )
    n_sat, o_sat = _sat(naive), _sat(ours)
    ratio = o_sat.rate / n_sat.rate if n_sat and o_sat and n_sat.rate else float("nan")
    p95_200 = percentiles(ours.open[200].latencies)[1] if 200 in ours.open else float("nan")
    batch_tps = batch.rate if batch else 0.0
    phases = [o for r in (naive, ours) for o in (*r.open.values(), r.saturation, r.batch) if o]
    lag = max((percentiles(o.lags)[2] for r in (naive, ours) for o in r.open.values()), default=0.0)
    busiest = max((o.cpu.others / max(o.cpu.wall, 1e-9) for o in phases), default=0.0)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    def skipped(value: float) -> bool:  # a phase left out with --only reads as NaN
        return value != value

    log("\n" + "=" * 110)
    log("\n".join(rows))
    log("")
    if not skipped(ratio):
        log(
            f"ours saturation / naive saturation = {ratio:.2f}x "
            f"(goal >= {GOAL_RATIO:.1f}: {verdict(ratio >= GOAL_RATIO)})"
        )
    if not skipped(p95_200):
        log(
            f"ours p95 at 200 req/s = {p95_200:.2f} ms "
            f"(goal <= {GOAL_P95_MS:.0f} ms: {verdict(p95_200 <= GOAL_P95_MS)})"
        )
    log(
        f"ours /score_batch = {batch_tps:,.0f} tx/s "
        f"(goal >= {GOAL_BATCH_TPS:,}: {verdict(batch_tps >= GOAL_BATCH_TPS)})"
    )
    log(
        f"note: the client (this process: asyncio + aiohttp) and the server share the machine's "
        f"{psutil.cpu_count()} CPU cores. Latencies run from the scheduled send time, so they "
        f"include the client's timer lag (open-loop send lag p99 at most {lag:.2f} ms)."
    )
    if busiest > 0.25:
        log(
            f"WARNING: other work on the machine used up to {busiest:.2f} cores during a phase "
            f"(see 'rest of machine'): the figures are pessimistic; rerun on a quiet machine."
        )


def _sat(result: ServiceResult) -> Outcome | None:
    return result.saturation


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
    parser.add_argument(
        "--only",
        choices=("all", "ours", "batch"),
        default="all",
        help="ours: skip the floor and the naive service; batch: only our /score_batch phase",
    )
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
    single_needed = (
        0
        if args.only == "batch"
        else WARMUP_REQUESTS + round(sum(RATES) * args.seconds) + MAX_SATURATION_REQUESTS
    )
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
    n_txs = len(txs)
    del txs, batch_txs
    # Long-lived objects out of the collector's way: a full collection over them would pause
    # the client's event loop mid-phase (and show up as latency).
    gc.collect()
    gc.freeze()
    log(
        f"  {n_txs:,} transactions ready (in time order): the store day {world.last_day} "
        f"({store_day:,}), then the days after it; {len(vectors):,} precomputed feature "
        f"vectors for the naive service"
    )

    servers: list[ScoringServer] = []
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        root = Path(tmp)
        try:
            bundle = write_world_bundle(world, root / "bundle")
            log(f"bundle written; traffic {read_manifest(bundle)['traffic']}")
            floor_p: tuple[float, float, float] = (float("nan"),) * 3
            naive = ServiceResult()
            if args.only == "all":
                floor_p = floor(bundle, vectors, args.floor_calls)
                log(f"floor: one-row predict_proba p50/p95/p99 {fmt_pct(floor_p)}")
                naive_server = NaiveServer(bundle, root / "naive_state", root / "naive_home", None)
                servers.append(naive_server)
                naive_server.start()
                log(
                    f"naive service up on {naive_server.url} ({len(naive_server.pids())} processes)"
                )
                naive = run_async(drive(naive_server, naive_bodies, None, args, "naive"))
                naive_server.stop()

            server = ScoringServer(bundle, root / "state", root / "home", None)
            servers.append(server)
            server.start()
            log(f"our service up on {server.url} ({len(server.pids())} processes)")
            ours = run_async(drive(server, singles, batches, args, "ours"))
            info = httpx.get(f"{server.url}/models", timeout=REQUEST_TIMEOUT).json()
            answered = (
                (WARMUP_REQUESTS if args.only != "batch" else 0)
                + sum(o.ok for o in ours.open.values())
                + (ours.saturation.ok if ours.saturation else 0)
                + WARMUP_BATCHES * args.batch_size
                + (ours.batch.items if ours.batch else 0)
            )
            log(
                f"our service after the run: {info['predictions_logged']:,} predictions logged "
                f"for {answered:,} transactions answered 200; replayed "
                f"{info['replayed_requests']}; store {info['store']}"
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
