"""Metrics: hand-computed examples, sklearn parity, and PSI on frozen bins."""

from __future__ import annotations

import itertools
import json
import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib import metrics as M

# --------------------------------------------------------------------------- ranking


def test_auc_and_average_precision_match_sklearn() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.random(5_000) < 0.05
    score = rng.random(5_000) + 0.3 * y
    assert M.roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert M.average_precision(y, score) == pytest.approx(
        average_precision_score(y, score), abs=1e-12
    )
    assert 0.6 < M.roc_auc(y, score) < 0.95  # the signal is real but not perfect
    # Polars input reads the same.
    assert M.roc_auc(pl.Series(y.astype(int)), pl.Series(score)) == M.roc_auc(y, score)


def test_ranking_metrics_are_nan_with_one_class() -> None:
    assert math.isnan(M.roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(M.average_precision([1, 1], [0.1, 0.2]))
    assert math.isnan(M.roc_auc([], []))


# --------------------------------------------------------------------------- card precision@k

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)
# (day, card, score, is_fraud)
CP_ROWS = [
    # Day 1. Highest score per card: A .9 (fraud card: its .2 transaction is fraud),
    # B .8 (genuine), C .75 (fraud), D .3 (fraud), E .1 (genuine).
    (D1, "A", 0.9, 0),
    (D1, "A", 0.2, 1),
    (D1, "B", 0.8, 0),
    (D1, "B", 0.0, 0),
    (D1, "C", 0.75, 1),
    (D1, "D", 0.3, 1),
    (D1, "E", 0.1, 0),
    # Day 2. A (detected on day 1) must be removed although it is top-scored again.
    (D2, "A", 0.95, 1),
    (D2, "F", 0.8, 0),
    (D2, "B", 0.7, 0),
    (D2, "D", 0.65, 1),
    (D2, "C", 0.6, 1),
    (D2, "E", 0.5, 0),
]


def _cp_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": [r[0] for r in CP_ROWS],
            "customer_id": [r[1] for r in CP_ROWS],
            "score": [r[2] for r in CP_ROWS],
            "is_fraud": [r[3] for r in CP_ROWS],
        }
    )


def test_card_precision_at_k_hand_example() -> None:
    df = _cp_frame().sample(fraction=1.0, shuffle=True, seed=5)  # order must not matter
    # k=2.
    # Day 1: ranking by max score A .9, B .8, C .75, D .3, E .1 -> top 2 = {A, B}; A is a
    #   fraud card (any fraud that day), B is not: 1/2 = 0.5. Detected: {A}.
    #   Fraud cards that day: A, C, D = 3.
    #   (Ranking by mean score would pick C .75 and A .55 -> 1.0; labelling a card by its
    #   top transaction would make A genuine -> 0.0.)
    # Day 2: A removed. F .8, B .7, D .65, C .6, E .5 -> top 2 = {F, B}, both genuine: 0/2 = 0.
    #   Fraud cards still undetected: D, C = 2.
    #   (Without the removal: top 2 = {A, F} -> 0.5.)
    # Mean = (0.5 + 0.0) / 2 = 0.25.
    per_day = M.card_precision_at_k_per_day(df, k=2)
    assert per_day.to_dicts() == [
        {"day": D1, "cp_at_k": 0.5, "n_fraud_cards": 3},
        {"day": D2, "cp_at_k": 0.0, "n_fraud_cards": 2},
    ]
    assert M.card_precision_at_k(df, k=2) == pytest.approx(0.25)
    # Without removing detected cards, day 2 is (A fraud + F genuine) / 2 = 0.5 -> mean 0.5.
    assert M.card_precision_at_k(df, k=2, remove_detected=False) == pytest.approx(0.5)


def test_card_precision_divides_by_k_and_removes_every_detected_card() -> None:
    # k=10 takes every card. Day 1: frauds A, C, D -> 3/10 = 0.3, all three detected.
    # Day 2: A, C, D removed; F, B, E are genuine -> 0/10. Mean = 0.15.
    per_day = M.card_precision_at_k_per_day(_cp_frame(), k=10)
    assert per_day["cp_at_k"].to_list() == [0.3, 0.0]
    assert per_day["n_fraud_cards"].to_list() == [3, 0]
    assert M.card_precision_at_k(_cp_frame(), k=10) == pytest.approx(0.15)


def test_card_precision_custom_columns_and_empty() -> None:
    df = _cp_frame().rename({"day": "d", "customer_id": "card", "score": "p", "is_fraud": "y"})
    got = M.card_precision_at_k(df, 2, day_col="d", card_col="card", score_col="p", label_col="y")
    assert got == pytest.approx(0.25)
    assert math.isnan(M.card_precision_at_k(_cp_frame().head(0), 2))
    with pytest.raises(ValueError, match="k must be positive"):
        M.card_precision_at_k(_cp_frame(), 0)


# --------------------------------------------------------------------------- cost / benefit

Y = np.array([1, 0, 1, 0, 0])
SCORE = np.array([0.9, 0.8, 0.4, 0.3, 0.1])
AMOUNT = np.array([100.0, 50.0, 30.0, 20.0, 10.0])
COSTS = {"review_cost": 5.0, "false_decline_cost": 10.0}


def test_expected_savings_hand_example() -> None:
    # t=0.5: alerts rows 0,1 -> caught 100, 2 alerts, 1 false positive: 100 - 2*5 - 1*10 = 80.
    assert M.expected_savings(Y, SCORE, AMOUNT, 0.5, **COSTS) == pytest.approx(80.0)
    # t=0.4 (>= is inclusive): rows 0,1,2 -> 130 - 3*5 - 1*10 = 105.
    assert M.expected_savings(Y, SCORE, AMOUNT, 0.4, **COSTS) == pytest.approx(105.0)
    # t=0.1: everything -> 130 - 5*5 - 3*10 = 75.
    assert M.expected_savings(Y, SCORE, AMOUNT, 0.1, **COSTS) == pytest.approx(75.0)
    # Nothing alerted saves nothing.
    assert M.expected_savings(Y, SCORE, AMOUNT, 0.95, **COSTS) == 0.0


def test_choose_threshold_picks_hand_optimum() -> None:
    # Savings at each score: .9 -> 95, .8 -> 80, .4 -> 105, .3 -> 90, .1 -> 75, none -> 0.
    assert M.choose_threshold(Y, SCORE, AMOUNT, **COSTS) == (0.4, pytest.approx(105.0))
    # Restricted candidates: .5 -> 80, .3 -> 90.
    assert M.choose_threshold(Y, SCORE, AMOUNT, **COSTS, candidates=[0.5, 0.3]) == (
        0.3,
        pytest.approx(90.0),
    )
    # Order of rows is irrelevant.
    perm = np.array([3, 0, 4, 2, 1])
    assert M.choose_threshold(Y[perm], SCORE[perm], AMOUNT[perm], **COSTS)[0] == 0.4


def test_choose_threshold_alerts_nothing_when_every_alert_loses_money() -> None:
    threshold, savings = M.choose_threshold(np.zeros(5), SCORE, AMOUNT, **COSTS)
    assert savings == 0.0
    assert threshold > SCORE.max()
    assert M.expected_savings(np.zeros(5), SCORE, AMOUNT, threshold, **COSTS) == 0.0


def test_choose_threshold_handles_tied_scores() -> None:
    # Two rows tied at .5 can only be alerted together: 10 + 10 - 2*5 - 0 = 10 (not 5).
    y, s, a = np.array([1, 1, 0]), np.array([0.5, 0.5, 0.2]), np.array([10.0, 10.0, 10.0])
    assert M.choose_threshold(y, s, a, **COSTS) == (0.5, pytest.approx(10.0))


def test_choose_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(8)
    n = 3_000
    y = rng.random(n) < 0.03
    score = np.round(rng.random(n) * 0.7 + 0.3 * y, 3)  # rounding makes ties
    amount = rng.lognormal(3, 1, n)
    best_t, best = M.choose_threshold(y, score, amount, **COSTS)
    brute = {t: M.expected_savings(y, score, amount, t, **COSTS) for t in np.unique(score)}
    t_brute = max(brute, key=lambda t: (brute[t], t))
    assert best == pytest.approx(max(0.0, brute[t_brute]))
    assert best_t == t_brute
    assert M.expected_savings(y, score, amount, best_t, **COSTS) == pytest.approx(best)


def test_confusion_at_threshold_tiny_example() -> None:
    # t=0.4: alerts rows 0,1,2 -> tp 2 (rows 0,2), fp 1 (row 1), fn 0, tn 2 (rows 3,4).
    c = M.confusion_at_threshold(Y, SCORE, 0.4)
    assert {k: c[k] for k in ("tp", "fp", "fn", "tn", "alerts")} == {
        "tp": 2,
        "fp": 1,
        "fn": 0,
        "tn": 2,
        "alerts": 3,
    }
    assert c["precision"] == pytest.approx(2 / 3)
    assert c["recall"] == 1.0
    assert c["false_positive_rate"] == pytest.approx(1 / 3)
    # t=0.85: only row 0 -> precision 1, recall 1/2, fpr 0.
    c = M.confusion_at_threshold(Y, SCORE, 0.85)
    assert (c["precision"], c["recall"], c["false_positive_rate"]) == (1.0, 0.5, 0.0)
    # No alerts: precision is undefined.
    assert math.isnan(M.confusion_at_threshold(Y, SCORE, 2.0)["precision"])


def test_business_figures() -> None:
    # t=0.5 over 2 days: caught row 0 (100), missed row 2 (30), 2 alerts, 1 false decline.
    assert M.business_figures(Y, SCORE, AMOUNT, 0.5, n_days=2) == {
        "fraud_amount_caught": 100.0,
        "fraud_amount_missed": 30.0,
        "alerts_per_day": 1.0,
        "false_declines": 1,
    }
    with pytest.raises(ValueError):
        M.business_figures(Y, SCORE, AMOUNT, 0.5, n_days=0)


# --------------------------------------------------------------------------- PSI


def test_psi_two_bins_by_hand() -> None:
    bins = M.freeze_bins(np.array([1.0, 2.0, 3.0, 4.0]), n_bins=2)
    # The reference median (an observed value) is 2: one interior edge; buckets (-inf, 2],
    # (2, inf), null with shares (0.5, 0.5, 0).
    assert bins.edges == (2.0,)
    assert bins.reference_share == (0.5, 0.5, 0.0)
    # Current [1, 1, 1, 4] -> (0.75, 0.25, 0); the null bucket is 0 on both sides
    # (floored to 1e-4 on both) and adds 0.
    # PSI = (.75-.5)*ln(.75/.5) + (.25-.5)*ln(.25/.5) = .25*ln1.5 + .25*ln2 = .25*ln3 = 0.274653
    assert M.psi(bins, [1.0, 1.0, 1.0, 4.0]) == pytest.approx(0.25 * math.log(3), abs=1e-12)
    assert M.psi(bins, [1.0, 1.0, 1.0, 4.0]) == pytest.approx(0.274653, abs=1e-6)


def test_psi_nulls_and_edges() -> None:
    bins = M.freeze_bins(pl.Series([1.0, 2.0, 3.0, 4.0]), n_bins=2)
    # A value equal to an edge belongs to the bucket below it: (-inf, 2], (2, inf).
    assert M.bin_shares(bins, [2.0]).tolist() == [1.0, 0.0, 0.0]
    assert M.bin_shares(bins, [2.0000001]).tolist() == [0.0, 1.0, 0.0]
    # Current [1, null, 4, nan] -> (0.25, 0.25, 0.5): null and NaN share the null bucket.
    shares = M.bin_shares(bins, pl.Series([1.0, None, 4.0, float("nan")]))
    assert shares.tolist() == [0.25, 0.25, 0.5]
    # Reference null share is 0 -> floored at 1e-4.
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) * 2 + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert M.psi(bins, pl.Series([1.0, None, 4.0, float("nan")])) == pytest.approx(expected)
    # The reference's own nulls get a share too.
    with_null = M.freeze_bins(pl.Series([1, 2, None, 4], dtype=pl.Int64), n_bins=2)
    assert with_null.reference_share[-1] == 0.25
    assert math.isnan(M.psi(bins, []))


def test_psi_quantile_edges_collapse_on_a_spike() -> None:
    # 60% zeros then 1..400: deciles .1-.6 are all 0 (kept once), .7/.8/.9 are the observed
    # values 100, 200, 300 -> buckets (-inf,0] .6, (0,100] .1, (100,200] .1, (200,300] .1,
    # (300,inf) .1, null 0. No empty buckets from duplicate or interpolated edges.
    ref = np.concatenate([np.zeros(600), np.arange(1, 401, dtype=float)])
    bins = M.freeze_bins(ref, n_bins=10)
    assert bins.edges == (0.0, 100.0, 200.0, 300.0)
    assert bins.reference_share == pytest.approx((0.6, 0.1, 0.1, 0.1, 0.1, 0.0))
    assert M.psi(bins, ref) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_about_zero_for_the_same_distribution() -> None:
    rng = np.random.default_rng(11)
    bins = M.freeze_bins(rng.lognormal(3, 1, 100_000))
    assert len(bins.edges) == 9
    assert all(share == pytest.approx(0.1, abs=1e-4) for share in bins.reference_share[:-1])
    assert M.psi(bins, rng.lognormal(3, 1, 100_000)) < 0.002


def _reference_psi(ref: np.ndarray, cur: np.ndarray, n_bins: int) -> float:
    """Textbook PSI on reference-quantile bins, written independently of the module."""
    edges = np.unique(np.quantile(ref, np.arange(1, n_bins) / n_bins, method="inverted_cdf"))
    r = np.array([np.mean((ref > lo) & (ref <= hi)) for lo, hi in _pairs(edges)])
    c = np.array([np.mean((cur > lo) & (cur <= hi)) for lo, hi in _pairs(edges)])
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def _pairs(edges: np.ndarray) -> list[tuple[float, float]]:
    bounds = [-np.inf, *edges.tolist(), np.inf]
    return list(itertools.pairwise(bounds))


@pytest.mark.parametrize("n_bins", [10, 200])  # 200 bins takes the searchsorted path
def test_psi_matches_an_independent_implementation(n_bins: int) -> None:
    rng = np.random.default_rng(n_bins)
    ref, cur = rng.lognormal(3, 1, 20_000), rng.lognormal(3.2, 1.1, 20_000)
    bins = M.freeze_bins(ref, n_bins=n_bins)
    assert len(bins.edges) == n_bins - 1
    assert M.psi(bins, cur) == pytest.approx(_reference_psi(ref, cur, n_bins), abs=1e-12)


def test_psi_flags_a_lognormal_shift_of_amounts() -> None:
    rng = np.random.default_rng(12)
    bins = M.freeze_bins(rng.lognormal(3.0, 1.0, 100_000))
    shifted = M.psi(bins, rng.lognormal(3.7, 1.0, 100_000))
    assert shifted > M.PSI_ALERT
    assert 0.4 < shifted < 0.8  # a ln-mean shift of 0.7 sigma: ~ 0.5 in theory


def test_categorical_psi_with_an_unseen_category() -> None:
    bins = M.freeze_bins(["a"] * 6 + ["b"] * 4, categorical=True)
    assert bins.categories == ("a", "b")
    assert bins.reference_share == (0.6, 0.4, 0.0, 0.0)  # a, b, other, null
    current = pl.Series(["a"] * 5 + ["b"] * 3 + ["z"] * 2)  # "z" is new -> other
    assert M.bin_shares(bins, current).tolist() == pytest.approx([0.5, 0.3, 0.2, 0.0])
    # (.5-.6)ln(.5/.6) + (.3-.4)ln(.3/.4) + (.2-1e-4)ln(.2/1e-4)
    # = 0.1*ln(1.2) + 0.1*ln(4/3) + 0.1999*ln(2000) = 0.018232 + 0.028768 + 1.519420 = 1.566421
    expected = (
        (0.5 - 0.6) * math.log(0.5 / 0.6)
        + (0.3 - 0.4) * math.log(0.3 / 0.4)
        + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    )
    assert M.psi(bins, current) == pytest.approx(expected, abs=1e-12)
    assert M.psi(bins, current) == pytest.approx(1.566421, abs=1e-6)
    # Categorical dtype and nulls: same text, same buckets; null has its own bucket.
    cat = pl.Series(["a", "b", None, "q"], dtype=pl.Categorical)
    assert M.bin_shares(bins, cat).tolist() == [0.25, 0.25, 0.25, 0.25]


def test_categorical_bins_keep_the_top_categories() -> None:
    values = [f"c{i:02d}" for i in range(60) for _ in range(100 - i)]  # c00 most frequent
    bins = M.freeze_bins(np.array(values), categorical=True)
    assert bins.categories == tuple(f"c{i:02d}" for i in range(50))
    other = sum(100 - i for i in range(50, 60)) / len(values)
    assert bins.reference_share[-2] == pytest.approx(other)
    assert M.psi(bins, values) == pytest.approx(0.0, abs=1e-12)


def test_frozen_bins_round_trip_through_json() -> None:
    rng = np.random.default_rng(2)
    for bins in (
        M.freeze_bins(rng.lognormal(3, 1, 1_000)),
        M.freeze_bins(pl.Series(["x", "y", None, "x"]), categorical=True),
    ):
        again = M.FrozenBins.from_dict(json.loads(json.dumps(bins.to_dict())))
        assert again == bins
        assert M.psi(again, [1.0, 2.0] if bins.kind == "numeric" else ["x"]) == M.psi(
            bins, [1.0, 2.0] if bins.kind == "numeric" else ["x"]
        )
    with pytest.raises(ValueError, match="reference shares"):
        M.FrozenBins(kind="numeric", edges=(1.0,), reference_share=(1.0,))
    with pytest.raises(TypeError, match="numeric"):
        M.freeze_bins(pl.Series(["a", "b"]))


def test_psi_table_sorts_and_flags() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    reference = pl.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "hour": rng.integers(0, 24, n),
            "channel": rng.choice(["pos", "web", "atm"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    current = pl.DataFrame(
        {
            "amount": rng.lognormal(3.8, 1, n),  # strong drift
            "hour": rng.integers(0, 24, n),  # none
            "channel": rng.choice(["pos", "web", "atm"], n, p=[0.45, 0.45, 0.1]),  # mild
        }
    )
    bins = M.freeze_frame_bins(reference, numeric=["amount", "hour"], categorical=["channel"])
    table = M.psi_table(bins, current)
    assert table.columns == ["feature", "psi", "drifted"]
    assert table["feature"].to_list() == ["amount", "channel", "hour"]
    assert table["drifted"].to_list() == [True, False, False]
    assert table["psi"][0] == pytest.approx(M.psi(bins["amount"], current["amount"]))
    assert 0.02 < table["psi"][1] < 0.25
    assert table["psi"][2] < 0.01
    assert M.psi_table(bins, current, threshold=0.01)["drifted"].to_list() == [True, True, False]
    with pytest.raises(ValueError, match="lacks binned features"):
        M.psi_table(bins, current.drop("hour"))


# --------------------------------------------------------------------------- Evidently


def test_evidently_stattest_reports_our_psi() -> None:
    # Slow-ish (~15 s): importing evidently dominates.
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    stattest = M.evidently_psi_stattest()
    assert M.evidently_psi_stattest() is stattest  # registered once
    assert stattest.name == M.EVIDENTLY_STATTEST_NAME

    rng = np.random.default_rng(1)
    ref = pd.DataFrame(
        {"amount": rng.lognormal(3, 1, 5_000), "channel": rng.choice(["a", "b", "c"], 5_000)}
    )
    cur = pd.DataFrame(
        {"amount": rng.lognormal(3.5, 1.2, 4_000), "channel": rng.choice(["a", "b", "z"], 4_000)}
    )
    definition = DataDefinition(numerical_columns=["amount"], categorical_columns=["channel"])
    report = Report(
        [
            ValueDrift(column="amount", method=M.EVIDENTLY_STATTEST_NAME),
            ValueDrift(column="channel", method=M.EVIDENTLY_STATTEST_NAME),
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    values = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"]}
    ours_amount = M.psi(M.freeze_bins(ref["amount"].to_numpy()), cur["amount"].to_numpy())
    ours_channel = M.psi(M.freeze_bins(ref["channel"], categorical=True), cur["channel"])
    assert ours_amount > 0.1 and ours_channel > M.PSI_ALERT
    assert values["amount"] == pytest.approx(ours_amount, abs=1e-6)
    assert values["channel"] == pytest.approx(ours_channel, abs=1e-6)
