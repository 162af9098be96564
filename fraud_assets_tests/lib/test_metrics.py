"""Model metrics: hand-computed examples and sklearn parity."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib.metrics import (
    average_precision,
    business_figures,
    card_precision_at_k,
    card_precision_at_k_per_day,
    choose_threshold,
    confusion_at_threshold,
    expected_savings,
    roc_auc,
)

# --------------------------------------------------------------------------- ranking


def test_auc_and_average_precision_match_sklearn() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.random(5_000) < 0.05
    score = rng.random(5_000) + 0.3 * y
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert average_precision(y, score) == pytest.approx(
        average_precision_score(y, score), abs=1e-12
    )
    assert 0.6 < roc_auc(y, score) < 0.95  # the signal is real but not perfect
    # Polars input reads the same.
    assert roc_auc(pl.Series(y.astype(int)), pl.Series(score)) == roc_auc(y, score)


def test_ranking_metrics_are_nan_with_one_class() -> None:
    assert math.isnan(roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(average_precision([1, 1], [0.1, 0.2]))
    assert math.isnan(roc_auc([], []))


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
    per_day = card_precision_at_k_per_day(df, k=2)
    assert per_day.to_dicts() == [
        {"day": D1, "cp_at_k": 0.5, "n_fraud_cards": 3},
        {"day": D2, "cp_at_k": 0.0, "n_fraud_cards": 2},
    ]
    assert card_precision_at_k(df, k=2) == pytest.approx(0.25)
    # Without removing detected cards, day 2 is (A fraud + F genuine) / 2 = 0.5 -> mean 0.5.
    assert card_precision_at_k(df, k=2, remove_detected=False) == pytest.approx(0.5)


def test_card_precision_divides_by_k_and_removes_every_detected_card() -> None:
    # k=10 takes every card. Day 1: frauds A, C, D -> 3/10 = 0.3, all three detected.
    # Day 2: A, C, D removed; F, B, E are genuine -> 0/10. Mean = 0.15.
    per_day = card_precision_at_k_per_day(_cp_frame(), k=10)
    assert per_day["cp_at_k"].to_list() == [0.3, 0.0]
    assert per_day["n_fraud_cards"].to_list() == [3, 0]
    assert card_precision_at_k(_cp_frame(), k=10) == pytest.approx(0.15)


def test_card_precision_custom_columns_and_empty() -> None:
    df = _cp_frame().rename({"day": "d", "customer_id": "card", "score": "p", "is_fraud": "y"})
    got = card_precision_at_k(df, 2, day_col="d", card_col="card", score_col="p", label_col="y")
    assert got == pytest.approx(0.25)
    assert math.isnan(card_precision_at_k(_cp_frame().head(0), 2))
    with pytest.raises(ValueError, match="k must be positive"):
        card_precision_at_k(_cp_frame(), 0)


# --------------------------------------------------------------------------- cost / benefit

Y = np.array([1, 0, 1, 0, 0])
SCORE = np.array([0.9, 0.8, 0.4, 0.3, 0.1])
AMOUNT = np.array([100.0, 50.0, 30.0, 20.0, 10.0])
COSTS = {"review_cost": 5.0, "false_decline_cost": 10.0}


def test_expected_savings_hand_example() -> None:
    # t=0.5: alerts rows 0,1 -> caught 100, 2 alerts, 1 false positive: 100 - 2*5 - 1*10 = 80.
    assert expected_savings(Y, SCORE, AMOUNT, 0.5, **COSTS) == pytest.approx(80.0)
    # t=0.4 (>= is inclusive): rows 0,1,2 -> 130 - 3*5 - 1*10 = 105.
    assert expected_savings(Y, SCORE, AMOUNT, 0.4, **COSTS) == pytest.approx(105.0)
    # t=0.1: everything -> 130 - 5*5 - 3*10 = 75.
    assert expected_savings(Y, SCORE, AMOUNT, 0.1, **COSTS) == pytest.approx(75.0)
    # Nothing alerted saves nothing.
    assert expected_savings(Y, SCORE, AMOUNT, 0.95, **COSTS) == 0.0


def test_choose_threshold_picks_hand_optimum() -> None:
    # Savings at each score: .9 -> 95, .8 -> 80, .4 -> 105, .3 -> 90, .1 -> 75, none -> 0.
    assert choose_threshold(Y, SCORE, AMOUNT, **COSTS) == (0.4, pytest.approx(105.0))
    # Restricted candidates: .5 -> 80, .3 -> 90.
    assert choose_threshold(Y, SCORE, AMOUNT, **COSTS, candidates=[0.5, 0.3]) == (
        0.3,
        pytest.approx(90.0),
    )
    # Order of rows is irrelevant.
    perm = np.array([3, 0, 4, 2, 1])
    assert choose_threshold(Y[perm], SCORE[perm], AMOUNT[perm], **COSTS)[0] == 0.4


def test_choose_threshold_alerts_nothing_when_every_alert_loses_money() -> None:
    threshold, savings = choose_threshold(np.zeros(5), SCORE, AMOUNT, **COSTS)
    assert savings == 0.0
    assert threshold > SCORE.max()
    assert expected_savings(np.zeros(5), SCORE, AMOUNT, threshold, **COSTS) == 0.0


def test_choose_threshold_handles_tied_scores() -> None:
    # Two rows tied at .5 can only be alerted together: 10 + 10 - 2*5 - 0 = 10 (not 5).
    y, s, a = np.array([1, 1, 0]), np.array([0.5, 0.5, 0.2]), np.array([10.0, 10.0, 10.0])
    assert choose_threshold(y, s, a, **COSTS) == (0.5, pytest.approx(10.0))


def test_choose_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(8)
    n = 3_000
    y = rng.random(n) < 0.03
    score = np.round(rng.random(n) * 0.7 + 0.3 * y, 3)  # rounding makes ties
    amount = rng.lognormal(3, 1, n)
    best_t, best = choose_threshold(y, score, amount, **COSTS)
    brute = {t: expected_savings(y, score, amount, t, **COSTS) for t in np.unique(score)}
    t_brute = max(brute, key=lambda t: (brute[t], t))
    assert best == pytest.approx(max(0.0, brute[t_brute]))
    assert best_t == t_brute
    assert expected_savings(y, score, amount, best_t, **COSTS) == pytest.approx(best)


def test_confusion_at_threshold_tiny_example() -> None:
    # t=0.4: alerts rows 0,1,2 -> tp 2 (rows 0,2), fp 1 (row 1), fn 0, tn 2 (rows 3,4).
    c = confusion_at_threshold(Y, SCORE, 0.4)
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
    c = confusion_at_threshold(Y, SCORE, 0.85)
    assert (c["precision"], c["recall"], c["false_positive_rate"]) == (1.0, 0.5, 0.0)
    # No alerts: precision is undefined.
    assert math.isnan(confusion_at_threshold(Y, SCORE, 2.0)["precision"])


def test_business_figures() -> None:
    # t=0.5 over 2 days: caught row 0 (100), missed row 2 (30), 2 alerts, 1 false decline.
    assert business_figures(Y, SCORE, AMOUNT, 0.5, n_days=2) == {
        "fraud_amount_caught": 100.0,
        "fraud_amount_missed": 30.0,
        "alerts_per_day": 1.0,
        "false_declines": 1,
    }
    with pytest.raises(ValueError):
        business_figures(Y, SCORE, AMOUNT, 0.5, n_days=0)
