"""THE feature definitions, with a batch path (Polars) and an online path (plain Python).

Both paths implement the same definitions and are tested against each other; the serving
code imports only the online half (no Polars import happens unless a batch function runs).

Definitions, for a transaction at time t on day D (UTC):
- time: hour of day, weekend, night (22:00-06:00).
- customer windows over 1, 7 and 30 days *up to and including* the transaction: count, mean
  and max amount; the amount relative to the 30-day mean; a 1-hour velocity (count, and
  count of small online amounts, the signature of card testing). Transactions at the same
  instant are ordered by transaction_id, and a transaction never sees those after it.
- terminal risk over 1, 7 and 30 days: the terminal's transactions on days D-w .. D-1 and
  how many of them were *known* to be fraud by the end of day D-1 (labels arrive late).
  Known-ness at day granularity means one daily snapshot per terminal serves a whole day
  exactly, online and in batch.
- merchant category and channel as CatBoost categoricals, when the source has them.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

# join_asof with `by` cannot verify sortedness and warns at every collect; our inputs are
# sorted by day within each terminal by construction.
warnings.filterwarnings("ignore", message="Sortedness of columns cannot be checked")

FEATURE_CODE_VERSION = "features-v1"  # bump when a definition changes (also hashed in MLflow)
WINDOWS_DAYS = (1, 7, 30)
VELOCITY_SECONDS = 3_600
SMALL_AMOUNT = 5.0
NIGHT_START_HOUR, NIGHT_END_HOUR = 22, 6
CATEGORICAL_COLUMNS = ("merchant_category", "channel")
UNKNOWN_CATEGORY = "unknown"
KEY_COLUMNS = ("transaction_id", "ts", "customer_id", "terminal_id")

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
# Keys order transactions of one customer: time in microseconds, then arrival rank among
# transactions at the same microsecond (so ties never see each other out of order).
TIE_SLOTS = 1_024
HISTORY_DAYS = max(WINDOWS_DAYS)
# Window sums run on integer amount units (1e-4 of a currency unit): integer sums are exact,
# so a mean does not depend on how much history a computation happened to start from, and
# the batch and online paths agree bit for bit.
AMOUNT_SCALE = 10_000

TIME_FEATURES = ["hour", "is_weekend", "is_night"]
# Drift monitoring skips calendar features: a Saturday is all weekend by design, not drift.
DRIFT_FEATURES_EXCLUDED = tuple(TIME_FEATURES)
CUSTOMER_FEATURES = [
    f"customer_{stat}_{w}d"
    for w in WINDOWS_DAYS
    for stat in ("tx_count", "amount_mean", "amount_max")
] + ["amount_to_customer_mean_30d", "customer_tx_count_1h", "customer_small_online_count_1h"]
TERMINAL_COUNT_COLUMNS = [
    f"terminal_{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("tx_count", "fraud_count")
]
TERMINAL_FEATURES = [*TERMINAL_COUNT_COLUMNS, *(f"terminal_risk_{w}d" for w in WINDOWS_DAYS)]
NUMERIC_FEATURES = ["amount", *TIME_FEATURES, *CUSTOMER_FEATURES, *TERMINAL_FEATURES]


def feature_columns(categoricals: Sequence[str]) -> list[str]:
    """The model's input vector: numeric features, then the categoricals the source has."""
    return [*NUMERIC_FEATURES, *(c for c in CATEGORICAL_COLUMNS if c in categoricals)]


def available_categoricals(columns: Sequence[str]) -> list[str]:
    return [c for c in CATEGORICAL_COLUMNS if c in columns]


# ---------------------------------------------------------------- shared scalar definitions


def is_night(hour: int) -> int:
    return int(hour >= NIGHT_START_HOUR or hour < NIGHT_END_HOUR)


def is_small_online(amount: float, channel: str | None, has_channel: bool) -> int:
    """Card-testing probes: tiny amounts, online when the source knows the channel."""
    return int(amount < SMALL_AMOUNT and (not has_channel or channel == "online"))


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def amount_to_mean(amount: float, mean: float) -> float:
    return amount / mean if mean > 0 else 1.0


# ---------------------------------------------------------------------------- batch path


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _codes(col: str) -> pl.Expr:
    """Dense integer codes for an id column: sorting and grouping on them is far cheaper."""
    import polars as pl

    return pl.col(col).cast(pl.Categorical).to_physical()


def _prepare(history: pl.DataFrame) -> pl.DataFrame:
    """History in (ts, transaction_id) order with integer codes for customers and terminals.

    Raw partitions arrive in that order already; checking is cheaper than sorting strings.
    """
    import polars as pl

    if "_cust" in history.columns:
        return history
    in_order = (
        history.height < 2
        or history.select(
            (
                (pl.col("ts").diff() > 0)
                | (
                    (pl.col("ts").diff() == 0)
                    & (pl.col("transaction_id") > pl.col("transaction_id").shift())
                )
            )
            .slice(1)
            .all()
        ).item()
    )
    if not in_order:
        history = history.sort("ts", "transaction_id")
    return history.with_columns(
        _cust=_codes("customer_id"), _term=_codes("terminal_id")
    ).with_row_index("_row")


def customer_features(history: pl.DataFrame, start: date, end: date | None = None) -> pl.DataFrame:
    """Customer window features for the transactions of days `start` .. `end` (inclusive).

    `history` holds the raw transactions from 30 days before `start` up to `end` (more is
    harmless); only rows inside the range come back, keyed by transaction_id. One pass:

    window (t - w, t] = the strictly earlier transactions in the open window (t - w, t),
    computed by a rolling aggregation, plus the transactions at exactly t up to and
    including this one (its "tie prefix": same customer, same instant, lower or equal
    transaction_id).
    """
    import polars as pl

    lo, _ = _day_bounds(start)
    _, hi = _day_bounds(end or start)
    has_channel = "channel" in history.columns
    base = (
        _prepare(history)
        .lazy()
        .filter(pl.col("ts") >= lo - timedelta(days=HISTORY_DAYS), pl.col("ts") < hi)
        .select(
            "transaction_id",
            "ts",
            "amount",
            "_row",
            cust="_cust",
            units=(pl.col("amount") * AMOUNT_SCALE).round(0, mode="half_to_even").cast(pl.Int64),
            small=(
                (pl.col("amount") < SMALL_AMOUNT)
                & (
                    (pl.col("channel") == "online").fill_null(False)
                    if has_channel
                    else pl.lit(True)
                )
            ).cast(pl.Int64),
        )
        # Input is in (ts, transaction_id) order: a stable sort on the code alone suffices.
        .sort("cust", maintain_order=True)
        .with_row_index("row")
        .with_columns(
            new_run=(pl.col("cust") != pl.col("cust").shift(1)).fill_null(True)
            | (pl.col("ts") != pl.col("ts").shift(1)).fill_null(True)
        )
        .with_columns(
            run_start=pl.when("new_run").then(pl.col("row")).forward_fill(),
            cum_units=pl.col("units").cum_sum(),
            cum_small=pl.col("small").cum_sum(),
        )
        # Tie prefix by differences of global running sums (integers: exact).
        .with_columns(
            tie_count=(pl.col("row") - pl.col("run_start") + 1).cast(pl.Float64),
            tie_units=pl.col("cum_units")
            - pl.col("cum_units").gather(pl.col("run_start"))
            + pl.col("units").gather(pl.col("run_start")),
            tie_small=pl.col("cum_small")
            - pl.col("cum_small").gather(pl.col("run_start"))
            + pl.col("small").gather(pl.col("run_start")),
        )
        .collect()
    )
    # Running max within a tie group: only rows that share their instant need work.
    tied = base.filter(pl.col("run_start").is_duplicated()).select(
        "row", tie_max=pl.col("amount").cum_max().over("run_start")
    )
    base = base.with_columns(tie_max=pl.col("amount")).update(tied, on="row")

    def open_window(span: timedelta, aggs: list[pl.Expr]) -> pl.LazyFrame:
        return (
            base.lazy()
            .rolling(index_column="ts", period=span, closed="none", group_by="cust")
            .agg(aggs)
        )

    day_aggs = [
        pl.len().alias("n"),
        pl.col("units").sum().alias("u"),
        pl.col("amount").max().alias("m"),
    ]
    # The four rolling passes are independent: let Polars run them side by side.
    wins = pl.collect_all(
        [open_window(timedelta(days=w), day_aggs) for w in WINDOWS_DAYS]
        + [
            open_window(
                timedelta(seconds=VELOCITY_SECONDS),
                [pl.len().alias("n"), pl.col("small").sum().alias("s")],
            )
        ]
    )
    for win in wins:  # one output row per input row, in input order (sorted by cust, ts)
        if not (win["cust"].equals(base["cust"]) and win["ts"].equals(base["ts"])):
            raise AssertionError("rolling output order differs from its input")  # never silent
    cols: list[pl.Series] = []
    for w, win in zip(WINDOWS_DAYS, wins, strict=False):
        count = win["n"].cast(pl.Float64) + base["tie_count"]
        units = win["u"] + base["tie_units"]
        cols += [
            count.alias(f"customer_tx_count_{w}d"),
            (units.cast(pl.Float64) / count / AMOUNT_SCALE).alias(f"customer_amount_mean_{w}d"),
            pl.DataFrame({"a": win["m"], "b": base["tie_max"]})
            .select(pl.max_horizontal("a", "b"))
            .to_series()
            .alias(f"customer_amount_max_{w}d"),
        ]
    win = wins[-1]
    cols += [
        (win["n"].cast(pl.Float64) + base["tie_count"]).alias("customer_tx_count_1h"),
        (win["s"] + base["tie_small"]).cast(pl.Float64).alias("customer_small_online_count_1h"),
    ]
    out = base.select("transaction_id", "ts", "amount", "_row").with_columns(cols)
    return (
        out.filter(pl.col("ts") >= lo)
        .sort("_row")  # back to (ts, transaction_id) order
        .with_columns(
            amount_to_customer_mean_30d=pl.when(pl.col("customer_amount_mean_30d") > 0)
            .then(pl.col("amount") / pl.col("customer_amount_mean_30d"))
            .otherwise(1.0)
        )
        .select("transaction_id", *CUSTOMER_FEATURES)
    )


def _terminal_features(
    history: pl.DataFrame, labels: pl.DataFrame, keys: pl.DataFrame
) -> pl.DataFrame:
    """TERMINAL_FEATURES for each (terminal code `_term`, as-of `day`) row of `keys`.

    For as-of day D and window w: the terminal's transactions on days D-w .. D-1 (a rolling
    sum over its daily counts) and those of them whose fraud label was known before D 00:00
    UTC. A fraud on day d whose label became known on day k counts from day max(d, k)+1 to
    day d+w (difference events, cumulated per terminal: frauds are few).
    """
    import polars as pl

    first, last = keys["day"].min(), keys["day"].max()
    lo, _ = _day_bounds(first)
    hi, _ = _day_bounds(last)
    tx = (
        history.lazy()
        .filter(pl.col("ts") >= lo - timedelta(days=HISTORY_DAYS), pl.col("ts") < hi)
        .select("transaction_id", "_term", d=pl.col("ts").dt.date())
    )
    daily = tx.group_by("_term", "d").agg(n=pl.len().cast(pl.Float64)).rename({"d": "day"})
    grid = (
        pl.concat([daily, keys.lazy().select("_term", "day", n=pl.lit(0.0))])
        .group_by("_term", "day")
        .agg(pl.col("n").sum())
        .sort("_term", "day")
        .with_columns(
            pl.col("n")
            .rolling_sum_by("day", f"{w}d", closed="left")
            .over("_term")
            .fill_null(0.0)
            .alias(f"terminal_tx_count_{w}d")
            for w in WINDOWS_DAYS
        )
    )
    known = (
        labels.lazy()
        .filter(pl.col("known_at") < hi, pl.col("is_fraud") == 1)
        .group_by("transaction_id")
        .agg(k=pl.col("known_at").min().dt.date())
    )
    frauds = tx.join(known, on="transaction_id", how="inner").select(
        "_term", "d", enter=pl.max_horizontal("d", "k") + timedelta(days=1)
    )
    events = []
    for w in WINDOWS_DAYS:
        leave = pl.col("d") + timedelta(days=w + 1)
        live = frauds.filter(pl.col("enter") < leave)
        other = {f"fr_{v}": pl.lit(0.0) for v in WINDOWS_DAYS if v != w}
        events += [
            live.select("_term", day=pl.col("enter"), **{f"fr_{w}": pl.lit(1.0)}, **other),
            live.select("_term", day=leave, **{f"fr_{w}": pl.lit(-1.0)}, **other),
        ]
    fr_cols = [f"fr_{w}" for w in WINDOWS_DAYS]
    fraud_counts = (
        pl.concat(events, how="diagonal")
        .group_by("_term", "day")
        .agg(pl.col(fr_cols).sum())
        .sort("_term", "day")
        .select(
            "_term",
            "day",
            *(
                pl.col(f"fr_{w}").cum_sum().over("_term").alias(f"terminal_fraud_count_{w}d")
                for w in WINDOWS_DAYS
            ),
        )
    )
    # Only terminals that ever had a known fraud need the as-of lookup.
    fraud_at = (
        keys.lazy()
        .join(frauds.select("_term").unique(), on="_term", how="semi")
        .sort("day")
        .join_asof(fraud_counts.sort("day"), on="day", by="_term", strategy="backward")
    )
    return (
        keys.lazy()
        .join(grid.drop("n"), on=["_term", "day"], how="left")
        .join(fraud_at, on=["_term", "day"], how="left")
        .with_columns(pl.col(TERMINAL_COUNT_COLUMNS).fill_null(0.0))
        .with_columns(
            pl.when(pl.col(f"terminal_tx_count_{w}d") > 0)
            .then(pl.col(f"terminal_fraud_count_{w}d") / pl.col(f"terminal_tx_count_{w}d"))
            .otherwise(0.0)
            .alias(f"terminal_risk_{w}d")
            for w in WINDOWS_DAYS
        )
        .collect()
    )


def terminal_snapshot(history: pl.DataFrame, labels: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Every terminal seen in the 30 days before `as_of`, with what a transaction on
    `as_of` sees of it (the online store is seeded from this)."""
    import polars as pl

    lo, _ = _day_bounds(as_of)
    history = _prepare(history)
    terminals = (
        history.filter(pl.col("ts") >= lo - timedelta(days=HISTORY_DAYS), pl.col("ts") < lo)
        .select("terminal_id", "_term")
        .unique()
        .with_columns(day=pl.lit(as_of))
    )
    return (
        _terminal_features(history, labels, terminals.select("_term", "day"))
        .join(terminals.select("_term", "terminal_id"), on="_term")
        .select("terminal_id", *TERMINAL_FEATURES)
        .sort("terminal_id")
    )


def batch_features(
    history: pl.DataFrame, labels: pl.DataFrame, start: date, end: date | None = None
) -> pl.DataFrame:
    """Feature rows for every transaction of days `start` .. `end` (keys + features).

    `history`: raw transactions from 30 days before `start` to `end`; `labels`: label events
    (those known later than each day are ignored for that day).
    """
    import polars as pl

    lo, _ = _day_bounds(start)
    _, hi = _day_bounds(end or start)
    cats = available_categoricals(history.columns)
    history = _prepare(history)
    hour = pl.col("ts").dt.hour()
    frame = (
        history.lazy()
        .filter(pl.col("ts") >= lo, pl.col("ts") < hi)
        .select(
            *KEY_COLUMNS,
            pl.col("amount").cast(pl.Float64),
            hour.cast(pl.Float64).alias("hour"),
            (pl.col("ts").dt.weekday() >= 6).cast(pl.Float64).alias("is_weekend"),
            ((hour >= NIGHT_START_HOUR) | (hour < NIGHT_END_HOUR))
            .cast(pl.Float64)
            .alias("is_night"),
            *(pl.col(c).fill_null(UNKNOWN_CATEGORY).cast(pl.String) for c in cats),
            "_term",
            day=pl.col("ts").dt.date(),
        )
        .collect()
    )
    # Each part is materialised once: one lazy plan would recompute shared inputs.
    terminal = _terminal_features(history, labels, frame.select("_term", "day").unique())
    customer = customer_features(history, start, end)
    # `frame` and `customer` hold the same rows in the same (ts, transaction_id) order.
    if not frame["transaction_id"].equals(customer["transaction_id"]):
        raise AssertionError("customer features out of row order")  # never silent
    frame = frame.join(terminal, on=["_term", "day"], how="left", maintain_order="left").hstack(
        customer.select(CUSTOMER_FEATURES).get_columns()
    )
    return frame.select(*KEY_COLUMNS, *feature_columns(cats))


# --------------------------------------------------------------------------- online path


def ts_to_us(ts: datetime) -> int:
    """Epoch microseconds of an aware datetime (naive ones are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


class CustomerHistory:
    """One customer's last 30 days: parallel lists ordered by key (time, then arrival)."""

    __slots__ = ("amounts", "keys", "small", "units")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.amounts: list[float] = []
        self.units: list[int] = []
        self.small: list[int] = []

    def next_key(self, ts_us: int) -> int:
        """Key of a new transaction at ts_us: after every one already seen at that instant."""
        base = ts_us * TIE_SLOTS
        i = bisect.bisect_left(self.keys, base)
        j = bisect.bisect_left(self.keys, base + TIE_SLOTS)
        if j - i >= TIE_SLOTS - 1:
            raise ValueError(
                f"more than {TIE_SLOTS - 1} transactions of one customer at {ts_us} us"
            )
        return base + (j - i)

    def add(self, key: int, amount: float, small: int) -> None:
        i = bisect.bisect_right(self.keys, key)
        self.keys.insert(i, key)
        self.amounts.insert(i, amount)
        self.units.insert(i, amount_units(amount))
        self.small.insert(i, small)

    def prune(self, now_us: int) -> None:
        """Forget what no window can reach any more."""
        cutoff = (now_us - HISTORY_DAYS * US_PER_DAY) * TIE_SLOTS
        i = bisect.bisect_right(self.keys, cutoff)
        if i:
            del self.keys[:i], self.amounts[:i], self.units[:i], self.small[:i]

    def to_rows(self) -> list[tuple[int, float, int]]:
        return list(zip(self.keys, self.amounts, self.small, strict=True))

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> CustomerHistory:
        h = cls()
        for key, amount, small in sorted(rows):
            h.keys.append(int(key))
            h.amounts.append(float(amount))
            h.units.append(amount_units(float(amount)))
            h.small.append(int(small))
        return h


def amount_units(amount: float) -> int:
    """Integer amount units; Python's round() is half-to-even, as is the batch path's."""
    return round(amount * AMOUNT_SCALE)


def _window_stats(history: CustomerHistory, key: int, span: int) -> tuple[float, float, float, int]:
    """count, mean, max and small-count over entries with key in (key - span, key]."""
    keys = history.keys
    # Entries strictly after t - w (whatever their tie rank), up to this transaction.
    lo = bisect.bisect_right(keys, (key // TIE_SLOTS) * TIE_SLOTS - span + TIE_SLOTS - 1)
    hi = bisect.bisect_right(keys, key)
    if hi <= lo:
        return 0.0, 0.0, 0.0, 0
    count = float(hi - lo)
    mean = float(sum(history.units[lo:hi])) / count / AMOUNT_SCALE
    return count, mean, max(history.amounts[lo:hi]), sum(history.small[lo:hi])


def online_features(
    tx: Mapping[str, Any],
    history: CustomerHistory,
    terminal: Mapping[str, float] | None,
    categoricals: Sequence[str],
    *,
    update: bool = True,
) -> dict[str, Any]:
    """Features of one transaction, from its customer's history and its terminal's snapshot.

    With `update`, the transaction joins the history (so later ones in the day see it).
    `tx` has ts (aware datetime), customer_id, terminal_id, amount and the categoricals.
    """
    ts: datetime = tx["ts"]
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ts = ts.astimezone(UTC)
    amount = float(tx["amount"])
    small = is_small_online(amount, tx.get("channel"), "channel" in categoricals)
    ts_us = ts_to_us(ts)
    key = history.next_key(ts_us)
    history.add(key, amount, small)
    out: dict[str, Any] = {
        "amount": amount,
        "hour": float(ts.hour),
        "is_weekend": float(ts.weekday() >= 5),
        "is_night": float(is_night(ts.hour)),
    }
    for w in WINDOWS_DAYS:
        count, mean, biggest, _ = _window_stats(history, key, w * US_PER_DAY * TIE_SLOTS)
        out[f"customer_tx_count_{w}d"] = count
        out[f"customer_amount_mean_{w}d"] = mean
        out[f"customer_amount_max_{w}d"] = biggest
    out["amount_to_customer_mean_30d"] = amount_to_mean(amount, out["customer_amount_mean_30d"])
    count, _, _, small_count = _window_stats(
        history, key, VELOCITY_SECONDS * US_PER_SECOND * TIE_SLOTS
    )
    out["customer_tx_count_1h"] = count
    out["customer_small_online_count_1h"] = float(small_count)
    snap = terminal or {}
    for name in TERMINAL_FEATURES:
        out[name] = float(snap.get(name, 0.0))
    for c in categoricals:
        value = tx.get(c)
        out[c] = UNKNOWN_CATEGORY if value is None else str(value)
    if not update:
        i = history.keys.index(key)
        del history.keys[i], history.amounts[i], history.units[i], history.small[i]
    else:
        history.prune(ts_us)
    # Same column order as the batch path.
    return {name: out[name] for name in feature_columns(categoricals)}
