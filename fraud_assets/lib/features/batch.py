"""The batch path: feature rows for day ranges of raw transactions, with Polars and numpy.

The only module of ``fraud_assets.lib.features`` that imports them (the online path and the
scoring service never load this one). The definitions are in ``definitions``; a parity test
holds this path equal to the online one.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import numpy as np
import polars as pl

from fraud_assets.lib.features.definitions import (
    AMOUNT_SCALE,
    CUSTOMER_DISTINCT_TERMINALS,
    CUSTOMER_FEATURES,
    CUSTOMER_TERMINAL_VISITS,
    DEFAULT_MATURITY_DAYS,
    FEATURE_ROW_KEYS,
    LOG_AMOUNT_SCALE,
    LOOKBACK_DAYS,
    MATURE,
    MIN_LOG_SPREAD,
    NIGHT_HOURS,
    NO_PREVIOUS_SECONDS,
    SMALL_AMOUNT,
    TERMINAL_FEATURES,
    UNKNOWN_CATEGORY,
    US_PER_DAY,
    US_PER_SECOND,
    VELOCITY_SECONDS,
    WINDOWS_DAYS,
    available_categoricals,
    feature_columns,
    log_amount_units,
    terminal_lookback_days,
)
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.labels import fraud_spans
from fraud_assets.lib.store_seed import histories_from_transactions


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _codes(col: str) -> pl.Expr:
    """Integer codes 0 .. n-1 for an id column: sorting and grouping on them is far cheaper.

    A fresh set of categories per call: the global one would keep every id ever seen by a
    long-running process, and its codes would not start at 0.
    """
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


def _prior_zscores(
    own: np.ndarray, n: np.ndarray, sums: np.ndarray, squares: np.ndarray
) -> np.ndarray:
    """``definitions.prior_zscore`` over arrays: the same float operations in the same order
    (so the same bits), 0 where fewer than two earlier entries exist."""
    enough = n >= 2
    safe_n = np.where(enough, n, 1)
    mean = sums / safe_n
    var = squares / safe_n - mean * mean
    spread = np.sqrt(np.where(var > 0, var, 0.0))
    z = (own - mean) / np.maximum(spread, MIN_LOG_SPREAD * LOG_AMOUNT_SCALE)
    return np.where(enough, z, 0.0)


# What customer_features computes: every customer feature but the terminal ones.
NEVER = date(9999, 1, 1)  # the withdrawal day of a fraud label still in force
WINDOW_FEATURES = [
    f for f in CUSTOMER_FEATURES if f not in (CUSTOMER_TERMINAL_VISITS, CUSTOMER_DISTINCT_TERMINALS)
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
    exact); maxima come from a sparse table. The customer's prior normal is the same run minus
    the row itself: sums of log-amount units and of their squares (exact integers).
    """

    lo, _ = _day_bounds(start)
    _, hi = _day_bounds(end or start)
    has_channel = "channel" in history.columns
    reach = _between(_prepare(history), lo - timedelta(days=LOOKBACK_DAYS), hi)
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
    # log units through math.log1p, per distinct amount: the online path's exact values.
    distinct, which = np.unique(amount, return_inverse=True)
    log_units = np.array([log_amount_units(a) for a in distinct.tolist()], dtype=np.int64)[which]
    # The rows of the range (the last m in ts order), by their places in customer order.
    asked = np.flatnonzero(order >= n - m)
    spans = [w * US_PER_DAY for w in WINDOWS_DAYS] + [VELOCITY_SECONDS * US_PER_SECOND]
    names = [f"{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("count", "units", "max")]
    extra = ["count_1h", "small_1h", "prior_zscore", "since_previous"]
    out = {name: np.empty(m) for name in [*names, *extra]}  # in `asked` order
    longest = WINDOWS_DAYS.index(LOOKBACK_DAYS)
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
        # The prior normal: rows s..i-1 of the longest window (the row itself left out).
        logs = log_units[source]
        log_sum = np.zeros(b - a + 1, dtype=np.int64)
        np.cumsum(logs, out=log_sum[1:])
        log_squares = np.zeros(b - a + 1, dtype=np.int64)
        np.cumsum(logs * logs, out=log_squares[1:])
        s = starts[longest]
        prior = rows - s
        out["prior_zscore"][ra:rb] = _prior_zscores(
            logs[rows], prior, log_sum[rows] - log_sum[s], log_squares[rows] - log_squares[s]
        )
        previous = np.where(prior > 0, rows - 1, rows)
        gap = (t[source[rows]] - t[source[previous]]) / US_PER_SECOND
        out["since_previous"][ra:rb] = np.where(prior > 0, gap, NO_PREVIOUS_SECONDS)

    if m:
        # numpy releases the GIL: two chunks at a time, one per core.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda ab: chunk(*ab), _group_chunks(cust, stride)))
    # Back to (ts, transaction_id) order.
    back = np.empty(m, dtype=np.int64)
    back[order[asked] - (n - m)] = np.arange(m)
    # Polars gathers the columns in parallel (a random-order gather is memory-bound).
    feats = pl.DataFrame(out).select(pl.all().gather(back))
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
            amount_zscore_to_customer_prior_30d="prior_zscore",
            customer_seconds_since_previous="since_previous",
        )
        .with_columns(
            amount_to_customer_mean_30d=pl.when(pl.col("customer_amount_mean_30d") > 0)
            .then(pl.col("amount") / pl.col("customer_amount_mean_30d"))
            .otherwise(1.0),
        )
        .select("transaction_id", *WINDOW_FEATURES)
    )


def _customer_terminal_features(
    history: pl.DataFrame, start: date, end: date | None
) -> tuple[np.ndarray, np.ndarray]:
    """(customer_terminal_tx_count_30d, customer_distinct_terminals_30d) of the transactions
    of days `start` .. `end`, in (ts, transaction_id) order, over the window (t - 30 days, t]
    (ties at t with a lower transaction_id are earlier; the transaction itself counts among
    the distinct terminals, not among the earlier visits).

    Visits: one stable sort by (customer, terminal) pair (rows stay in time order within it),
    then a binary search for each window's start within its pair's run. Distinct terminals,
    in customer order with window starts s_i: a row j is a repeat inside row i's window when
    its pair's previous row p(j) is at or after s_i; since s_i never decreases, that holds for
    i from j up to the last row whose window starts at or before p(j). So each repeat adds 1
    over one interval of rows (a difference array), and distinct = window rows - repeats.
    """
    lo, _ = _day_bounds(start)
    _, hi = _day_bounds(end or start)
    reach = _between(_prepare(history), lo - timedelta(days=LOOKBACK_DAYS), hi)
    n, m = reach.height, _between(reach, lo, hi).height
    if m == 0:
        return np.zeros(0), np.zeros(0)
    cust = reach["_cust"].to_numpy().astype(np.int64)
    term = reach["_term"].to_numpy().astype(np.int64)
    t = reach["ts"].dt.epoch("us").to_numpy()
    span = LOOKBACK_DAYS * US_PER_DAY
    t0 = int(t.min())
    stride = int(t.max()) - t0 + span + 1

    def window_starts(group: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Index of each row's window start, rows sorted by (group, time)."""
        starts = np.empty(len(group), dtype=np.int64)
        for a, b in _group_chunks(group, stride):
            key = (group[a:b] - group[a]) * stride + (times[a:b] - t0)
            starts[a:b] = a + np.searchsorted(key, key - span, side="right")
        return starts

    pair = cust * (int(term.max()) + 1) + term

    def stable_order(values: np.ndarray) -> np.ndarray:
        """np.argsort(kind="stable"), by Polars' parallel sort (about 3x faster here)."""
        frame = pl.DataFrame({"v": values})
        return frame.select(pl.arg_sort_by("v", maintain_order=True)).to_series().to_numpy()

    by_pair = stable_order(pair)  # rows by pair, then in (ts, id) order
    pair_sorted = pair[by_pair]
    visits = np.empty(n)
    visits[by_pair] = np.arange(n) - window_starts(pair_sorted, t[by_pair])

    by_customer = stable_order(cust)
    position = np.empty(n, dtype=np.int64)  # each row's place in customer order
    position[by_customer] = np.arange(n)
    s = window_starts(cust[by_customer], t[by_customer])
    previous = np.full(n, -1, dtype=np.int64)  # the pair's previous row, customer order
    repeat = pair_sorted[1:] == pair_sorted[:-1]
    previous[position[by_pair[1:][repeat]]] = position[by_pair[:-1][repeat]]
    rows = np.arange(n)
    last = np.searchsorted(s, previous, side="right") - 1
    counted = (previous >= 0) & (last >= rows)
    repeats = np.cumsum(
        np.bincount(rows[counted], minlength=n + 1)
        - np.bincount(last[counted] + 1, minlength=n + 1)
    )[:n]
    distinct = np.empty(n)
    distinct[by_customer] = (rows - s + 1) - repeats
    return visits[n - m :], distinct[n - m :]


def _terminal_features(
    history: pl.DataFrame, labels: pl.DataFrame, keys: pl.DataFrame, maturity_days: int
) -> pl.DataFrame:
    """TERMINAL_FEATURES for each (terminal code `_term`, as-of `day`) row of `keys`, in order.

    For as-of day D, window w and shift s (0 for "known so far", ``maturity_days`` for the
    mature windows): the terminal's transactions on days D-s-w .. D-s-1, and those of them
    whose fraud label was known before D 00:00 UTC. Both are read off dense (day x terminal)
    tables cumulated over days: daily transaction counts (a window is a difference of two
    cells), and per window +1/-1 events for frauds, since a fraud on day d whose label became
    known on day k (and was withdrawn on day u, if it was) counts from day max(d+s, k)+1 to
    day min(d+s+w, u). A label re-asserted after a withdrawal is another such period.
    """
    if keys.height == 0:
        return keys.with_columns(pl.lit(0.0).alias(c) for c in TERMINAL_FEATURES)
    first, last = keys["day"].min(), keys["day"].max()
    lo, _ = _day_bounds(first)
    hi, _ = _day_bounds(last)
    reach = terminal_lookback_days(maturity_days)
    tx = (
        _between(history, lo - timedelta(days=reach), hi)
        .lazy()
        .select(
            "transaction_id",
            "_term",
            day=pl.col("ts").dt.date(),
            units=(pl.col("amount").cast(pl.Float64) * AMOUNT_SCALE),
        )
    )
    # Periods during which a fraud label was in force (a correction can withdraw one).
    known = (
        fraud_spans(labels.filter(pl.col("known_at") < hi))
        .lazy()
        .select(
            "transaction_id",
            known=pl.col("known_at").dt.date(),
            until=pl.col("until").dt.date().fill_null(NEVER),
        )
    )
    tx, frauds = pl.collect_all([tx, tx.join(known, on="transaction_id", how="inner")])
    # Tables are (day, terminal), days counted from the first one the windows reach. Batch
    # keys come in day order, so reading them stays within one day's row at a time.
    day0 = (first - date(1970, 1, 1)).days - reach
    n_days = (last - first).days + reach + 2  # a spare day for events past `last`
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
    # Integer amount units (half to even, as the customer windows): float64 sums of integers
    # are exact, so the mean does not depend on the rows' order.
    units_before = table(days(tx["day"]) + 1, tx_term, np.rint(tx["units"].to_numpy()))
    fraud_day, known_day = days(frauds["day"]), days(frauds["known"])
    withdrawn_day = days(frauds["until"])
    cols = {}
    for shift, suffix in ((0, ""), (maturity_days, MATURE)):
        enter = np.maximum(fraud_day + shift, known_day) + 1
        end = key_cell - shift * n_terms  # transactions before day D - shift
        for w in WINDOWS_DAYS:
            count = tx_before[end] - tx_before[end - w * n_terms]
            leave = np.minimum(fraud_day + shift + w, withdrawn_day) + 1
            live = enter < leave
            events = np.concatenate([enter[live], leave[live]])
            signs = np.repeat([1.0, -1.0], live.sum())
            frauds_known = table(events, np.concatenate([fraud_term[live]] * 2), signs)[key_cell]
            cols[f"terminal_tx_count_{w}d{suffix}"] = count.astype(np.float64)
            cols[f"terminal_fraud_count_{w}d{suffix}"] = frauds_known.astype(np.float64)
            # Series division, as the online snapshot is read: values never depend on rows.
            cols[f"terminal_risk_{w}d{suffix}"] = np.divide(
                frauds_known, count, out=np.zeros(len(count)), where=count > 0
            )
    units = units_before[key_cell] - units_before[key_cell - LOOKBACK_DAYS * n_terms]
    count = cols[f"terminal_tx_count_{LOOKBACK_DAYS}d"]
    cols["terminal_amount_mean_30d"] = (
        np.divide(units, count, out=np.zeros(len(count)), where=count > 0) / AMOUNT_SCALE
    )
    return keys.with_columns(pl.DataFrame(cols).select(TERMINAL_FEATURES))


def terminal_snapshot(
    history: pl.DataFrame,
    labels: pl.DataFrame,
    as_of: date,
    maturity_days: int = DEFAULT_MATURITY_DAYS,
) -> pl.DataFrame:
    """Every terminal seen in the days the terminal windows reach before `as_of`, with what a
    transaction on `as_of` sees of it (the online store is seeded from this)."""
    lo, _ = _day_bounds(as_of)
    history = _prepare(history)
    terminals = (
        _between(history, lo - timedelta(days=terminal_lookback_days(maturity_days)), lo)
        .select("terminal_id", "_term")
        .unique()
        .with_columns(day=pl.lit(as_of))
    )
    return (
        _terminal_features(history, labels, terminals, maturity_days)
        .select("terminal_id", *TERMINAL_FEATURES)
        .sort("terminal_id")
    )


def batch_features(
    history: pl.DataFrame,
    labels: pl.DataFrame,
    start: date,
    end: date | None = None,
    maturity_days: int = DEFAULT_MATURITY_DAYS,
) -> pl.DataFrame:
    """Feature rows for every transaction of days `start` .. `end` (keys + features).

    `history`: raw transactions from ``terminal_lookback_days(maturity_days)`` days before
    `start` to `end`; `labels`: label events (those known later than each day are ignored for
    that day).
    """

    lo, _ = _day_bounds(start)
    _, hi = _day_bounds(end or start)
    cats = available_categoricals(history.columns)
    history = _prepare(history)
    hour = pl.col("ts").dt.hour()
    frame = (
        _between(history, lo, hi)
        .lazy()
        .select(
            *FEATURE_ROW_KEYS,
            pl.col("amount").cast(pl.Float64),
            hour.cast(pl.Float64).alias("hour"),
            (pl.col("ts").dt.weekday() >= 6).cast(pl.Float64).alias("is_weekend"),
            hour.is_in(sorted(NIGHT_HOURS)).cast(pl.Float64).alias("is_night"),
            *(pl.col(c).fill_null(UNKNOWN_CATEGORY).cast(pl.String) for c in cats),
            "_term",
            day=pl.col("ts").dt.date(),
        )
        .collect()
    )
    # The three parts come back one row per row of `frame`, in its (ts, transaction_id) order.
    # They are mostly numpy and Polars (which release the GIL): run them side by side.
    with ThreadPoolExecutor(2) as pool:
        terminal = pool.submit(
            _terminal_features, history, labels, frame.select("_term", "day"), maturity_days
        )
        places = pool.submit(_customer_terminal_features, history, start, end)
        customer = customer_features(history, start, end)
        terminal, (visits, distinct) = terminal.result(), places.result()
    if not frame["transaction_id"].equals(customer["transaction_id"]):
        raise AssertionError("customer features out of row order")  # never silent
    frame = (
        frame.hstack(terminal.select(TERMINAL_FEATURES).get_columns())
        .hstack(customer.select(WINDOW_FEATURES).get_columns())
        .with_columns(
            pl.Series(CUSTOMER_TERMINAL_VISITS, visits),
            pl.Series(CUSTOMER_DISTINCT_TERMINALS, distinct),
        )
    )
    mean = frame["terminal_amount_mean_30d"].to_numpy()
    frame = frame.with_columns(  # = amount_to_mean(amount, terminal mean)
        amount_to_terminal_mean_30d=np.divide(
            frame["amount"].to_numpy(), mean, out=np.ones(frame.height), where=mean > 0
        )
    )
    return frame.select(*FEATURE_ROW_KEYS, *feature_columns(cats))


# ------------------------------------------------------------------- the online store's seed


def store_seed_from_frames(
    history: pl.DataFrame,
    labels: pl.DataFrame,
    as_of: date,
    maturity_days: int = DEFAULT_MATURITY_DAYS,
) -> tuple[dict[str, CustomerHistory], dict[str, dict[str, float]]]:
    """Seed for a store serving day ``as_of``: histories of the 30 days before it (replayed
    online) and the terminal snapshot as of it (the batch definition)."""
    midnight = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    before = history.filter(
        pl.col("ts") >= midnight - timedelta(days=LOOKBACK_DAYS + 1), pl.col("ts") < midnight
    ).sort("ts", "transaction_id")
    histories = histories_from_transactions(
        before.iter_rows(named=True), available_categoricals(history.columns)
    )
    terminals = {
        row["terminal_id"]: {c: float(row[c]) for c in TERMINAL_FEATURES}
        for row in terminal_snapshot(history, labels, as_of, maturity_days).iter_rows(named=True)
    }
    return histories, terminals
