"""Drift detection on simulated data: silent for a month, loud on the first drifted day."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from fraud_assets.lib.contracts import PSI_ALERT
from fraud_assets.lib.features.batch import batch_features
from fraud_assets.lib.features.definitions import (
    DRIFT_FEATURES_EXCLUDED,
    NUMERIC_FEATURES,
    available_categoricals,
)
from fraud_assets.lib.monitoring.drift import freeze_frame_bins, psi_table
from fraud_assets.lib.simulation import DriftScenario, SimulationConfig, Simulator

TRAIN_END = date(2026, 3, 31)
DRIFT_DAY = TRAIN_END + timedelta(days=31)


@pytest.fixture(scope="module")
def daily_psi() -> dict[date, float]:
    sim = Simulator(
        SimulationConfig(seed=13, size=0.5, drift=(DriftScenario("covariate", DRIFT_DAY),))
    )
    first = TRAIN_END - timedelta(days=13)
    days = [
        first - timedelta(days=30) + timedelta(days=i) for i in range((DRIFT_DAY - first).days + 31)
    ]
    history = pl.concat([sim.transactions(d) for d in days])
    labels = pl.concat([sim.labels(d) for d in days])
    feats = batch_features(history, labels, first, DRIFT_DAY)
    cats = available_categoricals(history.columns)
    monitored = [c for c in NUMERIC_FEATURES if c not in DRIFT_FEATURES_EXCLUDED]
    train = feats.filter(pl.col("ts").dt.date() <= TRAIN_END)
    bins = freeze_frame_bins(train, numeric=monitored, categorical=cats)
    out = {}
    for day, part in feats.filter(pl.col("ts").dt.date() > TRAIN_END).group_by(
        pl.col("ts").dt.date()
    ):
        out[day[0]] = float(psi_table(bins, part)["psi"].max())
    return out


def test_no_alert_on_thirty_undrifted_days(daily_psi: dict[date, float]) -> None:
    before = {d: p for d, p in daily_psi.items() if d < DRIFT_DAY}
    assert len(before) == 30
    assert max(before.values()) < PSI_ALERT, before


def test_the_first_drifted_day_alerts(daily_psi: dict[date, float]) -> None:
    assert daily_psi[DRIFT_DAY] > PSI_ALERT
