"""The evaluation's volume-scaled card precision, its ceiling, and recall per scenario."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib.evaluation import (
    CostModel,
    card_precision_summary,
    evaluate_scores,
    recall_by_scenario,
    review_capacity,
)

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def _test_window() -> tuple[pl.DataFrame, np.ndarray]:
    """Two days, 50 cards each; 3 fraudulent cards on day 1, 1 on day 2."""
    rows = []
    for day in range(2):
        for card in range(50):
            fraud = (day == 0 and card < 3) or (day == 1 and card == 10)
            rows.append(
                {
                    "ts": T0 + timedelta(days=day, minutes=card),
                    "customer_id": f"c{card}",
                    "label": int(fraud),
                    "amount": 10.0,
                    "fraud_scenario": ("card_testing" if card < 2 else "large_amount")
                    if fraud
                    else None,
                }
            )
    test = pl.DataFrame(rows)
    score = np.linspace(0.0, 0.5, test.height)
    score[(test["customer_id"] == "c0").to_numpy()] = 0.99  # one fraud card ranked first
    return test, score


def test_capacity_scales_with_the_daily_cards() -> None:
    test, _ = _test_window()
    assert review_capacity(test, 0.1) == 5
    assert review_capacity(test, 0.0001) == 1


def test_card_precision_has_a_ceiling_and_a_normalised_value() -> None:
    test, score = _test_window()
    scored = test.select(
        day=pl.col("ts").dt.date(), customer_id="customer_id", is_fraud="label"
    ).with_columns(score=pl.Series(score))
    out = card_precision_summary(scored, 5, "cp")
    # A perfect ranker catches 3 of 5 on day 1 and 1 of 5 on day 2.
    assert out["cp_ceiling"] == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert out["cp_normalised"] == pytest.approx(out["cp"] / out["cp_ceiling"])
    assert 0 < out["cp_normalised"] < 1


def test_recall_per_scenario_and_in_the_evaluation() -> None:
    test, score = _test_window()
    recall = recall_by_scenario(test, score, threshold=0.9)
    assert recall == {"recall_card_testing": 0.5, "recall_large_amount": 0.0}
    assert recall_by_scenario(test.drop("fraud_scenario"), score, 0.9) == {}
    result = evaluate_scores(test, score, 0.9, CostModel(review_share=0.1))
    assert result["cp_k"] == 5 and result["recall_card_testing"] == 0.5
    assert result["card_precision_at_k_ceiling"] == pytest.approx(0.4)
