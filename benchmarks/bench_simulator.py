"""Simulator throughput on one core: transactions generated per second.

Run: .venv/bin/python benchmarks/bench_simulator.py [--size 100] [--days 5]
The population (customers, terminals, nearest-terminal index) is built once and reported
separately; each day is then generated cold (no cache) from its own random streams.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date, timedelta

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, as the goal says

from fraud_assets.lib import simulation
from fraud_assets.lib.simulation import SimulationConfig, Simulator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=float, default=100.0)
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args()
    sim = Simulator(SimulationConfig(size=args.size))
    t = time.perf_counter()
    _ = sim.population
    print(
        f"population: {sim.config.n_customers:,} customers, {sim.config.n_terminals:,} terminals "
        f"built in {time.perf_counter() - t:.2f} s"
    )
    rows, elapsed = 0, 0.0
    for i in range(args.days):
        simulation._simulate_day.cache_clear()
        t = time.perf_counter()
        df = sim.transactions(date(2026, 3, 1) + timedelta(days=i))
        elapsed += time.perf_counter() - t
        rows += df.height
    print(
        f"simulated {rows:,} transactions over {args.days} days in {elapsed:.2f} s: "
        f"{rows / elapsed:,.0f} transactions/s (goal >= 500,000/s on one core)"
    )


if __name__ == "__main__":
    main()
