"""Batch feature throughput: our Polars path against a straightforward pandas baseline.

Run: .venv/bin/python benchmarks/bench_features.py [--days 180] [--size 1.0]

Simulates `--days` days of transactions (plus the windows' reach of warm-up days) and every label
event of those days, then computes the features of every transaction of the range twice:
- ours: `features.batch_features(history, labels, start, end)` in one call (as backtests do);
- pandas: the rolling-window code a data scientist would write (Fraud Detection Handbook
  style): `.dt` time features, `groupby("customer_id").rolling("7D", on="ts")` customer
  windows (the prior normal: the window's sums minus the row), per-terminal daily counts with
  rolling sums shifted by a day (and by the label maturity), the known-fraud counts computed
  per as-of day in a loop.
The two results are compared column by column (ours is the reference), then the timings,
the speedup and the peak RSS of the process are printed side by side.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl

from fraud_assets.lib.features.batch import batch_features
from fraud_assets.lib.features.definitions import (
    DEFAULT_MATURITY_DAYS,
    LOOKBACK_DAYS,
    MATURE,
    NIGHT_HOURS,
    NO_PREVIOUS_SECONDS,
    NUMERIC_FEATURES,
    SMALL_AMOUNT,
    TERMINAL_COUNT_COLUMNS,
    VELOCITY_SECONDS,
    WINDOWS_DAYS,
    log_amount_units,
    prior_zscore,
    terminal_lookback_days,
)
from fraud_assets.lib.simulation import SimulationConfig, Simulator

START = date(2025, 9, 1)
MATURITY = DEFAULT_MATURITY_DAYS
WARMUP_DAYS = terminal_lookback_days(MATURITY)
TOLERANCE = 1e-6
CUSTOMER_COUNT_COLUMNS = [
    *(f"customer_tx_count_{w}d" for w in WINDOWS_DAYS),
    "customer_tx_count_1h",
    "customer_small_online_count_1h",
]
EXACT_COLUMNS = [
    *CUSTOMER_COUNT_COLUMNS,
    *TERMINAL_COUNT_COLUMNS,
    *(f"{c}{MATURE}" for c in TERMINAL_COUNT_COLUMNS),
]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def simulate(size: float, days: int) -> tuple[pl.DataFrame, pl.DataFrame, date, date]:
    """Transactions of the warm-up days and the range, and every label event of those days."""
    sim = Simulator(SimulationConfig(seed=7, size=size))
    first = START - timedelta(days=WARMUP_DAYS)
    end = START + timedelta(days=days - 1)
    tx, labels = [], []
    for i in range((end - first).days + 1):
        day = first + timedelta(days=i)
        tx.append(sim.transactions(day).drop("is_fraud", "fraud_scenario"))  # no truth
        labels.append(sim.labels(day))
    return pl.concat(tx), pl.concat(labels), START, end


# ------------------------------------------------------------------------ pandas baseline


def pandas_features(tx: pd.DataFrame, labels: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    """The same features, the way a data scientist would write them with pandas."""
    lo = pd.Timestamp(start, tz="UTC")
    hi = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    df = tx.sort_values(["customer_id", "ts", "transaction_id"]).reset_index(drop=True)
    df["small"] = ((df["amount"] < SMALL_AMOUNT) & (df["channel"] == "online")).astype(float)

    # Time features.
    out = df[["transaction_id", "ts", "customer_id", "terminal_id", "amount"]].copy()
    hour = df["ts"].dt.hour
    out["hour"] = hour.astype(float)
    out["is_weekend"] = (df["ts"].dt.dayofweek >= 5).astype(float)
    out["is_night"] = hour.isin(sorted(NIGHT_HOURS)).astype(float)

    # Customer windows: (t - w, t]; pandas' time-based windows end at the current row, so a
    # transaction does not see those after it at the same instant (rows are sorted by id).
    by_customer = df.groupby("customer_id", sort=True)
    for w in WINDOWS_DAYS:
        stats = by_customer.rolling(f"{w}D", on="ts", closed="right")["amount"].agg(
            ["count", "mean", "max"]
        )
        if w == WINDOWS_DAYS[0]:  # the groupby output follows the (customer-sorted) rows
            assert (stats.index.get_level_values(0) == df["customer_id"]).all()
        out[f"customer_tx_count_{w}d"] = stats["count"].to_numpy()
        out[f"customer_amount_mean_{w}d"] = stats["mean"].to_numpy()
        out[f"customer_amount_max_{w}d"] = stats["max"].to_numpy()
    mean_30d = out["customer_amount_mean_30d"]
    out["amount_to_customer_mean_30d"] = np.where(
        mean_30d > 0, out["amount"] / mean_30d.where(mean_30d > 0, 1.0), 1.0
    )
    velocity = by_customer.rolling(f"{VELOCITY_SECONDS}s", on="ts", closed="right")
    out["customer_tx_count_1h"] = velocity["amount"].count().to_numpy()
    out["customer_small_online_count_1h"] = velocity["small"].sum().to_numpy()
    # The prior normal: the 30-day window's sums minus the row itself (log units as defined).
    df["log_units"] = df["amount"].map(log_amount_units).astype("int64")
    df["log_squares"] = df["log_units"] * df["log_units"]
    month = df.groupby("customer_id", sort=True).rolling(
        f"{LOOKBACK_DAYS}D", on="ts", closed="right"
    )[["log_units", "log_squares"]]
    sums = month.sum()
    n = out["customer_tx_count_30d"].to_numpy().astype(int) - 1
    s1 = sums["log_units"].to_numpy().astype(np.int64) - df["log_units"].to_numpy()
    s2 = sums["log_squares"].to_numpy().astype(np.int64) - df["log_squares"].to_numpy()
    out["amount_zscore_to_customer_prior_30d"] = [
        prior_zscore(u, k, a, b)
        for u, k, a, b in zip(
            df["log_units"].tolist(), n.tolist(), s1.tolist(), s2.tolist(), strict=True
        )
    ]
    gap = by_customer["ts"].diff().dt.total_seconds()
    out["customer_seconds_since_previous"] = np.where(
        gap < NO_PREVIOUS_SECONDS, gap, NO_PREVIOUS_SECONDS
    )
    # Earlier visits of the customer to this terminal within the 30 days (the row itself out).
    # The grouped rolling output is in group order and indexed by ts: carry each row's
    # position through the window (its max is the row itself) to put the counts back.
    df["pos"] = np.arange(len(df), dtype=float)
    visits = (
        df.groupby(["customer_id", "terminal_id"], sort=False)
        .rolling(f"{LOOKBACK_DAYS}D", on="ts", closed="right")[["amount", "pos"]]
        .agg({"amount": "count", "pos": "max"})
    )
    counts = np.empty(len(df))
    counts[visits["pos"].to_numpy().astype(int)] = visits["amount"].to_numpy() - 1.0
    out["customer_terminal_tx_count_30d"] = counts
    # Distinct terminals of the customer in the window (the row's own included).
    df["term_code"] = df["terminal_id"].astype("category").cat.codes.astype(float)
    distinct = by_customer.rolling(f"{LOOKBACK_DAYS}D", on="ts", closed="right")["term_code"]
    out["customer_distinct_terminals_30d"] = distinct.apply(
        lambda codes: len(np.unique(codes)), raw=True
    ).to_numpy()
    out = out[(out["ts"] >= lo) & (out["ts"] < hi)].copy()
    out["day"] = out["ts"].dt.floor("D")

    # Terminal transaction counts: daily counts per terminal, rolling sums over the w days
    # before each day (shifted by one day so day D sees D-w .. D-1).
    df["day"] = df["ts"].dt.floor("D")
    all_days = pd.date_range(df["day"].min(), hi - pd.Timedelta(days=1), freq="D")
    daily = df.groupby(["day", "terminal_id"]).size().unstack(fill_value=0)
    daily = daily.reindex(all_days, fill_value=0)
    range_days = all_days[all_days >= lo]
    snapshot = pd.DataFrame(
        index=pd.MultiIndex.from_product([range_days, daily.columns], names=["day", "terminal_id"])
    )
    for shift, suffix in ((0, ""), (MATURITY, MATURE)):
        for w in WINDOWS_DAYS:
            counts = daily.rolling(w, min_periods=1).sum().shift(1 + shift).fillna(0.0)
            snapshot[f"terminal_tx_count_{w}d{suffix}"] = counts.loc[range_days].stack().to_numpy()
    # The terminal's typical amount: the mean over the 30 days before the day.
    amounts = df.groupby(["day", "terminal_id"])["amount"].sum().unstack(fill_value=0.0)
    amounts = amounts.reindex(index=all_days, columns=daily.columns, fill_value=0.0)
    sums = amounts.rolling(30, min_periods=1).sum().shift(1).fillna(0.0)
    snapshot["terminal_amount_sum_30d"] = sums.loc[range_days].stack().to_numpy()

    # Known-fraud counts: for each as-of day D, the frauds of days D-w .. D-1 whose fraud
    # label was known before D 00:00 UTC.
    known = labels[labels["is_fraud"] == 1].groupby("transaction_id")["known_at"].min()
    frauds = df[["transaction_id", "terminal_id", "day"]].merge(
        known.rename("known_at"), left_on="transaction_id", right_index=True
    )
    per_day = []
    for day in range_days:
        known_by_day = frauds[frauds["known_at"] < day]
        columns = {}
        for shift, suffix in ((0, ""), (MATURITY, MATURE)):
            end = day - pd.Timedelta(days=shift)
            for w in WINDOWS_DAYS:
                inside = known_by_day[
                    (known_by_day["day"] < end)
                    & (known_by_day["day"] >= end - pd.Timedelta(days=w))
                ]
                columns[f"terminal_fraud_count_{w}d{suffix}"] = inside.value_counts("terminal_id")
        counts = pd.DataFrame(columns)
        counts["day"] = day
        per_day.append(counts)
    fraud_counts = (
        pd.concat(per_day)
        .rename_axis("terminal_id")
        .reset_index()
        .set_index(["day", "terminal_id"])
    )
    snapshot = snapshot.join(fraud_counts, how="left").fillna(0.0).reset_index()

    out = out.merge(snapshot, on=["day", "terminal_id"], how="left")
    counts = [f"{c}{suffix}" for suffix in ("", MATURE) for c in TERMINAL_COUNT_COLUMNS]
    out[counts] = out[counts].fillna(0.0)
    for suffix in ("", MATURE):
        for w in WINDOWS_DAYS:
            n_tx = out[f"terminal_tx_count_{w}d{suffix}"]
            out[f"terminal_risk_{w}d{suffix}"] = np.where(
                n_tx > 0,
                out[f"terminal_fraud_count_{w}d{suffix}"] / n_tx.where(n_tx > 0, 1.0),
                0.0,
            )
    n_30 = out["terminal_tx_count_30d"]
    out["terminal_amount_mean_30d"] = np.where(
        n_30 > 0, out["terminal_amount_sum_30d"].fillna(0.0) / n_30.where(n_30 > 0, 1.0), 0.0
    )
    mean = out["terminal_amount_mean_30d"]
    out["amount_to_terminal_mean_30d"] = np.where(
        mean > 0, out["amount"] / mean.where(mean > 0, 1.0), 1.0
    )
    return out.sort_values(["ts", "transaction_id"])[
        ["transaction_id", "ts", "customer_id", "terminal_id", *NUMERIC_FEATURES]
    ].reset_index(drop=True)


# ----------------------------------------------------------------------------- comparison


def compare(ours: pl.DataFrame, theirs: pl.DataFrame, history: pl.DataFrame) -> bool:
    """Per column: max abs difference and rows differing by more than TOLERANCE."""
    joined = ours.select("transaction_id", "customer_id", "ts", *NUMERIC_FEATURES).join(
        theirs.select("transaction_id", *NUMERIC_FEATURES),
        on="transaction_id",
        how="full",
        suffix="_pd",
        coalesce=True,
    )
    missing = joined.filter(pl.col("amount").is_null()).height
    missing_pd = joined.filter(pl.col("amount_pd").is_null()).height
    print(
        f"rows: ours {ours.height:,}, pandas {theirs.height:,}, "
        f"only in pandas {missing:,}, only in ours {missing_pd:,}"
    )
    diffs = joined.select(
        *((pl.col(c) - pl.col(f"{c}_pd")).abs().fill_nan(np.inf).alias(c) for c in NUMERIC_FEATURES)
    )
    worst = diffs.max().row(0, named=True)
    over = diffs.select((pl.col(c) > TOLERANCE).sum() for c in NUMERIC_FEATURES).row(0, named=True)
    print(f"{'column':36s} {'max |diff|':>12s} {'rows > 1e-6':>12s}")
    for c in NUMERIC_FEATURES:
        flag = "  (must be exact)" if c in EXACT_COLUMNS else ""
        print(f"{c:36s} {worst[c]:12.3g} {over[c]:12,d}{flag}")
    ok = missing == 0 and missing_pd == 0
    for c in NUMERIC_FEATURES:
        ok &= over[c] == 0
    if not ok:
        explain_customer_mismatches(joined, history)
    return ok


def explain_customer_mismatches(joined: pl.DataFrame, history: pl.DataFrame) -> None:
    """Customer count mismatches caused by a transaction of the same customer exactly at t - w.

    Ours orders transactions by key = microseconds * TIE_SLOTS + rank among same-instant
    ties, and a window is (key - w * TIE_SLOTS, key]: a transaction exactly at t - w with a
    higher tie rank than the current one falls *inside* that window, though the docstring
    says windows are (t - w, t]. pandas excludes everything at t - w.
    """
    spans = {f"{w}d": timedelta(days=w) for w in WINDOWS_DAYS}
    spans["1h"] = timedelta(seconds=VELOCITY_SECONDS)
    instants = history.select("customer_id", "ts").unique()
    for name, span in spans.items():
        col = f"customer_tx_count_{name}"
        bad = joined.filter(pl.col(col) != pl.col(f"{col}_pd"))
        if bad.height == 0:
            continue
        at_boundary = bad.with_columns(edge=pl.col("ts") - span).join(
            instants, left_on=["customer_id", "edge"], right_on=["customer_id", "ts"], how="semi"
        )
        extra = bad.select((pl.col(col) - pl.col(f"{col}_pd")).sum()).item()
        print(
            f"  {col}: {bad.height:,} rows differ (ours counts {extra:+,.0f} in total); "
            f"{at_boundary.height:,} of them have a same-customer transaction exactly at t - {name}"
        )


# ----------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--size", type=float, default=1.0)
    args = parser.parse_args()

    t = time.perf_counter()
    history, labels, start, end = simulate(args.size, args.days)
    in_range = history.filter(pl.col("ts").dt.date() >= start).height
    print(
        f"simulated {history.height:,} transactions ({in_range:,} in the {args.days}-day range "
        f"{start} .. {end}, plus {WARMUP_DAYS} warm-up days) and {labels.height:,} label events "
        f"in {time.perf_counter() - t:.1f} s; peak RSS {peak_rss_mb():,.0f} MB"
    )

    rss_before = current_rss_mb()
    t = time.perf_counter()
    ours = batch_features(history, labels, start, end)
    ours_s = time.perf_counter() - t
    ours_peak = peak_rss_mb()
    print(
        f"ours   (polars batch_features, one call): {ours.height:,} rows in {ours_s:.2f} s = "
        f"{ours.height / ours_s:,.0f} rows/s; RSS before {rss_before:,.0f} MB, "
        f"peak so far {ours_peak:,.0f} MB"
    )

    t = time.perf_counter()
    tx_pd, labels_pd = history.to_pandas(), labels.to_pandas()
    convert_s = time.perf_counter() - t
    rss_before_pd = current_rss_mb()
    t = time.perf_counter()
    theirs = pandas_features(tx_pd, labels_pd, start, end)
    pandas_s = time.perf_counter() - t
    pandas_peak = peak_rss_mb()
    print(
        f"pandas (rolling-window baseline):        {len(theirs):,} rows in {pandas_s:.2f} s = "
        f"{len(theirs) / pandas_s:,.0f} rows/s (+ {convert_s:.2f} s polars->pandas conversion, "
        f"not counted); RSS before {rss_before_pd:,.0f} MB, peak so far {pandas_peak:,.0f} MB"
    )

    print()
    ok = compare(ours, pl.from_pandas(theirs), history)
    print("verification:", "all columns match" if ok else "MISMATCHES (see above)")

    print()
    print(f"{'':24s} {'ours':>12s} {'pandas':>12s}")
    print(f"{'rows':24s} {ours.height:>12,d} {len(theirs):>12,d}")
    print(f"{'seconds':24s} {ours_s:>12.2f} {pandas_s:>12.2f}")
    print(f"{'rows/s':24s} {ours.height / ours_s:>12,.0f} {len(theirs) / pandas_s:>12,.0f}")
    print(f"{'peak RSS after (MB)':24s} {ours_peak:>12,.0f} {pandas_peak:>12,.0f}")
    speedup = pandas_s / ours_s
    print(f"speedup: {speedup:.1f}x (goal >= 20x, aim 50x)")


if __name__ == "__main__":
    main()
