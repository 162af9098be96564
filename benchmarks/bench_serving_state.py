"""Serving state: what Redis and more workers cost or buy, and what a rollout does to latency.

Run: .venv/bin/python benchmarks/bench_serving_state.py [--seconds 8] [--rate 200]

1. Saturation (closed loop, 32 concurrent clients, a new transaction id every request, real
   transactions in time order) of: one worker on the embedded store (the baseline), one
   worker on Redis, two workers on Redis (``FRAUD_SERVING_WORKERS=2``). A real
   ``redis-server`` on a free loopback port. Client and servers share this machine's cores.
2. Rollout: one worker, open loop at ``--rate`` req/s; a run without a rollout (baseline)
   and one during which the deployment pointer moves to another bundle (the worker loads it
   in a thread and swaps it between two requests): latency p50/p95/p99/max and errors.

Reuses the client of ``bench_serving.py`` (aiohttp, bodies serialized beforehand).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # the sibling script bench_serving.py: its client
from bench_serving import (
    Client,
    closed_loop,
    dumps,
    fmt_pct,
    log,
    open_loop,
    percentiles,
    transactions,
)

from fraud_assets.lib import contracts, control
from fraud_assets.lib.bundle import read_manifest
from fraud_assets.lib.processes import LOCALHOST, ManagedProcess, ScoringServer, free_port
from fraud_assets.lib.sample_world import build_world, write_world_bundle

CONCURRENCY = 32


def start_redis(root: Path) -> tuple[ManagedProcess, str]:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make servers)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", LOCALHOST, "--save", "", "--dir", str(root)]
    server = ManagedProcess(command, log_path=root / "redis.log")
    server.spawn()
    url = f"redis://{LOCALHOST}:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return server, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(server.log_tail())


def serve(bundle: Path, root: Path, env: dict[str, str]) -> ScoringServer:
    server = ScoringServer(bundle, root / "state", root / "home", None, env)
    server.start()
    return server


def bodies(rows: list[dict], prefix: str):
    for i, row in enumerate(rows):
        yield dumps({"transaction": {**row, "transaction_id": f"{prefix}-{i}"}})


async def saturate(url: str, rows: list[dict], prefix: str, seconds: float):
    client = Client(url, CONCURRENCY)
    try:
        return await closed_loop(
            client, "/score", bodies(rows, prefix), CONCURRENCY, seconds, len(rows)
        )
    finally:
        await client.close()


async def steady(url: str, rows: list[dict], prefix: str, rate: float, seconds: float, during):
    client = Client(url, 64)
    try:
        load = asyncio.create_task(open_loop(client, "/score", bodies(rows, prefix), rate, seconds))
        if during is not None:
            await asyncio.sleep(seconds / 3)
            await asyncio.to_thread(during)
        return await load
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--size", type=float, default=0.5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serving-state-"))
    world = build_world()
    bundle = write_world_bundle(world, root / "bundle", challenger=False)
    other = write_world_bundle(world, root / "other", versions=("9", "10"), challenger=False)
    rows = transactions(world, args.size, 60_000)
    redis_server, redis_url = start_redis(root)
    results = []
    try:
        configs = [
            ("embedded, 1 worker", {}),
            ("redis, 1 worker", {contracts.ONLINE_STORE_ENV: redis_url}),
            (
                "redis, 2 workers",
                {contracts.ONLINE_STORE_ENV: redis_url, contracts.WORKERS_ENV: "2"},
            ),
        ]
        for k, (name, env) in enumerate(configs):
            import redis

            redis.Redis.from_url(redis_url).flushall()
            server = serve(bundle, root / f"sat{k}", env)
            try:
                out = asyncio.run(saturate(server.url, rows, f"sat{k}", args.seconds))
            finally:
                server.stop()
            results.append((name, out))
            log(
                f"{name}: {out.rate:.0f} req/s, {fmt_pct(percentiles(out.latencies))}, "
                f"errors {out.error_text()}"
            )

        server = serve(bundle, root / "rollout", {})
        try:
            base = asyncio.run(
                steady(server.url, rows, "base", args.rate, args.seconds, during=None)
            )
            target = read_manifest(other)["bundle_id"]
            switch: dict[str, float] = {}

            def rollout() -> None:
                t = time.perf_counter()
                control.set_deployment(server.state, other, reason="benchmark")
                ok, _ = control.wait_for_workers(server.state, target, 60)
                switch["seconds"] = time.perf_counter() - t if ok else float("nan")

            during = asyncio.run(
                steady(server.url, rows, "roll", args.rate, args.seconds, during=rollout)
            )
        finally:
            server.stop()
    finally:
        redis_server.stop()
        shutil.rmtree(root, ignore_errors=True)

    baseline = results[0][1].rate
    print(
        f"\nSaturation, closed loop x{CONCURRENCY}, {os.cpu_count()} cores shared with the client"
    )
    print("| configuration | req/s | vs embedded | p50 / p95 / p99 ms | errors |")
    print("|---|---|---|---|---|")
    for name, out in results:
        print(
            f"| {name} | {out.rate:.0f} | {out.rate / baseline:.2f}x | "
            f"{fmt_pct(percentiles(out.latencies))} | {out.error_count} |"
        )
    print(f"\nRollout at {args.rate:.0f} req/s, one worker (switch took {switch['seconds']:.2f} s)")
    print("| run | p50 / p95 / p99 ms | max ms | errors |")
    print("|---|---|---|---|")
    for name, out in (("no rollout", base), ("rollout in the middle", during)):
        worst = float(np.max(out.latencies) * 1000) if out.latencies else float("nan")
        print(
            f"| {name} | {fmt_pct(percentiles(out.latencies))} | {worst:.1f} | {out.error_count} |"
        )


if __name__ == "__main__":
    main()
