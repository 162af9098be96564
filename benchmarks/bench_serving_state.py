"""Serving state: what the Redis store and a second worker cost or buy, against the naive
BentoML service in its two forms, and what a rollout does to latency.

Run: .venv/bin/python benchmarks/bench_serving_state.py [--seconds 8] [--rate 200]

Every service runs alone under ``bentoml serve`` on a free 127.0.0.1 port, driven by the
client of ``bench_serving.py`` (aiohttp, bodies serialized beforehand, a new transaction id
every request, real transactions in time order): warm-up, open loop at 50/200/400 req/s
(latency from the scheduled send time), then saturation (closed loop, ``--clients``).

1. Naive baselines, scoring a precomputed feature vector: the tutorial form (sync API,
   default telemetry) and its best form (async API, telemetry off on the route).
2. Ours (features online, every prediction logged): embedded store / 1 worker, Redis /
   1 worker, Redis / 2 workers (``FRAUD_SERVING_WORKERS=2``), on a real ``redis-server``.
   The Redis cost per transaction: redis-server CPU and commands per scored transaction,
   and the service's extra CPU per request against the embedded store.
3. Rollout: Redis / 2 workers at ``--rate`` req/s, a run without a rollout (baseline) and one
   during which the deployment pointer moves to another bundle (each worker loads it in a
   thread and swaps it between two requests): latency, errors, and the worst latency in the
   switch's window against the rest of the run.

Client and servers share this machine's cores; the output says how many.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))  # the sibling bench_serving.py: its client
from bench_serving import (
    NAIVE_BEST_SERVICE,
    NAIVE_SERVICE,
    SEED,
    WARMUP_REQUESTS,
    Client,
    NaiveServer,
    Outcome,
    ServiceResult,
    closed_loop,
    drive,
    dumps,
    fmt_pct,
    log,
    open_loop,
    percentiles,
    run_async,
    transactions,
)

from fraud_assets.lib import contracts, control
from fraud_assets.lib.bundle import read_manifest
from fraud_assets.lib.processes import LOCALHOST, ManagedProcess, ScoringServer, free_port
from fraud_assets.lib.sample_world import build_world, write_world_bundle

GOAL_P95_REDIS_MS = 5.0  # at 200 req/s
GOAL_VS_EMBEDDED = 1.3  # Redis / 2 workers saturation over embedded / 1 worker
GOAL_VS_NAIVE_BEST = 1.2  # Redis / 2 workers saturation over the naive service's best form
ROLLOUT_WINDOW_S = 1.0  # the switch's window: from the pointer move to all workers + this


class Redis:
    """A throwaway ``redis-server`` on a free loopback port (no persistence)."""

    def __init__(self, root: Path) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (make servers)")
        port = free_port()
        command = [binary, "--port", str(port), "--bind", LOCALHOST, "--save", ""]
        self.process = ManagedProcess(command, log_path=root / "redis.log", cwd=root)
        self.process.spawn()
        self.url = f"redis://{LOCALHOST}:{port}/0"
        self.client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(self.process.log_tail())

    def counters(self) -> tuple[float, int]:
        """(CPU seconds of redis-server so far, commands processed so far)."""
        cpu = sum(psutil.Process(self.client.info("server")["process_id"]).cpu_times()[:2])
        return cpu, int(self.client.info("stats")["total_commands_processed"])

    def stop(self) -> None:
        self.client.close()
        self.process.stop()


def bodies(rows: list[dict[str, Any]], prefix: str) -> Iterator[bytes]:
    """Each row once, under a transaction id of its own for this run."""
    for i, row in enumerate(rows):
        yield dumps({"transaction": {**row, "transaction_id": f"{prefix}-{i}"}})


def answered(result: ServiceResult) -> int:
    return WARMUP_REQUESTS + sum(o.ok for o in result.open.values()) + result.saturation.ok


def rollout_run(server: ScoringServer, rows: list[dict[str, Any]], other: Path, args: Any):
    """(baseline, during, switch start and seconds): open loop at ``args.rate`` twice."""
    import asyncio

    target = read_manifest(other)["bundle_id"]
    switch: dict[str, float] = {}

    def roll() -> None:
        t = time.perf_counter()
        control.set_deployment(server.state, other, reason="benchmark")
        ok, workers = control.wait_for_workers(server.state, target, 60)
        switch["seconds"] = time.perf_counter() - t if ok else float("nan")
        switch["workers"] = len(workers)

    async def phases() -> tuple[Outcome, Outcome]:
        client = Client(server.url, 64)
        try:
            warm = bodies(rows, "roll-warm")
            await closed_loop(client, "/score", warm, 4, 30.0, WARMUP_REQUESTS)
            base = await open_loop(client, "/score", bodies(rows, "base"), args.rate, args.seconds)
            load = asyncio.create_task(
                open_loop(client, "/score", bodies(rows, "roll"), args.rate, args.seconds)
            )
            await asyncio.sleep(args.seconds / 3)
            switch["start"] = args.seconds / 3
            await asyncio.to_thread(roll)
            return base, await load
        finally:
            await client.close()

    base, during = run_async(phases())
    return base, during, switch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=0.5, help="simulator size")
    parser.add_argument("--seconds", type=float, default=8.0, help="per load phase")
    parser.add_argument("--clients", type=int, default=16, help="saturation concurrency")
    parser.add_argument("--rate", type=float, default=200.0, help="rollout phase, req/s")
    args = parser.parse_args()
    args.only = "ours"  # drive(): the single-transaction phases, no batch phase
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    t0 = time.perf_counter()
    log(f"building the world (simulator size {args.size}, seed {SEED}) and the models...")
    world = build_world(seed=SEED, size=args.size)
    rows = transactions(world, args.size, 60_000)
    vectors = [list(r) for r in world.day_features.select(world.features).iter_rows()]
    root = Path(tempfile.mkdtemp(prefix="bench-serving-state-"))
    bundle = write_world_bundle(world, root / "bundle", challenger=False)
    other = write_world_bundle(world, root / "other", versions=("9", "10"), challenger=False)
    redis = Redis(root)
    log(f"{len(rows):,} transactions ready; redis-server on {redis.url}")
    store = {contracts.ONLINE_STORE_ENV: redis.url}
    configs: list[tuple[str, str | None, dict[str, str]]] = [
        ("naive, tutorial form", NAIVE_SERVICE, {}),
        ("naive, best form", NAIVE_BEST_SERVICE, {}),
        ("ours, embedded, 1 worker", None, {}),
        ("ours, redis, 1 worker", None, store),
        ("ours, redis, 2 workers", None, {**store, contracts.WORKERS_ENV: "2"}),
    ]
    results: dict[str, ServiceResult] = {}
    redis_cost: dict[str, tuple[float, float]] = {}
    server: ScoringServer | None = None
    try:
        for k, (name, naive, settings) in enumerate(configs):
            redis.client.flushall()
            home = root / f"run{k}"
            if naive is None:
                server = ScoringServer(bundle, home / "state", home / "home", None, settings)
                singles = bodies(rows, f"run{k}")
            else:
                server = NaiveServer(bundle, home / "state", home / "home", None, target=naive)
                singles = cycle([dumps({"features": v}) for v in vectors])
            server.start()
            log(f"{name}: up on {server.url} ({len(server.pids())} processes)")
            before = redis.counters()
            results[name] = run_async(drive(server, singles, None, args, name))
            after = redis.counters()
            server.stop()
            if settings:
                n = answered(results[name])
                redis_cost[name] = ((after[0] - before[0]) / n, (after[1] - before[1]) / n)

        redis.client.flushall()
        home = root / "rollout"
        settings = {**store, contracts.WORKERS_ENV: "2"}
        server = ScoringServer(bundle, home / "state", home / "home", None, settings)
        server.start()
        base, during, switch = rollout_run(server, rows, other, args)
        server.stop()
    except BaseException:
        if server is not None:
            log(f"--- server log tail ({server.log_path}) ---\n{server.log_tail(2000)}")
        raise
    finally:
        if server is not None:
            server.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    report(args, results, redis_cost, base, during, switch)
    log(f"total {time.perf_counter() - t0:.0f} s")


def report(args, results, redis_cost, base: Outcome, during: Outcome, switch) -> None:
    def sat(name: str) -> Outcome:
        return results[name].saturation

    log("\n" + "=" * 100)
    log(
        f"{psutil.cpu_count()} cores shared by the client and the server; saturation with "
        f"{args.clients} concurrent clients; latencies p50/p95/p99"
    )
    log("| service | 50 req/s | 200 req/s | 400 req/s | saturation | server CPU/request |")
    log("|---|---|---|---|---|---|")
    for name, result in results.items():
        cells = [
            fmt_pct(percentiles(result.open[r].latencies)) + errors(result.open[r])
            for r in (50, 200, 400)
        ]
        s = result.saturation
        log(
            f"| {name} | {' | '.join(cells)} | {s.rate:,.0f} req/s{errors(s)} | "
            f"{s.server_cpu_per_item() * 1e3:.2f} ms |"
        )
    embedded = sat("ours, embedded, 1 worker")
    log("\nRedis cost per scored transaction (whole run: warm-up, open loops, saturation)")
    log("| service | redis-server CPU | Redis commands | service CPU vs embedded (saturation) |")
    log("|---|---|---|---|")
    for name, (cpu, commands) in redis_cost.items():
        extra = sat(name).server_cpu_per_item() - embedded.server_cpu_per_item()
        log(f"| {name} | {cpu * 1e6:.0f} us | {commands:.1f} | {extra * 1e3:+.2f} ms |")

    two = sat("ours, redis, 2 workers")
    best = sat("naive, best form")
    tutorial = sat("naive, tutorial form")
    vs_embedded, vs_best = two.rate / embedded.rate, two.rate / best.rate
    log("")
    for name in ("ours, redis, 1 worker", "ours, redis, 2 workers"):
        p95 = percentiles(results[name].open[200].latencies)[1]
        log(
            f"{name}: p95 at 200 req/s = {p95:.2f} ms "
            f"(goal <= {GOAL_P95_REDIS_MS:.0f} ms: {verdict(p95 <= GOAL_P95_REDIS_MS)})"
        )
    log(
        f"redis/2 workers saturation / embedded/1 worker = {vs_embedded:.2f}x "
        f"(goal >= {GOAL_VS_EMBEDDED}: {verdict(vs_embedded >= GOAL_VS_EMBEDDED)})"
    )
    log(
        f"redis/2 workers saturation / naive best form = {vs_best:.2f}x "
        f"(goal >= {GOAL_VS_NAIVE_BEST}: {verdict(vs_best >= GOAL_VS_NAIVE_BEST)}); "
        f"/ naive tutorial form = {two.rate / tutorial.rate:.2f}x"
    )

    start = switch["start"]
    end = start + switch["seconds"] + ROLLOUT_WINDOW_S
    inside = [lat for t, lat in during.trace if lat is not None and start <= t <= end]
    outside = [lat for t, lat in during.trace if lat is not None and not start <= t <= end]
    log(
        f"\nRollout, Redis / 2 workers, open loop {args.rate:.0f} req/s for {args.seconds:.0f} s: "
        f"pointer moved at {start:.1f} s, {switch['workers']} workers switched in "
        f"{switch['seconds']:.2f} s"
    )
    log("| run | p50 / p95 / p99 | max | failed requests |")
    log("|---|---|---|---|")
    for name, out in (("no rollout", base), ("rollout in the middle", during)):
        log(
            f"| {name} | {fmt_pct(percentiles(out.latencies))} | {worst(out.latencies):.1f} ms "
            f"| {out.error_count} |"
        )
    log(
        f"| ... requests sent in the switch window ({len(inside)}) | "
        f"{fmt_pct(percentiles(inside))} | {worst(inside):.1f} ms | |"
    )
    log(
        f"| ... the rest of that run ({len(outside)}) | {fmt_pct(percentiles(outside))} | "
        f"{worst(outside):.1f} ms | |"
    )
    log(f"zero failed requests during the rollout: {verdict(during.error_count == 0)}")


def errors(out: Outcome) -> str:
    return f" ({out.error_count} err)" if out.error_count else ""


def worst(latencies: list[float]) -> float:
    return float(np.max(latencies) * 1000) if latencies else float("nan")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
