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
import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

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
    """Integer codes 0 .. n-1 for an id column: sorting and grouping on them is far cheaper.

    A fresh set of categories per call: the global one would keep every id ever seen by a
    long-running process, and its codes would not start at 0.
    """
    import polars as pl

    return pl.col(col).cast(pl.Categorical(pl.Categories.random())).to_physical()


def _prepare(history: pl.DataFrame) -> pl.DataFrame:
    """History in (ts, transaction_id) order with integer codes for customers and terminals.

    Raw partitions arrive in that order already; checking is cheaper than sorting strings.
    """
    if "_cust" in history.columns:
        return history
    ts, tid = history["ts"], history["transaction_id"]
    ties = (ts == ts.shift()).arg_true()  # rows at the same instant as the one before
    if not (ts.is_sorted() and (tid.gather(ties) > tid.gather(ties - 1)).all()):
        history = history.sort("ts", "transaction_id")
    return history.with_columns(_cust=_codes("customer_id"), _term=_codes("terminal_id"))


def _between(history: pl.DataFrame, lo: datetime, hi: datetime) -> pl.DataFrame:
    """The rows with lo <= ts < hi of a history in ts order: a slice, nothing copied."""
    a, b = (history["ts"].search_sorted(bound, side="left") for bound in (lo, hi))
    return history.slice(a, b - a)


def _group_chunks(group: np.ndarray, stride: int) -> list[tuple[int, int]]:
    """(start, end) of chunks of rows sorted by `group`, cut between groups: about 2^14 rows
    each, so that a chunk's work stays in cache, and never so many groups that
    group * stride (+ a time below stride) overflows int64."""
    from itertools import pairwise

    import numpy as np

    cuts = np.concatenate([group[:: 1 << 14], np.arange(0, group[-1] + 1, max(1, 2**62 // stride))])
    edges = np.unique(np.append(np.searchsorted(group, cuts), len(group)))
    return list(pairwise(edges.tolist()))


def _window_max(
    values: np.ndarray, rows: np.ndarray, starts: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """max(values[s .. row]) for each of `rows`, for each array of window starts s.

    Sparse table: level k holds the max of the 2^k values from each row on, and a range of
    length L is covered by two (overlapping) blocks of level floor(log2(L)).
    """
    import numpy as np

    n = len(values)
    lengths = [rows - s + 1 for s in starts]
    longest = max((int(length.max()) for length in lengths if len(rows)), default=1)
    top = longest.bit_length() - 1
    table = np.empty((top + 1, n))
    table[0] = values
    for k in range(1, top + 1):
        half = 1 << (k - 1)
        np.maximum(table[k - 1, :-half], table[k - 1, half:], out=table[k, :-half])
        table[k, -half:] = table[k - 1, -half:]  # blocks running off the end: never read
    # Per length L (a small lookup table): where the level of L starts in the flat table,
    # and the offset of the second block, which ends at the row itself.
    level = np.zeros(longest + 1, dtype=np.int64)
    for k in range(1, top + 1):
        level[1 << k :] = k
    first_block = level * n
    second_block = first_block - (1 << level) + 1
    flat = table.ravel()
    return [
        np.maximum(flat[first_block[length] + s], flat[second_block[length] + rows])
        for s, length in zip(starts, lengths, strict=True)
    ]


def customer_features(history: pl.DataFrame, start: date, end: date | None = None) -> pl.DataFrame:
    """Customer window features for the transactions of days `start` .. `end` (inclusive).

    `history` holds the raw transactions from 30 days before `start` up to `end` (more is
    harmless); only rows inside the range come back, keyed by transaction_id, in (ts,
    transaction_id) order.

    In (customer, ts, transaction_id) order, the window (t - w, t] of a transaction is the run
    of rows from its customer's first one later than t - w up to its own row (ties at t with a
    lower transaction_id come before it; ties at t - w are out whatever their rank). Counts and
    sums are differences of running totals at the run's two ends (amounts in integer units:
    exact); maxima come from a sparse table.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import polars as pl

    lo, _ = _day_bounds(start)
    _, hi = _day_bounds(end or start)
    has_channel = "channel" in history.columns
    reach = _between(_prepare(history), lo - timedelta(days=HISTORY_DAYS), hi)
    in_range = _between(reach, lo, hi).select("transaction_id", pl.col("amount").cast(pl.Float64))
    cols = reach.select(
        "_cust",
        pl.col("amount").cast(pl.Float64),
        t=pl.col("ts").dt.epoch("us"),
        small=(pl.col("amount") < SMALL_AMOUNT)
        & ((pl.col("channel") == "online").fill_null(False) if has_channel else pl.lit(True)),
    )
    n, m = cols.height, in_range.height
    if n >= 1 << 32:
        raise ValueError("more than 2^32 transactions in one call")
    # Rows are in (ts, transaction_id) order, so sorting on (customer, row number) gives
    # (customer, ts, transaction_id) order: one plain sort of packed integers.
    packed = (cols["_cust"].to_numpy().astype(np.int64) << 32) | np.arange(n)
    packed.sort()
    order, cust = packed & 0xFFFFFFFF, packed >> 32
    t, amount, small = (cols[c].to_numpy() for c in ("t", "amount", "small"))
    # The rows of the range (the last m in ts order), by their places in customer order.
    asked = np.flatnonzero(order >= n - m)
    spans = [w * US_PER_DAY for w in WINDOWS_DAYS] + [VELOCITY_SECONDS * US_PER_SECOND]
    names = [f"{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("count", "units", "max")]
    out = {name: np.empty(m) for name in [*names, "count_1h", "small_1h"]}  # in `asked` order
    t0, stride = (int(t.min()), int(t.max() - t.min()) + max(spans) + 1) if n else (0, 1)

    def chunk(a: int, b: int) -> None:
        """Fill `out` for the asked rows among rows a..b-1 in customer order (whole customers)."""
        ra, rb = np.searchsorted(asked, [a, b])
        rows = asked[ra:rb] - a  # in the chunk
        source = order[a:b]
        key = (cust[a:b] - cust[a]) * stride + (t[source] - t0)
        values = amount[source]
        # Running totals with a leading 0: the sum over rows s..i is total[i + 1] - total[s].
        units = np.zeros(b - a + 1, dtype=np.int64)
        np.cumsum(np.rint(values * AMOUNT_SCALE).astype(np.int64), out=units[1:])  # half to even
        smalls = np.zeros(b - a + 1, dtype=np.int64)
        np.cumsum(small[source], out=smalls[1:])
        starts = [np.searchsorted(key, key[rows] - span, side="right") for span in spans]
        maxima = _window_max(values, rows, starts[: len(WINDOWS_DAYS)])
        for w, s, biggest in zip(WINDOWS_DAYS, starts, maxima, strict=False):
            out[f"count_{w}d"][ra:rb] = rows - s + 1
            out[f"units_{w}d"][ra:rb] = units[rows + 1] - units[s]
            out[f"max_{w}d"][ra:rb] = biggest
        s = starts[-1]
        out["count_1h"][ra:rb] = rows - s + 1
        out["small_1h"][ra:rb] = smalls[rows + 1] - smalls[s]

    if m:
        # numpy releases the GIL: two chunks at a time, one per core.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda ab: chunk(*ab), _group_chunks(cust, stride)))
    # Back to (ts, transaction_id) order.
    back = np.empty(m, dtype=np.int64)
    back[order[asked] - (n - m)] = np.arange(m)
    feats = pl.DataFrame({name: col[back] for name, col in out.items()})
    feats = feats.hstack(in_range.get_columns())
    # Means by Series arithmetic, not expressions: on a 1-row frame those divide by the scale
    # differently (in the last bit), and values must not depend on the number of rows.
    return (
        feats.with_columns(
            *(
                expr
                for w in WINDOWS_DAYS
                for expr in (
                    pl.col(f"count_{w}d").alias(f"customer_tx_count_{w}d"),
                    (feats[f"units_{w}d"] / feats[f"count_{w}d"] / AMOUNT_SCALE).alias(
                        f"customer_amount_mean_{w}d"
                    ),
                    pl.col(f"max_{w}d").alias(f"customer_amount_max_{w}d"),
                )
            ),
            customer_tx_count_1h="count_1h",
            customer_small_online_count_1h="small_1h",
        )
        .with_columns(
            amount_to_customer_mean_30d=pl.when(pl.col("customer_amount_mean_30d") > 0)
            .then(pl.col("amount") / pl.col("customer_amount_mean_30d"))
            .otherwise(1.0),
        )
        .select("transaction_id", *CUSTOMER_FEATURES)
    )


def _terminal_features(
    history: pl.DataFrame, labels: pl.DataFrame, keys: pl.DataFrame
) -> pl.DataFrame:
    """TERMINAL_FEATURES for each (terminal code `_term`, as-of `day`) row of `keys`, in order.

    For as-of day D and window w: the terminal's transactions on days D-w .. D-1, and those
    of them whose fraud label was known before D 00:00 UTC. Both are read off dense (day x
    terminal) tables cumulated over days: daily transaction counts (a window is a difference
    of two cells), and per window +1/-1 events for frauds, since a fraud on day d whose label
    became known on day k counts from day max(d, k)+1 to day d+w.
    """
    import numpy as np
    import polars as pl

    if keys.height == 0:
        return keys.with_columns(pl.lit(0.0).alias(c) for c in TERMINAL_FEATURES)
    first, last = keys["day"].min(), keys["day"].max()
    lo, _ = _day_bounds(first)
    hi, _ = _day_bounds(last)
    tx = (
        _between(history, lo - timedelta(days=HISTORY_DAYS), hi)
        .lazy()
        .select("transaction_id", "_term", day=pl.col("ts").dt.date())
    )
    known = (
        labels.lazy()
        .filter(pl.col("known_at") < hi, pl.col("is_fraud") == 1)
        .group_by("transaction_id")
        .agg(known=pl.col("known_at").min().dt.date())
    )
    tx, frauds = pl.collect_all([tx, tx.join(known, on="transaction_id", how="inner")])
    # Tables are (day, terminal), days counted from the first one the windows reach. Batch
    # keys come in day order, so reading them stays within one day's row at a time.
    day0 = (first - date(1970, 1, 1)).days - HISTORY_DAYS
    n_days = (last - first).days + HISTORY_DAYS + 2  # a spare day for events past `last`
    tx_term, fraud_term = tx["_term"].to_numpy(), frauds["_term"].to_numpy()
    key_term = keys["_term"].to_numpy()
    n_terms = int(max(key_term.max(), tx_term.max(initial=0))) + 1  # codes are 0 .. n-1

    def days(s: pl.Series) -> np.ndarray:
        return s.to_physical().to_numpy().astype(np.int64) - day0  # Date: days since 1970

    def table(day: np.ndarray, term: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Sum of `weights` in each (day, terminal) cell, cumulated over days; flat."""
        cell = np.minimum(day, n_days - 1) * n_terms + term
        counts = np.bincount(cell, weights=weights, minlength=n_days * n_terms)
        return counts.reshape(n_days, n_terms).cumsum(axis=0).ravel()

    key_cell = days(keys["day"]) * n_terms + key_term
    # Transactions before day D: the count of day d is cumulated from day d + 1 on.
    tx_before = table(days(tx["day"]) + 1, tx_term)
    fraud_day, known_day = days(frauds["day"]), days(frauds["known"])
    enter = np.maximum(fraud_day, known_day) + 1
    cols = {}
    for w in WINDOWS_DAYS:
        cols[f"terminal_tx_count_{w}d"] = tx_before[key_cell] - tx_before[key_cell - w * n_terms]
        leave = fraud_day + w + 1
        live = enter < leave
        events = np.concatenate([enter[live], leave[live]])
        signs = np.repeat([1.0, -1.0], live.sum())
        cols[f"terminal_fraud_count_{w}d"] = table(
            events, np.concatenate([fraud_term[live]] * 2), signs
        )[key_cell]
    return keys.with_columns(
        pl.DataFrame(cols).with_columns(pl.col(TERMINAL_COUNT_COLUMNS).cast(pl.Float64))
    ).with_columns(
        pl.when(pl.col(f"terminal_tx_count_{w}d") > 0)
        .then(pl.col(f"terminal_fraud_count_{w}d") / pl.col(f"terminal_tx_count_{w}d"))
        .otherwise(0.0)
        .alias(f"terminal_risk_{w}d")
        for w in WINDOWS_DAYS
    )


def terminal_snapshot(history: pl.DataFrame, labels: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Every terminal seen in the 30 days before `as_of`, with what a transaction on
    `as_of` sees of it (the online store is seeded from this)."""
    import polars as pl

    lo, _ = _day_bounds(as_of)
    history = _prepare(history)
    terminals = (
        _between(history, lo - timedelta(days=HISTORY_DAYS), lo)
        .select("terminal_id", "_term")
        .unique()
        .with_columns(day=pl.lit(as_of))
    )
    return (
        _terminal_features(history, labels, terminals)
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
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    lo, _ = _day_bounds(start)
    _, hi = _day_bounds(end or start)
    cats = available_categoricals(history.columns)
    history = _prepare(history)
    hour = pl.col("ts").dt.hour()
    frame = (
        _between(history, lo, hi)
        .lazy()
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
    # Both parts come back one row per row of `frame`, in its (ts, transaction_id) order. The
    # customer part is mostly single-threaded numpy (which releases the GIL): overlap them.
    with ThreadPoolExecutor(1) as pool:
        terminal = pool.submit(_terminal_features, history, labels, frame.select("_term", "day"))
        customer = customer_features(history, start, end)
        terminal = terminal.result()
    if not frame["transaction_id"].equals(customer["transaction_id"]):
        raise AssertionError("customer features out of row order")  # never silent
    frame = frame.hstack(terminal.select(TERMINAL_FEATURES).get_columns()).hstack(
        customer.select(CUSTOMER_FEATURES).get_columns()
    )
    return frame.select(*KEY_COLUMNS, *feature_columns(cats))


# --------------------------------------------------------------------------- online path


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts_to_us(ts: datetime) -> int:
    """Epoch microseconds of an aware datetime (naive ones are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


class CustomerHistory:
    """One customer's last 30 days: parallel lists ordered by key (time, then arrival).

    The lists are the state (what a store saves and a bundle seeds). ``_win`` is derived from
    them: prefix sums and a max stack that answer window queries in O(log n) instead of
    rescanning 30 days per transaction. ``add``/``prune``/``remove`` keep it in step; after
    any other change to the lists it is rebuilt when next used (a length that no longer
    matches shows it is stale; code that rewrites entries in place must call ``invalidate``).
    """

    __slots__ = ("_win", "amounts", "keys", "small", "units")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.amounts: list[float] = []
        self.units: list[int] = []
        self.small: list[int] = []
        self._win: _Windows | None = None

    def next_key(self, ts_us: int) -> int:
        """Key of a new transaction at ts_us: after every one already seen at that instant."""
        base = ts_us * TIE_SLOTS
        keys = self.keys
        if not keys or keys[-1] < base:  # the usual case: later than everything seen
            return base
        i = bisect.bisect_left(keys, base)
        j = bisect.bisect_left(keys, base + TIE_SLOTS)
        if j - i >= TIE_SLOTS - 1:
            raise ValueError(
                f"more than {TIE_SLOTS - 1} transactions of one customer at {ts_us} us"
            )
        return base + (j - i)

    def add(self, key: int, amount: float, small: int) -> None:
        keys = self.keys
        units = amount_units(amount)
        if not keys or keys[-1] < key:  # appended: the window index follows in O(1)
            win = self._current()
            keys.append(key)
            self.amounts.append(amount)
            self.units.append(units)
            self.small.append(small)
            if win is not None:
                win.push(key, amount, units, small)
            return
        i = bisect.bisect_right(keys, key)
        keys.insert(i, key)
        self.amounts.insert(i, amount)
        self.units.insert(i, units)
        self.small.insert(i, small)
        self._win = None  # a late arrival: rebuilt on next use

    def remove(self, key: int) -> None:
        i = self.keys.index(key)
        del self.keys[i], self.amounts[i], self.units[i], self.small[i]
        self._win = None

    def prune(self, now_us: int) -> None:
        """Forget what no window can reach any more."""
        cutoff = (now_us - HISTORY_DAYS * US_PER_DAY) * TIE_SLOTS
        keys = self.keys
        if not keys or keys[0] > cutoff:
            return
        win = self._current()
        i = bisect.bisect_right(keys, cutoff)
        del keys[:i], self.amounts[:i], self.units[:i], self.small[:i]
        if win is not None:
            win.drop(i, cutoff)

    def invalidate(self) -> None:
        self._win = None

    def _current(self) -> _Windows | None:
        """The window index if it matches the lists, else None (and forgotten)."""
        win = self._win
        if win is not None and len(win.cu) != len(self.keys) + 1:
            win = self._win = None
        return win

    def windows(self) -> _Windows:
        """The window index, (re)built if needed."""
        win = self._current()
        if win is None:
            win = self._win = _Windows(self)
        return win

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


class _Windows:
    """Window index of a ``CustomerHistory`` (derived state, never saved).

    - ``cu``/``cs``: prefix sums of units / small flags, ``cu[i]`` = sum of ``units[:i]`` (plus
      whatever was pruned before): a window's sum is a difference of two integers, exact.
    - ``mk``/``mv``: keys and amounts of the entries no later entry exceeds (values never
      increase along the stack). The first stack entry at or after position ``lo`` holds the
      max of ``amounts[lo:]`` and is the first entry with that value, the one a left-to-right
      ``max`` returns (it matters only for 0.0 vs -0.0). Valid for windows ending at the last
      entry; a window that ends earlier (a late arrival) is scanned instead.
    """

    __slots__ = ("cs", "cu", "mk", "mv")

    def __init__(self, history: CustomerHistory) -> None:
        keys = history.keys
        self.cu = list(itertools.accumulate(history.units, initial=0))
        self.cs = list(itertools.accumulate(history.small, initial=0))
        mk: list[int] = []
        mv: list[float] = []
        for key, amount in zip(keys, history.amounts, strict=True):
            while mv and mv[-1] < amount:
                mk.pop()
                mv.pop()
            mk.append(key)
            mv.append(amount)
        self.mk, self.mv = mk, mv

    def push(self, key: int, amount: float, units: int, small: int) -> None:
        self.cu.append(self.cu[-1] + units)
        self.cs.append(self.cs[-1] + small)
        mk, mv = self.mk, self.mv
        while mv and mv[-1] < amount:
            mk.pop()
            mv.pop()
        mk.append(key)
        mv.append(amount)

    def drop(self, count: int, cutoff: int) -> None:
        """The first ``count`` entries (keys <= cutoff) were pruned."""
        del self.cu[:count], self.cs[:count]
        j = bisect.bisect_right(self.mk, cutoff)
        del self.mk[:j], self.mv[:j]


def amount_units(amount: float) -> int:
    """Integer amount units; Python's round() is half-to-even, as is the batch path's."""
    return round(amount * AMOUNT_SCALE)


_DAY_SPANS = tuple(w * US_PER_DAY * TIE_SLOTS for w in WINDOWS_DAYS)  # in key units
_VELOCITY_SPAN = VELOCITY_SECONDS * US_PER_SECOND * TIE_SLOTS
_HISTORY_SPAN = HISTORY_DAYS * US_PER_DAY * TIE_SLOTS  # prune's reach, in key units
_MEAN_30D = 3 * WINDOWS_DAYS.index(30) + 1  # position of customer_amount_mean_30d
if list(_DAY_SPANS) != sorted(set(_DAY_SPANS)) or _DAY_SPANS[0] <= _VELOCITY_SPAN:
    raise RuntimeError("the online windows are nested: WINDOWS_DAYS must ascend, 1h first")
# online_columns unrolls the day windows (this fails at import if their number changes).
_SPAN_1D, _SPAN_7D, _SPAN_30D = _DAY_SPANS


def _customer_stats(history: CustomerHistory, key: int, amount: float) -> tuple[float, ...]:
    """CUSTOMER_FEATURES (in that order) of the entry ``key``, already in ``history``.

    A window (t - w, t] holds the entries strictly after t - w (whatever their tie rank) up to
    and including this transaction: positions [lo, hi). Counts from two bisects, sums from
    the prefix sums (exact integers), maxima from the max stack (or a scan of the window when
    later entries exist): O(log n) per window, however long the history.
    """
    keys = history.keys
    win = history.windows()
    hi = bisect.bisect_right(keys, key)
    top = (key // TIE_SLOTS) * TIE_SLOTS + TIE_SLOTS - 1  # last key of this instant
    cu, mk, mv = win.cu, win.mk, win.mv
    units_hi, at_end = cu[hi], hi == len(keys)
    out: list[float] = []
    for span in _DAY_SPANS:
        lo = bisect.bisect_right(keys, top - span, 0, hi - 1)
        count = float(hi - lo)
        biggest = mv[bisect.bisect_left(mk, keys[lo])] if at_end else max(history.amounts[lo:hi])
        out += (count, float(units_hi - cu[lo]) / count / AMOUNT_SCALE, biggest)
    lo = bisect.bisect_right(keys, top - _VELOCITY_SPAN, 0, hi - 1)
    return (
        *out,
        amount_to_mean(amount, out[_MEAN_30D]),
        float(hi - lo),
        float(win.cs[hi] - win.cs[lo]),
    )


def _customer_window_general(
    history: CustomerHistory, ts_us: int, amount: float, small: int
) -> tuple[float, ...]:
    """CUSTOMER_FEATURES of a transaction at ``ts_us``, which joins ``history`` (then pruned):
    any case (ties, late arrivals, a history without its index yet). ``online_vectors`` runs
    the common case in line and this for the rest."""
    key = history.next_key(ts_us)
    history.add(key, amount, small)
    stats = _customer_stats(history, key, amount)
    history.prune(ts_us)
    return stats


def time_features(ts_us: int) -> tuple[float, float, float]:
    """hour, is_weekend, is_night (TIME_FEATURES) of an instant in epoch microseconds (UTC).

    Integer arithmetic instead of a datetime: 1970-01-01 was a Thursday (weekday 3).
    """
    hour = ts_us // (3_600 * US_PER_SECOND) % 24
    weekday = (ts_us // US_PER_DAY + 3) % 7
    return float(hour), float(weekday >= 5), float(is_night(hour))


def terminal_values(snapshot: Mapping[str, float] | None) -> tuple[float, ...]:
    """TERMINAL_FEATURES of a terminal's snapshot, in order (zeros for an unknown terminal)."""
    snap = snapshot or {}
    return tuple(float(snap.get(name, 0.0)) for name in TERMINAL_FEATURES)


def online_vectors(
    txs: Sequence[Mapping[str, Any]],
    history_of: Callable[[str], CustomerHistory],
    terminal_of: Callable[[str], Sequence[float]],
    categoricals: Sequence[str],
) -> list[tuple[Any, ...]]:
    """``online_columns`` as one tuple per transaction (``feature_columns`` order)."""
    return list(zip(*online_columns(txs, history_of, terminal_of, categoricals), strict=True))


def online_columns(
    txs: Sequence[Mapping[str, Any]],
    history_of: Callable[[str], CustomerHistory],
    terminal_of: Callable[[str], Sequence[float]],
    categoricals: Sequence[str],
) -> list[Sequence[Any]]:
    """Online features of transactions applied one after the other, as columns (one list per
    feature, in ``feature_columns(categoricals)`` order); each transaction joins its
    customer's history.

    ``history_of(customer_id)``: the customer's (mutable) history; ``terminal_of(terminal_id)``:
    the terminal's ``terminal_values``. THE online implementation: ``online_vector`` (/score),
    ``online_features`` and the service's batches (``online_vectors``) all run this loop, so
    a batch applies its rows exactly as that many single calls would.

    It runs once per scored transaction, where a Python function call costs about as much as
    the arithmetic, so the common case is in line: ``ts_to_us``, ``is_small_online``,
    ``amount_to_mean`` and, for a transaction later than everything its customer did,
    ``add`` + ``_customer_stats`` + ``prune`` on the window index. Ties, late arrivals and a
    history without its index go through ``_customer_window_general``. The helpers stay the
    reference: tests hold both routes to the first (per-window) version. What does not depend
    on the order (time of day, terminal, categoricals) is computed column by column after the
    loop.
    """
    has_channel = "channel" in categoricals
    right, left = bisect.bisect_right, bisect.bisect_left
    amounts: list[float] = []
    stamps: list[int] = []
    stats: list[tuple[float, ...]] = []
    for tx in txs:
        amount = float(tx["amount"])
        ts = tx["ts"]
        if ts.tzinfo is None:  # = ts_to_us(ts)
            ts = ts.replace(tzinfo=UTC)
        delta = ts - _EPOCH
        ts_us = (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds
        # = is_small_online(amount, channel, has_channel)
        small = int(amount < SMALL_AMOUNT and (not has_channel or tx.get("channel") == "online"))
        history = history_of(tx["customer_id"])
        keys, key, win = history.keys, ts_us * TIE_SLOTS, history._win
        own = len(keys)  # the new entry's position if it goes last
        if win is None or len(win.cu) != own + 1 or (own and keys[-1] >= key):
            customer = _customer_window_general(history, ts_us, amount, small)
        else:  # appended at the end, index in step: add + push
            units = round(amount * AMOUNT_SCALE)  # = amount_units(amount)
            past_amounts, past_units, past_small = history.amounts, history.units, history.small
            keys.append(key)
            past_amounts.append(amount)
            past_units.append(units)
            past_small.append(small)
            cu, cs, mk, mv = win.cu, win.cs, win.mk, win.mv
            cu.append(cu[-1] + units)
            cs.append(cs[-1] + small)
            while mv and mv[-1] < amount:
                mk.pop()
                mv.pop()
            mk.append(key)
            mv.append(amount)
            end = own + 1
            # _customer_stats for the last entry, windows unrolled (nested: each bisect
            # searches below the previous window's start)
            top = key + TIE_SLOTS - 1
            lo_h = right(keys, top - _VELOCITY_SPAN, 0, own)
            lo_1 = right(keys, top - _SPAN_1D, 0, lo_h)
            lo_7 = right(keys, top - _SPAN_7D, 0, lo_1)
            lo_30 = right(keys, top - _SPAN_30D, 0, lo_7)
            units_hi = cu[end]
            n_1, n_7, n_30 = float(end - lo_1), float(end - lo_7), float(end - lo_30)
            mean_30 = float(units_hi - cu[lo_30]) / n_30 / AMOUNT_SCALE
            customer = (
                n_1,
                float(units_hi - cu[lo_1]) / n_1 / AMOUNT_SCALE,
                mv[left(mk, keys[lo_1])],
                n_7,
                float(units_hi - cu[lo_7]) / n_7 / AMOUNT_SCALE,
                mv[left(mk, keys[lo_7])],
                n_30,
                mean_30,
                mv[left(mk, keys[lo_30])],
                amount / mean_30 if mean_30 > 0 else 1.0,  # = amount_to_mean
                float(end - lo_h),
                float(cs[end] - cs[lo_h]),
            )
            cutoff = key - _HISTORY_SPAN
            if keys[0] <= cutoff:  # = prune, index included
                i = right(keys, cutoff)
                del keys[:i], past_amounts[:i], past_units[:i], past_small[:i], cu[:i], cs[:i]
                j = right(mk, cutoff)
                del mk[:j], mv[:j]
        amounts.append(amount)
        stamps.append(ts_us)
        stats.append(customer)
    hours = [ts_us // 3_600_000_000 % 24 for ts_us in stamps]  # = time_features, by column
    n_customer, n_terminal = len(CUSTOMER_FEATURES), len(TERMINAL_FEATURES)
    return [
        amounts,
        [float(hour) for hour in hours],
        [float((ts_us // US_PER_DAY + 3) % 7 >= 5) for ts_us in stamps],
        [float(hour >= NIGHT_START_HOUR or hour < NIGHT_END_HOUR) for hour in hours],
        *(zip(*stats, strict=True) if stats else [()] * n_customer),
        *(
            zip(*map(terminal_of, [tx["terminal_id"] for tx in txs]), strict=True)
            if txs
            else [()] * n_terminal
        ),
        *(
            [UNKNOWN_CATEGORY if (v := tx.get(c)) is None else str(v) for tx in txs]
            for c in CATEGORICAL_COLUMNS  # column order, whatever order `categoricals` has
            if c in categoricals
        ),
    ]


def online_vector(
    tx: Mapping[str, Any],
    history: CustomerHistory,
    terminal: Sequence[float],
    categoricals: Sequence[str],
    *,
    update: bool = True,
) -> tuple[Any, ...]:
    """``online_features`` of one transaction as a tuple in ``feature_columns(categoricals)``
    order. ``terminal``: the terminal's ``terminal_values``.

    With ``update`` (the scoring path) this is ``online_vectors`` on one transaction; without,
    it computes what the transaction would see and leaves the history as it was.
    """
    if update:
        return online_vectors([tx], lambda _: history, lambda _: terminal, categoricals)[0]
    amount = float(tx["amount"])
    ts_us = ts_to_us(tx["ts"])
    small = is_small_online(amount, tx.get("channel"), "channel" in categoricals)
    key = history.next_key(ts_us)
    history.add(key, amount, small)
    customer = _customer_stats(history, key, amount)
    history.remove(key)
    cats = [
        UNKNOWN_CATEGORY if (v := tx.get(c)) is None else str(v)
        for c in CATEGORICAL_COLUMNS
        if c in categoricals
    ]
    return (amount, *time_features(ts_us), *customer, *terminal, *cats)


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
    Keys in the same column order as the batch path.
    """
    values = online_vector(tx, history, terminal_values(terminal), categoricals, update=update)
    return dict(zip(feature_columns(categoricals), values, strict=True))
