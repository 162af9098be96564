"""Drift: PSI on frozen bins, by hand and against a textbook implementation, and the same
PSI inside Evidently."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib.contracts import PSI_ALERT
from fraud_assets.lib.monitoring.drift import (
    EVIDENTLY_STATTEST_NAME,
    FrozenBins,
    bin_shares,
    evidently_psi_stattest,
    freeze_bins,
    freeze_frame_bins,
    psi,
    psi_table,
)


def test_psi_two_bins_by_hand() -> None:
    bins = freeze_bins(np.array([1.0, 2.0, 3.0, 4.0]), n_bins=2)
    # The reference median (an observed value) is 2: one interior edge; buckets (-inf, 2],
    # (2, inf), null with shares (0.5, 0.5, 0).
    assert bins.edges == (2.0,)
    assert bins.reference_share == (0.5, 0.5, 0.0)
    # Current [1, 1, 1, 4] -> (0.75, 0.25, 0); the null bucket is 0 on both sides
    # (floored to 1e-4 on both) and adds 0.
    # PSI = (.75-.5)*ln(.75/.5) + (.25-.5)*ln(.25/.5) = .25*ln1.5 + .25*ln2 = .25*ln3 = 0.274653
    assert psi(bins, [1.0, 1.0, 1.0, 4.0]) == pytest.approx(0.25 * math.log(3), abs=1e-12)
    assert psi(bins, [1.0, 1.0, 1.0, 4.0]) == pytest.approx(0.274653, abs=1e-6)


def test_psi_nulls_and_edges() -> None:
    bins = freeze_bins(pl.Series([1.0, 2.0, 3.0, 4.0]), n_bins=2)
    # A value equal to an edge belongs to the bucket below it: (-inf, 2], (2, inf).
    assert bin_shares(bins, [2.0]).tolist() == [1.0, 0.0, 0.0]
    assert bin_shares(bins, [2.0000001]).tolist() == [0.0, 1.0, 0.0]
    # Current [1, null, 4, nan] -> (0.25, 0.25, 0.5): null and NaN share the null bucket.
    shares = bin_shares(bins, pl.Series([1.0, None, 4.0, float("nan")]))
    assert shares.tolist() == [0.25, 0.25, 0.5]
    # Reference null share is 0 -> floored at 1e-4.
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) * 2 + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi(bins, pl.Series([1.0, None, 4.0, float("nan")])) == pytest.approx(expected)
    # The reference's own nulls get a share too.
    with_null = freeze_bins(pl.Series([1, 2, None, 4], dtype=pl.Int64), n_bins=2)
    assert with_null.reference_share[-1] == 0.25
    assert math.isnan(psi(bins, []))


def test_psi_quantile_edges_collapse_on_a_spike() -> None:
    # 60% zeros then 1..400: deciles .1-.6 are all 0 (kept once), .7/.8/.9 are the observed
    # values 100, 200, 300 -> buckets (-inf,0] .6, (0,100] .1, (100,200] .1, (200,300] .1,
    # (300,inf) .1, null 0. No empty buckets from duplicate or interpolated edges.
    ref = np.concatenate([np.zeros(600), np.arange(1, 401, dtype=float)])
    bins = freeze_bins(ref, n_bins=10)
    assert bins.edges == (0.0, 100.0, 200.0, 300.0)
    assert bins.reference_share == pytest.approx((0.6, 0.1, 0.1, 0.1, 0.1, 0.0))
    assert psi(bins, ref) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_about_zero_for_the_same_distribution() -> None:
    rng = np.random.default_rng(11)
    bins = freeze_bins(rng.lognormal(3, 1, 100_000))
    assert len(bins.edges) == 9
    assert all(share == pytest.approx(0.1, abs=1e-4) for share in bins.reference_share[:-1])
    assert psi(bins, rng.lognormal(3, 1, 100_000)) < 0.002


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
    bins = freeze_bins(ref, n_bins=n_bins)
    assert len(bins.edges) == n_bins - 1
    assert psi(bins, cur) == pytest.approx(_reference_psi(ref, cur, n_bins), abs=1e-12)


def test_psi_flags_a_lognormal_shift_of_amounts() -> None:
    rng = np.random.default_rng(12)
    bins = freeze_bins(rng.lognormal(3.0, 1.0, 100_000))
    shifted = psi(bins, rng.lognormal(3.7, 1.0, 100_000))
    assert shifted > PSI_ALERT
    assert 0.4 < shifted < 0.8  # a ln-mean shift of 0.7 sigma: ~ 0.5 in theory


def test_categorical_psi_with_an_unseen_category() -> None:
    bins = freeze_bins(["a"] * 6 + ["b"] * 4, categorical=True)
    assert bins.categories == ("a", "b")
    assert bins.reference_share == (0.6, 0.4, 0.0, 0.0)  # a, b, other, null
    current = pl.Series(["a"] * 5 + ["b"] * 3 + ["z"] * 2)  # "z" is new -> other
    assert bin_shares(bins, current).tolist() == pytest.approx([0.5, 0.3, 0.2, 0.0])
    # (.5-.6)ln(.5/.6) + (.3-.4)ln(.3/.4) + (.2-1e-4)ln(.2/1e-4)
    # = 0.1*ln(1.2) + 0.1*ln(4/3) + 0.1999*ln(2000) = 0.018232 + 0.028768 + 1.519420 = 1.566421
    expected = (
        (0.5 - 0.6) * math.log(0.5 / 0.6)
        + (0.3 - 0.4) * math.log(0.3 / 0.4)
        + (0.2 - 1e-4) * math.log(0.2 / 1e-4)
    )
    assert psi(bins, current) == pytest.approx(expected, abs=1e-12)
    assert psi(bins, current) == pytest.approx(1.566421, abs=1e-6)
    # Categorical dtype and nulls: same text, same buckets; null has its own bucket.
    cat = pl.Series(["a", "b", None, "q"], dtype=pl.Categorical)
    assert bin_shares(bins, cat).tolist() == [0.25, 0.25, 0.25, 0.25]


def test_categorical_bins_keep_the_top_categories() -> None:
    values = [f"c{i:02d}" for i in range(60) for _ in range(100 - i)]  # c00 most frequent
    bins = freeze_bins(np.array(values), categorical=True)
    assert bins.categories == tuple(f"c{i:02d}" for i in range(50))
    other = sum(100 - i for i in range(50, 60)) / len(values)
    assert bins.reference_share[-2] == pytest.approx(other)
    assert psi(bins, values) == pytest.approx(0.0, abs=1e-12)


def test_frozen_bins_round_trip_through_json() -> None:
    rng = np.random.default_rng(2)
    for bins in (
        freeze_bins(rng.lognormal(3, 1, 1_000)),
        freeze_bins(pl.Series(["x", "y", None, "x"]), categorical=True),
    ):
        again = FrozenBins.from_dict(json.loads(json.dumps(bins.to_dict())))
        assert again == bins
        assert psi(again, [1.0, 2.0] if bins.kind == "numeric" else ["x"]) == psi(
            bins, [1.0, 2.0] if bins.kind == "numeric" else ["x"]
        )
    with pytest.raises(ValueError, match="reference shares"):
        FrozenBins(kind="numeric", edges=(1.0,), reference_share=(1.0,))
    with pytest.raises(TypeError, match="numeric"):
        freeze_bins(pl.Series(["a", "b"]))


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
    bins = freeze_frame_bins(reference, numeric=["amount", "hour"], categorical=["channel"])
    table = psi_table(bins, current)
    assert table.columns == ["feature", "psi", "drifted"]
    assert table["feature"].to_list() == ["amount", "channel", "hour"]
    assert table["drifted"].to_list() == [True, False, False]
    assert table["psi"][0] == pytest.approx(psi(bins["amount"], current["amount"]))
    assert 0.02 < table["psi"][1] < PSI_ALERT
    assert table["psi"][2] < 0.01
    assert psi_table(bins, current, threshold=0.01)["drifted"].to_list() == [True, True, False]
    with pytest.raises(ValueError, match="lacks binned features"):
        psi_table(bins, current.drop("hour"))


# --------------------------------------------------------------------------- Evidently


def test_evidently_stattest_reports_our_psi() -> None:
    # Slow-ish (~15 s): importing evidently dominates.
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    stattest = evidently_psi_stattest()
    assert evidently_psi_stattest() is stattest  # registered once
    assert stattest.name == EVIDENTLY_STATTEST_NAME

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
            ValueDrift(column="amount", method=EVIDENTLY_STATTEST_NAME),
            ValueDrift(column="channel", method=EVIDENTLY_STATTEST_NAME),
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    values = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"]}
    ours_amount = psi(freeze_bins(ref["amount"].to_numpy()), cur["amount"].to_numpy())
    ours_channel = psi(freeze_bins(ref["channel"], categorical=True), cur["channel"])
    assert ours_amount > 0.1 and ours_channel > PSI_ALERT
    assert values["amount"] == pytest.approx(ours_amount, abs=1e-6)
    assert values["channel"] == pytest.approx(ours_channel, abs=1e-6)
