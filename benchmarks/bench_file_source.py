"""How fast does the file source turn a user's dataset into daily partitions?

Writes ~2M synthetic transactions over 60 days as CSV and as Parquet (4 files each, the user's
own column names, integer ids, text timestamps in the CSV), then times a fresh FileSource
normalising everything and serving every day. Run: `.venv/bin/python benchmarks/bench_file_source.py`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from fraud_assets.lib.file_source import FileSource, FileSourceConfig

MAPPING = {
    "TX_DATETIME": "ts",
    "TRANSACTION_ID": "transaction_id",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "is_fraud",
    "MCC": "merchant_category",
}
START = dt.datetime(2024, 1, 1)


def synthetic(n_rows: int, n_days: int, seed: int = 0) -> pl.DataFrame:
    """Random but plausible transactions, generated vectorised with numpy."""
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, n_days * 86_400, n_rows)
    return pl.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n_rows, dtype=np.int64),
            "TX_DATETIME": pl.from_epoch(
                pl.Series(int(START.replace(tzinfo=dt.UTC).timestamp()) + seconds), time_unit="s"
            ),
            "CUSTOMER_ID": rng.integers(0, 50_000, n_rows),
            "TERMINAL_ID": rng.integers(0, 10_000, n_rows),
            "TX_AMOUNT": np.round(rng.lognormal(3.5, 1.0, n_rows), 2),
            "TX_FRAUD": (rng.random(n_rows) < 0.01).astype(np.int8),
            "MCC": rng.choice(["5411", "5812", "5999", "4111"], n_rows),
            "NOTES": "unmapped",
        }
    )


def write_dataset(df: pl.DataFrame, root: Path, n_files: int = 4) -> tuple[Path, Path]:
    csv_dir, pq_dir = root / "csv", root / "parquet"
    csv_dir.mkdir()
    pq_dir.mkdir()
    text = df.with_columns(pl.col("TX_DATETIME").dt.strftime("%Y-%m-%d %H:%M:%S"))
    size = -(-df.height // n_files)
    for i in range(n_files):
        text.slice(i * size, size).write_csv(csv_dir / f"part-{i}.csv")
        df.slice(i * size, size).write_parquet(pq_dir / f"part-{i}.parquet")
    return csv_dir, pq_dir


def time_source(path: Path) -> tuple[float, float, int]:
    """Seconds to normalise, seconds to serve every day, rows served."""
    source = FileSource(FileSourceConfig(str(path), MAPPING))
    t0 = time.perf_counter()
    first, last = source.date_range()  # triggers the one-off normalisation
    t1 = time.perf_counter()
    rows, day = 0, first
    while day <= last:
        rows += source.transactions(day).height
        day += dt.timedelta(days=1)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        csv_dir, pq_dir = write_dataset(synthetic(args.rows, args.days), Path(tmp))
        print(
            f"generated {args.rows:,} rows over {args.days} days in {time.perf_counter() - t:.1f}s"
        )
        for label, path in (("CSV", csv_dir), ("Parquet", pq_dir)):
            mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
            norm, split, rows = time_source(path)
            assert rows == args.rows, (rows, args.rows)
            total = norm + split
            print(
                f"{label:8s} {mb:7.1f} MB  normalise {norm:6.2f}s  split {args.days} days "
                f"{split * 1000:6.1f}ms  total {total:6.2f}s  {rows / total / 1e6:5.2f}M rows/s"
            )


if __name__ == "__main__":
    main()
