from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import polars as pl
import pytest

from fraud_assets.lib.features.batch import (
    _group_chunks,
    _window_max,
    batch_features,
    terminal_snapshot,
)
from fraud_assets.lib.features.definitions import (
    NUMERIC_FEATURES,
    available_categoricals,
    feature_columns,
)
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.features.online import online_features
from fraud_assets.lib.simulation import SimulationConfig, Simulator

DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _tx(rows: list[tuple]) -> pl.DataFrame:
    """rows: (transaction_id, ts, customer_id, terminal_id, amount, channel)."""
    return pl.DataFrame(
        rows,
        schema={
            "transaction_id": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "customer_id": pl.String,
            "terminal_id": pl.String,
            "amount": pl.Float64,
            "channel": pl.String,
        },
        orient="row",
    )


def _labels(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "transaction_id": pl.String,
            "is_fraud": pl.Int8,
            "known_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


NO_LABELS = _labels([])


def _row(df: pl.DataFrame, tid: str) -> dict:
    return df.filter(pl.col("transaction_id") == tid).to_dicts()[0]


def test_first_transaction_of_a_customer() -> None:
    out = batch_features(_tx([("a", T0, "c1", "t1", 40.0, "online")]), NO_LABELS, DAY)
    row = _row(out, "a")
    assert row["customer_tx_count_1d"] == 1 and row["customer_tx_count_30d"] == 1
    assert row["customer_amount_mean_7d"] == 40.0 and row["customer_amount_max_30d"] == 40.0
    assert row["amount_to_customer_mean_30d"] == 1.0
    assert row["terminal_tx_count_30d"] == 0 and row["terminal_risk_7d"] == 0
    assert row["hour"] == 12 and row["is_night"] == 0 and row["is_weekend"] == 0  # a Tuesday


def test_window_boundaries_are_exclusive_at_t_minus_w() -> None:
    hist = _tx(
        [
            ("old_exact", T0 - timedelta(days=7), "c1", "t1", 100.0, "card_present"),
            (
                "old_inside",
                T0 - timedelta(days=7) + timedelta(microseconds=1),
                "c1",
                "t1",
                10.0,
                "card_present",
            ),
            ("now", T0, "c1", "t1", 20.0, "card_present"),
        ]
    )
    row = _row(batch_features(hist, NO_LABELS, DAY), "now")
    assert row["customer_tx_count_7d"] == 2  # old_inside and now; old_exact is out
    assert row["customer_amount_max_7d"] == 20.0
    assert row["customer_tx_count_30d"] == 3
    assert row["customer_amount_max_30d"] == 100.0
    assert row["customer_amount_mean_30d"] == pytest.approx(130 / 3)
    assert row["amount_to_customer_mean_30d"] == pytest.approx(20 / (130 / 3))


def test_simultaneous_transactions_never_see_later_ones() -> None:
    hist = _tx([("b", T0, "c1", "t1", 1.0, "online"), ("a", T0, "c1", "t1", 2.0, "online")])
    out = batch_features(hist, NO_LABELS, DAY)
    assert _row(out, "a")["customer_tx_count_1d"] == 1  # "a" sorts first
    assert _row(out, "b")["customer_tx_count_1d"] == 2
    assert _row(out, "b")["customer_small_online_count_1h"] == 2
    # "a" (2.0) came first at the same instant: "b" sees it in its max.
    assert _row(out, "b")["customer_amount_max_1d"] == 2.0
    assert _row(out, "a")["customer_amount_max_1d"] == 2.0


def test_velocity_counts_small_online_amounts_in_the_last_hour() -> None:
    hist = _tx(
        [
            ("p1", T0 - timedelta(minutes=61), "c1", "t9", 1.0, "online"),
            ("p2", T0 - timedelta(minutes=30), "c1", "t9", 1.0, "online"),
            ("p3", T0 - timedelta(minutes=20), "c1", "t2", 1.0, "card_present"),
            ("big", T0, "c1", "t9", 900.0, "online"),
        ]
    )
    row = _row(batch_features(hist, NO_LABELS, DAY), "big")
    assert row["customer_tx_count_1h"] == 3
    assert row["customer_small_online_count_1h"] == 1


def test_terminal_risk_counts_only_labels_known_before_the_day() -> None:
    yesterday = T0 - timedelta(days=1)
    hist = _tx(
        [
            ("f1", yesterday, "c2", "t1", 50.0, "card_present"),
            ("f2", yesterday - timedelta(days=3), "c3", "t1", 50.0, "card_present"),
            ("f3", yesterday - timedelta(days=10), "c4", "t1", 50.0, "card_present"),
            ("g1", yesterday, "c5", "t1", 50.0, "card_present"),
            ("now", T0, "c1", "t1", 20.0, "card_present"),
        ]
    )
    midnight = datetime(2026, 3, 10, tzinfo=UTC)
    labels = _labels(
        [
            ("f1", 1, midnight),  # known exactly at D 00:00: not yet known for day D
            ("f2", 1, midnight - timedelta(microseconds=1)),  # known just before: counts
            ("f3", 1, midnight - timedelta(days=2)),
            ("g1", 0, midnight - timedelta(hours=1)),
        ]
    )
    row = _row(batch_features(hist, labels, DAY), "now")
    assert row["terminal_tx_count_1d"] == 2
    assert row["terminal_tx_count_7d"] == 3 and row["terminal_fraud_count_7d"] == 1
    assert row["terminal_tx_count_30d"] == 4 and row["terminal_fraud_count_30d"] == 2
    assert row["terminal_risk_30d"] == 0.5
    # The next day, f1's label is known.
    nxt = terminal_snapshot(hist, labels, DAY + timedelta(days=1)).to_dicts()[0]
    assert nxt["terminal_fraud_count_7d"] == 2


def test_the_customer_prior_normal_leaves_the_transaction_itself_out() -> None:
    hist = _tx(
        [
            ("p1", T0 - timedelta(hours=3), "c1", "t1", 20.0, "card_present"),
            ("p2", T0 - timedelta(hours=2), "c1", "t1", 20.0, "card_present"),
            ("p3", T0 - timedelta(hours=1), "c1", "t1", 22.0, "card_present"),
            ("now", T0, "c1", "t1", 200.0, "card_present"),
            ("tie", T0, "c1", "t2", 20.0, "card_present"),  # same instant, later id
            ("first", T0, "c9", "t1", 50.0, "card_present"),
            ("too_old", T0 - timedelta(days=31), "c8", "t1", 50.0, "card_present"),
            ("after_gap", T0, "c8", "t1", 50.0, "card_present"),
        ]
    )
    out = batch_features(hist, NO_LABELS, DAY)
    logs = [math.log1p(a) * 10_000 for a in (20.0, 20.0, 22.0)]
    mean = sum(logs) / 3
    spread = max(math.sqrt(sum((x - mean) ** 2 for x in logs) / 3), 0.1 * 10_000)
    now = _row(out, "now")
    assert now["amount_zscore_to_customer_prior_30d"] == pytest.approx(
        (math.log1p(200.0) * 10_000 - mean) / spread, rel=1e-3
    )
    assert now["amount_zscore_to_customer_prior_30d"] > 3  # a 10x amount stands out
    assert now["customer_seconds_since_previous"] == 3_600.0
    # A transaction at the same instant sees the earlier one (and the 200) as prior.
    assert _row(out, "tie")["customer_seconds_since_previous"] == 0.0
    assert _row(out, "tie")["amount_zscore_to_customer_prior_30d"] < 0
    # Nothing before: no z (0) and the window's length as the gap; 31 days back is nothing.
    for tid in ("first", "after_gap"):
        row = _row(out, tid)
        assert row["amount_zscore_to_customer_prior_30d"] == 0.0
        assert row["customer_seconds_since_previous"] == 30 * 86_400


def test_mature_terminal_windows_are_shifted_by_the_maturity_and_count_known_labels() -> None:
    """Mature window w as of D with maturity m: transactions of days D-m-w .. D-m-1, frauds
    among them whose label was known before D 00:00."""
    m = 7
    midnight = datetime(2026, 3, 10, tzinfo=UTC)

    def at(days_before: int) -> datetime:
        return midnight - timedelta(days=days_before) + timedelta(hours=10)

    hist = _tx(
        [
            ("recent", at(1), "c2", "t1", 50.0, "card_present"),  # D-1: inside the shift
            ("edge_in", at(m + 1), "c3", "t1", 50.0, "card_present"),  # D-m-1: 1d window
            ("edge_out", at(m), "c4", "t1", 50.0, "card_present"),  # D-m: still shifted out
            ("late_label", at(m + 3), "c5", "t1", 50.0, "card_present"),
            ("old", at(m + 30), "c6", "t1", 50.0, "card_present"),  # D-m-30: 30d window
            ("too_old", at(m + 31), "c7", "t1", 50.0, "card_present"),
            ("now", T0, "c1", "t1", 20.0, "card_present"),
        ]
    )
    labels = _labels(
        [
            ("recent", 1, midnight - timedelta(hours=2)),
            ("edge_in", 1, midnight - timedelta(days=1)),
            ("edge_out", 1, midnight - timedelta(days=1)),
            ("late_label", 1, midnight),  # known at D 00:00: not yet for day D
            ("old", 1, midnight - timedelta(days=20)),
            ("too_old", 1, midnight - timedelta(days=20)),
        ]
    )
    row = _row(batch_features(hist, labels, DAY, maturity_days=m), "now")
    assert (row["terminal_tx_count_1d_mature"], row["terminal_fraud_count_1d_mature"]) == (1, 1)
    assert (row["terminal_tx_count_7d_mature"], row["terminal_fraud_count_7d_mature"]) == (2, 1)
    assert (row["terminal_tx_count_30d_mature"], row["terminal_fraud_count_30d_mature"]) == (3, 2)
    assert row["terminal_risk_30d_mature"] == 2 / 3
    # The known-so-far windows are unchanged by the shift: D-w .. D-1.
    assert row["terminal_tx_count_1d"] == 1
    assert (row["terminal_tx_count_7d"], row["terminal_fraud_count_7d"]) == (2, 2)  # D-1, D-7
    # Without a shift the mature windows are the known-so-far ones.
    flat = _row(batch_features(hist, labels, DAY, maturity_days=0), "now")
    for w in (7, 30):
        for stat in ("tx_count", "fraud_count", "risk"):
            assert flat[f"terminal_{stat}_{w}d_mature"] == flat[f"terminal_{stat}_{w}d"]
    # The snapshot (what the service reads) agrees, and includes a terminal seen only in
    # the shifted reach.
    snap = terminal_snapshot(hist, labels, DAY, maturity_days=m).to_dicts()[0]
    assert snap["terminal_fraud_count_30d_mature"] == 2


def test_mature_terminal_risk_lives_where_known_so_far_risk_is_dead() -> None:
    """Labels take days to arrive, so a 1-day known-so-far window never holds a known fraud
    (it is not a feature); the mature windows carry the signal."""
    sim = Simulator(SimulationConfig(seed=9, size=0.2))
    days = [DAY - timedelta(days=i) for i in range(45, -1, -1)]
    frames = [sim.day_with_label_times(d) for d in days]
    hist = pl.concat([f.drop("known_at") for f in frames])
    labels = pl.concat([f.select("transaction_id", "is_fraud", "known_at") for f in frames])
    out = batch_features(hist, labels, DAY - timedelta(days=5), DAY, maturity_days=7)
    assert "terminal_fraud_count_1d" not in out.columns
    assert out["terminal_fraud_count_1d_mature"].sum() > 0
    assert out["terminal_risk_7d_mature"].max() > 0


def test_no_feature_is_constant_over_a_simulated_month() -> None:
    sim = Simulator(SimulationConfig(seed=3, size=0.3))
    days = [DAY - timedelta(days=i) for i in range(66, -1, -1)]
    frames = [sim.day_with_label_times(d) for d in days]
    hist = pl.concat([f.drop("known_at") for f in frames])
    labels = pl.concat([f.select("transaction_id", "is_fraud", "known_at") for f in frames])
    out = batch_features(hist, labels, DAY - timedelta(days=29), DAY)
    constant = [c for c in NUMERIC_FEATURES if out[c].n_unique() < 2]
    assert not constant


def test_terminal_typical_amount_is_the_mean_of_the_30_days_before_the_day() -> None:
    yesterday = T0 - timedelta(days=1)
    hist = _tx(
        [
            ("old", T0 - timedelta(days=31), "c2", "t1", 1000.0, "card_present"),  # outside
            ("a", T0 - timedelta(days=30), "c3", "t1", 10.0, "card_present"),
            ("b", yesterday, "c4", "t1", 30.0, "card_present"),
            ("now", T0, "c1", "t1", 80.0, "card_present"),
            ("later", T0 + timedelta(hours=1), "c5", "t1", 5000.0, "card_present"),  # same day
            ("new", T0, "c1", "t2", 80.0, "card_present"),  # a terminal without history
        ]
    )
    out = batch_features(hist, NO_LABELS, DAY)
    now, later, new = (_row(out, t) for t in ("now", "later", "new"))
    assert now["terminal_amount_mean_30d"] == later["terminal_amount_mean_30d"] == 20.0
    assert now["amount_to_terminal_mean_30d"] == 4.0
    assert later["amount_to_terminal_mean_30d"] == 250.0
    assert new["terminal_amount_mean_30d"] == 0.0 and new["amount_to_terminal_mean_30d"] == 1.0


def test_terminal_visits_count_the_customers_earlier_transactions_there() -> None:
    hist = _tx(
        [
            ("out", T0 - timedelta(days=30), "c1", "t1", 10.0, "online"),  # at t - 30d: out
            ("in", T0 - timedelta(days=30) + timedelta(seconds=1), "c1", "t1", 10.0, "online"),
            ("other", T0 - timedelta(hours=1), "c2", "t1", 10.0, "online"),  # another card
            ("tie_a", T0, "c1", "t1", 10.0, "online"),
            ("tie_b", T0, "c1", "t1", 10.0, "online"),  # sees tie_a, not the reverse
            ("new", T0, "c1", "t2", 10.0, "online"),
        ]
    )
    out = batch_features(hist, NO_LABELS, DAY)
    visits = {t: _row(out, t)["customer_terminal_tx_count_30d"] for t in ("tie_a", "tie_b", "new")}
    assert visits == {"tie_a": 1.0, "tie_b": 2.0, "new": 0.0}
    distinct = {t: _row(out, t)["customer_distinct_terminals_30d"] for t in ("tie_a", "new")}
    # ("new" sorts before "tie_a" at the same instant; "out" is outside; t1 counts once)
    assert distinct == {"tie_a": 2.0, "new": 2.0}


def test_no_leakage_from_later_rows_or_later_labels() -> None:
    sim = Simulator(SimulationConfig(seed=9, size=0.2))
    days = [DAY - timedelta(days=i) for i in range(31, -1, -1)]
    hist = pl.concat([sim.transactions(d) for d in days])
    labels = pl.concat([sim.labels(d) for d in days[1:]])
    base = batch_features(
        hist, labels.filter(pl.col("known_at") < datetime(2026, 3, 10, tzinfo=UTC)), DAY
    )
    later_rows = pl.concat([hist, sim.transactions(DAY + timedelta(days=1))])
    later_labels = pl.concat([labels, sim.labels(DAY + timedelta(days=1)), sim.labels(DAY)])
    assert batch_features(later_rows, later_labels, DAY).equals(base)
    # ... and the test can fail: labels known earlier do change terminal features.
    all_known = later_labels.with_columns(known_at=pl.col("known_at") - timedelta(days=40))
    assert not batch_features(hist, all_known, DAY).equals(base)


def test_batch_and_online_paths_agree_on_a_simulated_day() -> None:
    sim = Simulator(SimulationConfig(seed=4, size=0.2))
    days = [DAY - timedelta(days=i) for i in range(31, -1, -1)]
    hist = pl.concat([sim.transactions(d) for d in days])
    labels = pl.concat([sim.labels(d) for d in days[:-1]])
    batch = batch_features(hist, labels, DAY)
    cats = available_categoricals(hist.columns)
    # Online: seed histories from the days before, terminal snapshot as of DAY, replay DAY.
    histories: dict[str, CustomerHistory] = {}
    before = hist.filter(pl.col("ts") < datetime(2026, 3, 10, tzinfo=UTC)).sort(
        "ts", "transaction_id"
    )
    for row in before.iter_rows(named=True):
        online_features(
            row, histories.setdefault(row["customer_id"], CustomerHistory()), None, cats
        )
    snapshot = {
        r["terminal_id"]: r for r in terminal_snapshot(hist, labels, DAY).iter_rows(named=True)
    }
    online = [
        online_features(
            row,
            histories.setdefault(row["customer_id"], CustomerHistory()),
            snapshot.get(row["terminal_id"]),
            cats,
        )
        for row in hist.filter(pl.col("ts") >= datetime(2026, 3, 10, tzinfo=UTC))
        .sort("ts", "transaction_id")
        .iter_rows(named=True)
    ]
    online_df = pl.DataFrame(online)
    batch_vec = batch.select(feature_columns(cats))
    assert online_df.columns == batch_vec.columns
    assert online_df.height == batch_vec.height > 100
    for col in NUMERIC_FEATURES:
        diff = (online_df[col] - batch_vec[col]).abs().max()
        assert diff <= 1e-9, (col, diff)
    for col in cats:
        assert online_df[col].equals(batch_vec[col])
    assert batch["terminal_fraud_count_30d"].sum() > 0  # terminal risk really exercised


def test_feature_vector_has_no_truth_or_label_columns() -> None:
    cols = feature_columns(["merchant_category", "channel"])
    assert not {"is_fraud", "fraud_scenario", "known_at", "transaction_id"} & set(cols)


def test_a_range_in_one_pass_equals_day_by_day() -> None:
    sim = Simulator(SimulationConfig(seed=6, size=0.1))
    days = [DAY - timedelta(days=i) for i in range(36, -1, -1)]
    hist = pl.concat([sim.transactions(d) for d in days])
    labels = pl.concat([sim.labels(d) for d in days])
    first = DAY - timedelta(days=4)
    ranged = batch_features(hist, labels, first, DAY)
    daily = pl.concat([batch_features(hist, labels, first + timedelta(days=i)) for i in range(5)])
    assert ranged.height == daily.height > 0
    assert ranged.equals(daily)


def test_ties_exactly_at_the_window_start_are_outside_whatever_their_rank() -> None:
    edge = T0 - timedelta(days=7)
    hist = _tx(
        [
            ("x0", edge, "c1", "t1", 100.0, "card_present"),
            ("x1", edge, "c1", "t1", 300.0, "card_present"),
            ("now", T0, "c1", "t1", 20.0, "card_present"),
        ]
    )
    row = _row(batch_features(hist, NO_LABELS, DAY), "now")
    assert row["customer_tx_count_7d"] == 1
    assert row["customer_amount_max_7d"] == 20.0
    history = CustomerHistory()
    for r in hist.sort("ts", "transaction_id").iter_rows(named=True):
        online = online_features(r, history, None, ["channel"])
    assert online["customer_tx_count_7d"] == 1
    assert online["customer_amount_max_7d"] == 20.0


def test_row_order_of_the_input_does_not_matter() -> None:
    sim = Simulator(SimulationConfig(seed=3, size=0.05))
    days = [DAY - timedelta(days=i) for i in range(33, -1, -1)]
    hist = pl.concat([sim.transactions(d) for d in days])
    labels = pl.concat([sim.labels(d) for d in days])
    first = DAY - timedelta(days=2)
    shuffled = hist.sample(fraction=1.0, shuffle=True, seed=1)
    out = batch_features(hist, labels, first, DAY)
    assert out.height > 0
    assert batch_features(shuffled, labels, first, DAY).equals(out)
    assert terminal_snapshot(shuffled, labels, DAY).equals(terminal_snapshot(hist, labels, DAY))


def test_a_single_row_gets_the_same_bits_as_in_a_bigger_frame() -> None:
    # 2.82 -> 28200 units; 28200 / 1 / 10000 differs from 28200 / 1 * 1e-4 in the last bit.
    hist = _tx(
        [
            ("a", T0 - timedelta(days=1), "c1", "t1", 2.82, "online"),
            ("b", T0, "c2", "t1", 2.82, "online"),
        ]
    )
    alone = batch_features(hist, NO_LABELS, DAY)
    assert alone.height == 1
    both = batch_features(hist, NO_LABELS, DAY - timedelta(days=1), DAY)
    assert alone.equals(both.filter(pl.col("transaction_id") == "b"))


def test_an_empty_range_gives_an_empty_frame_of_the_same_schema() -> None:
    hist = _tx([("a", T0, "c1", "t1", 40.0, "online")])
    out = batch_features(hist, NO_LABELS, DAY)
    empty = batch_features(hist, NO_LABELS, DAY + timedelta(days=3))
    assert empty.height == 0 and empty.schema == out.schema
    assert terminal_snapshot(hist, NO_LABELS, DAY).height == 0  # nothing before DAY


@pytest.mark.parametrize("stride", [10**13, 2**60])  # the second allows 4 groups a chunk
def test_group_chunks_cut_between_groups_and_keep_keys_in_int64(stride: int) -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    # Group 0 alone is bigger than a chunk; the others are small.
    group = np.sort(np.concatenate([np.zeros(20_000), rng.integers(1, 300, 30_000)]))
    chunks = _group_chunks(group.astype(np.int64), stride)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(group)
    assert all(b == c for (_, b), (c, _) in pairwise(chunks))
    for a, b in chunks:
        assert a == 0 or group[a - 1] != group[a]  # never inside a group
        assert (group[b - 1] - group[a] + 1) * stride <= 2**62
        assert b - a - (group == group[a]).sum() < 2**14  # about 2^14 rows, besides the first group


def test_window_max_matches_a_brute_force() -> None:
    import numpy as np

    rng = np.random.default_rng(6)
    values = rng.random(5_000)
    rows = np.sort(rng.choice(5_000, 2_000, replace=False))
    starts = [np.maximum(rows - rng.integers(0, limit, len(rows)), 0) for limit in (1, 5, 700)]
    for s, got in zip(starts, _window_max(values, rows, starts), strict=True):
        assert list(got) == [values[a : b + 1].max() for a, b in zip(s, rows, strict=True)]


def test_feature_conventions_come_from_the_environment_and_are_checked() -> None:
    """Night hours and the card-testing cut-off are a deployment's conventions (currency,
    local time), read once from the environment; bad values fail loudly at import."""
    import os
    import subprocess
    import sys

    from fraud_assets.lib.features.definitions import parse_night_hours, parse_small_amount

    assert parse_night_hours("22-6") == (22, 6) and parse_night_hours("0-5") == (0, 5)
    for bad in ("22", "25-6", "6-6", "night"):
        with pytest.raises(ValueError, match="FRAUD_NIGHT_HOURS"):
            parse_night_hours(bad)
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="FRAUD_SMALL_AMOUNT"):
            parse_small_amount(bad)
    code = (
        "from fraud_assets.lib.features.definitions import NIGHT_HOURS, SMALL_AMOUNT;"
        "print(sorted(NIGHT_HOURS), SMALL_AMOUNT)"
    )
    env = os.environ | {"FRAUD_NIGHT_HOURS": "1-4", "FRAUD_SMALL_AMOUNT": "2.5"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[1,", "2,", "3]", "2.5"]


def test_a_bundle_built_with_other_feature_conventions_is_refused() -> None:
    from fraud_assets.lib.bundle import BundleError, validate_manifest
    from fraud_assets.lib.features.definitions import FEATURE_PARAMETERS

    manifest = {
        "model_name": "m",
        "features": ["amount"],
        "categoricals": [],
        "store_as_of": "2026-03-01",
        "variants": {"champion": {"version": "1", "thresholds": {"review": 0.1, "decline": 0.9}}},
        "traffic": {"challenger_share": 0.0, "mode": "split"},
    }
    assert validate_manifest(manifest | {"feature_parameters": FEATURE_PARAMETERS})
    other = FEATURE_PARAMETERS | {"small_amount": FEATURE_PARAMETERS["small_amount"] + 1}
    with pytest.raises(BundleError, match="FRAUD_SMALL_AMOUNT"):
        validate_manifest(manifest | {"feature_parameters": other})


def test_a_withdrawn_fraud_label_stops_counting_from_the_day_after_the_correction() -> None:
    yesterday = T0 - timedelta(days=1)
    hist = _tx(
        [
            ("f1", yesterday - timedelta(days=2), "c2", "t1", 50.0, "card_present"),
            ("now", T0, "c1", "t1", 20.0, "card_present"),
        ]
    )
    midnight = datetime(2026, 3, 10, tzinfo=UTC)
    fraud = ("f1", 1, midnight - timedelta(days=2))
    correction = ("f1", 0, midnight - timedelta(hours=1))  # known before day D
    assert _row(batch_features(hist, _labels([fraud]), DAY), "now")["terminal_fraud_count_7d"] == 1
    withdrawn = _row(batch_features(hist, _labels([fraud, correction]), DAY), "now")
    assert withdrawn["terminal_fraud_count_7d"] == 0
    # A correction known only on day D does not count yet for day D, but does the day after.
    late = ("f1", 0, midnight + timedelta(hours=1))
    assert (
        terminal_snapshot(hist, _labels([fraud, late]), DAY).to_dicts()[0][
            "terminal_fraud_count_7d"
        ]
        == 1
    )
    assert (
        terminal_snapshot(hist, _labels([fraud, late]), DAY + timedelta(days=1)).to_dicts()[0][
            "terminal_fraud_count_7d"
        ]
        == 0
    )
