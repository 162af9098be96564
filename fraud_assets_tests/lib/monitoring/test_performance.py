"""Live performance per variant with its A/B comparison, and business figures."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib.metrics import average_precision
from fraud_assets.lib.monitoring.ab import Sample, bootstrap_paired, bootstrap_split
from fraud_assets.lib.monitoring.performance import business_metrics, headline, live_performance
from fraud_assets_tests.lib.monitoring.helpers import joined_frame, synthetic


def test_per_variant_ap_precision_recall_match_metrics() -> None:
    y1, s1 = synthetic(400, 1.0, 1)
    y2, s2 = synthetic(300, 2.0, 2)
    joined = pl.concat(
        [joined_frame(y1, s1, prefix="a"), joined_frame(y2, s2, variant="challenger", prefix="b")]
    )
    # Some rows without labels yet: they count in rows and alert rate, not in AP.
    unlabelled = joined_frame(np.zeros(100), np.full(100, 0.7), prefix="u").with_columns(
        is_fraud=pl.lit(None, dtype=pl.Int8)
    )
    table = live_performance(pl.concat([joined, unlabelled]), n_boot=200)
    rows = {r["variant"]: r for r in table.iter_rows(named=True)}
    champion, challenger = rows["champion"], rows["challenger"]
    assert champion["ap"] == pytest.approx(average_precision(y1, s1))
    assert challenger["ap"] == pytest.approx(average_precision(y2, s2))
    assert champion["n_labelled"] == 400 and champion["rows"] == 500
    assert champion["labelled_share"] == pytest.approx(0.8)
    alert = s1 >= 0.5
    tp = int((alert & (y1 == 1)).sum())
    assert champion["precision_at_alert"] == pytest.approx(tp / alert.sum())
    assert champion["recall_at_alert"] == pytest.approx(tp / y1.sum())
    assert champion["alert_rate"] == pytest.approx((alert.sum() + 100) / 500)
    assert champion["comparison"] is None
    assert challenger["comparison"] == "split"
    assert challenger["ap_diff"] == pytest.approx(champion["ap"] - challenger["ap"])
    head = headline(table)
    assert head["live_ap_champion"] == pytest.approx(champion["ap"])
    assert head["n_labelled"] == 400
    assert head["ab_mode"] == "split"


def test_shadow_mode_uses_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(5)
    y, champion = synthetic(1500, 1.5, 31)
    # The challenger: the same ranking plus a little extra signal, on the same transactions.
    logit = np.log(champion / (1 - champion))
    challenger = 1 / (1 + np.exp(-(logit + 0.15 * y + rng.normal(0, 0.05, y.size))))
    shadow = joined_frame(y, challenger, variant="shadow")
    joined = pl.concat([joined_frame(y, champion), shadow])
    table = live_performance(joined, n_boot=300)
    row = table.filter(pl.col("variant") == "shadow").row(0, named=True)
    assert row["comparison"] == "paired" and row["n_compared"] == y.size
    expected = average_precision(y, champion) - average_precision(y, challenger)
    assert row["ap_diff"] == pytest.approx(expected)
    assert row["ap_diff_ci_high"] < 0  # a small but consistent gain is detected...
    # ...which an unpaired bootstrap of the same rows misses (its interval is much wider).
    unpaired = bootstrap_split(
        Sample(y.astype(float), champion, np.zeros(y.size)),
        Sample(y.astype(float), challenger, np.zeros(y.size)),
        n_boot=300,
    )["ap"]
    paired_width = row["ap_diff_ci_high"] - row["ap_diff_ci_low"]
    assert unpaired.ci_high - unpaired.ci_low > 4 * paired_width
    assert unpaired.ci_low < 0 < unpaired.ci_high
    # Identical scores in shadow: the paired difference is exactly zero in every draw.
    same = bootstrap_paired(y, champion, champion, y, y, n_boot=100)
    assert same["ap"].value == 0 and same["ap"].ci_low == 0 == same["ap"].ci_high
    head = headline(table)
    assert head["ab_mode"] == "paired" and head["live_ap_challenger"] == pytest.approx(row["ap"])


def test_no_labels_one_class_and_no_challenger_are_handled() -> None:
    n = 50
    none = joined_frame(np.zeros(n), np.linspace(0, 1, n)).with_columns(
        is_fraud=pl.lit(None, dtype=pl.Int8)
    )
    head = headline(live_performance(none))
    assert head["live_ap_champion"] is None and head["n_labelled"] == 0
    assert head["ab_mode"] == "none" and "ap_diff" not in head
    one_class = joined_frame(np.zeros(n), np.linspace(0, 1, n))
    table = live_performance(one_class)
    assert table["ap"][0] is None and table["recall_at_alert"][0] is None
    assert headline(table)["n_labelled"] == n
    # A challenger with only genuine labels: a difference without meaning, no interval.
    y, s = synthetic(200, 2.0, 41)
    joined = pl.concat(
        [
            joined_frame(y, s),
            joined_frame(np.zeros(n), np.linspace(0, 1, n), variant="challenger", prefix="c"),
        ]
    )
    head = headline(live_performance(joined, n_boot=50))
    assert head["ab_mode"] == "split" and head["live_ap_challenger"] is None
    assert head["ap_diff"] is None and head["ap_diff_ci_low"] is None
    assert live_performance(joined.head(0)).height == 0


def test_business_figures_by_hand() -> None:
    joined = pl.DataFrame(
        {
            "transaction_id": ["1", "2", "3", "4", "5", "6", "1", "7"],
            "variant": ["champion"] * 4 + ["challenger"] * 2 + ["shadow", "champion"],
            "amount": [100.0, 50.0, 30.0, 20.0, 7.0, 3.0, 100.0, 5.0],
            "decision": ["decline", "approve", "review", "decline", "decline", "approve", "approve", "review"],
            "is_fraud": pl.Series([1, 1, 0, 0, 1, 0, 1, None], dtype=pl.Int8),
        }
    ).with_columns(alert=pl.col("decision") != "approve")  # fmt: skip
    table = business_metrics(joined)
    rows = {r["variant"]: r for r in table.iter_rows(named=True)}
    assert table["variant"].to_list() == ["all", "champion", "challenger", "shadow"]
    champion = rows["champion"]
    assert champion["fraud_amount_caught"] == 100.0  # tx 1 declined
    assert champion["fraud_amount_missed"] == 50.0  # tx 2 approved
    assert champion["false_declines"] == 1 and champion["false_decline_amount"] == 20.0  # tx 4
    assert champion["alerts"] == 4 and champion["alert_rate"] == pytest.approx(4 / 5)
    assert champion["n_labelled"] == 4 and champion["rows"] == 5
    challenger = rows["challenger"]
    assert challenger["fraud_amount_caught"] == 7.0 and challenger["false_declines"] == 0
    total = rows["all"]  # champion + challenger; the shadow row is not real traffic
    assert total["rows"] == 7
    assert total["fraud_amount_caught"] == 107.0 and total["fraud_amount_missed"] == 50.0
    assert total["false_declines"] == 1 and total["false_decline_amount"] == 20.0
    assert total["alerts"] == 5 and total["alert_rate"] == pytest.approx(5 / 7)
    assert rows["shadow"]["fraud_amount_missed"] == 100.0
