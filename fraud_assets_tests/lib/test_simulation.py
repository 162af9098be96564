from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib import simulation
from fraud_assets.lib.simulation import DriftScenario, SimulationConfig, Simulator

CONFIG = SimulationConfig(seed=3, size=0.5)
START = date(2026, 3, 1)


def _clear_caches() -> None:
    simulation._simulate_day.cache_clear()
    simulation.build_population.cache_clear()


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


def test_a_day_is_identical_alone_or_after_others_in_any_order() -> None:
    days = [START + timedelta(days=i) for i in range(4)]
    _clear_caches()
    forward = {d: _parquet_bytes(Simulator(CONFIG).transactions(d)) for d in days}
    _clear_caches()
    backward = {d: _parquet_bytes(Simulator(CONFIG).transactions(d)) for d in reversed(days)}
    _clear_caches()
    alone = _parquet_bytes(Simulator(CONFIG).transactions(days[2]))
    assert forward == backward
    assert alone == forward[days[2]]
    # ... and a different seed really gives different data (the test can fail).
    assert (
        _parquet_bytes(Simulator(SimulationConfig(seed=4, size=0.5)).transactions(days[2])) != alone
    )


def test_canonical_schema_and_partition_day() -> None:
    df = Simulator(CONFIG).transactions(START)
    assert df.columns[:5] == ["transaction_id", "ts", "customer_id", "terminal_id", "amount"]
    assert df.schema["ts"] == pl.Datetime("us", "UTC")
    assert df["transaction_id"].is_unique().all()
    assert df["ts"].dt.date().unique().to_list() == [START]
    assert df["ts"].is_sorted()
    assert (df["amount"] > 0).all()
    assert set(df["channel"].unique()) == {"online", "card_present"}


def test_fraud_rate_and_every_scenario_in_band() -> None:
    sim = Simulator(SimulationConfig(seed=5, size=1.0))
    df = pl.concat([sim.transactions(START + timedelta(days=i)) for i in range(30)])
    rate = df["is_fraud"].mean()
    assert 0.005 <= rate <= 0.011, rate
    shares = dict(df.group_by("fraud_scenario").len().iter_rows())
    for scenario in (
        "large_amount",
        "compromised_terminal",
        "compromised_card",
        "card_testing",
        "account_takeover",
    ):
        assert shares.get(scenario, 0) / df.height > 0.0003, (scenario, shares)
    assert "new_pattern" not in shares  # only with a concept-drift scenario
    assert (df["is_fraud"] == (df["fraud_scenario"] != "none")).all()


def test_compromised_terminal_is_fraud_for_weeks_then_clean() -> None:
    sim = Simulator(CONFIG)
    days = [START + timedelta(days=i) for i in range(40)]
    frames = {d: sim.transactions(d) for d in days}
    first = frames[days[0]].filter(pl.col("fraud_scenario") == "compromised_terminal")
    terminal = first["terminal_id"][0]
    hits = [
        d for d in days if frames[d].filter(pl.col("terminal_id") == terminal)["is_fraud"].sum()
    ]
    # Every transaction at a compromised terminal is fraud while it is compromised.
    for d in hits:
        at_t = frames[d].filter(pl.col("terminal_id") == terminal)
        assert (at_t["is_fraud"] == 1).all()
    assert (hits[-1] - hits[0]).days <= simulation.SimulationConfig().terminal_compromise_days


def test_card_testing_is_tiny_online_amounts_then_a_large_one() -> None:
    sim = Simulator(CONFIG)
    days = [sim.transactions(START + timedelta(days=i)) for i in range(10)]
    df = pl.concat(days).filter(pl.col("fraud_scenario") == "card_testing")
    assert df["customer_id"].n_unique() >= 3
    assert (df["channel"] == "online").all()
    for _, burst in df.sort("ts").group_by("customer_id", maintain_order=True):
        amounts = burst["amount"].to_list()
        assert len(amounts) >= 4
        assert max(amounts[:-1]) <= 3.0
        assert amounts[-1] >= 200


def test_card_present_purchases_happen_near_home() -> None:
    sim = Simulator(CONFIG)
    pop = sim.population
    df = sim.transactions(START).filter(
        (pl.col("channel") == "card_present") & (pl.col("fraud_scenario") == "none")
    )
    cust = df["customer_id"].str.slice(1).cast(pl.Int64).to_numpy()
    term = df["terminal_id"].str.slice(1).cast(pl.Int64).to_numpy()
    assert (pop.customer_nearby[cust] == term[:, None]).any(axis=1).all()


def test_label_delays_and_every_label_arrives_exactly_once() -> None:
    sim = Simulator(CONFIG)
    day = START
    tx = sim.day_with_label_times(day)
    delay_days = (tx["known_at"] - tx["ts"]).dt.total_seconds() / 86_400
    fraud = tx["is_fraud"] == 1
    assert delay_days.filter(fraud).min() >= 1.0
    assert delay_days.filter(fraud).max() <= 30.0
    assert np.allclose(delay_days.filter(~fraud).to_numpy(), 30.0)
    # Labels of `day` show up spread over the following days, each exactly once.
    horizon = CONFIG.max_label_delay_days + 1
    labels = pl.concat([sim.labels(day + timedelta(days=i)) for i in range(1, horizon)])
    mine = labels.filter(pl.col("transaction_id").str.starts_with(day.strftime("%Y%m%d")))
    assert mine.height == tx.height
    assert mine["transaction_id"].is_unique().all()
    # A label is published on the day it becomes known, never before.
    for i in (1, 5, 31):
        d = day + timedelta(days=i)
        lo = datetime(d.year, d.month, d.day, tzinfo=UTC)
        got = sim.labels(d)
        assert got["known_at"].min() >= lo
        assert got["known_at"].max() < lo + timedelta(days=1)
    assert (
        sim.labels(day)
        .filter(pl.col("transaction_id").str.starts_with(day.strftime("%Y%m%d")))
        .height
        == 0
    )


def test_covariate_drift_starts_on_its_day() -> None:
    drift_day = START + timedelta(days=5)
    base = Simulator(CONFIG)
    drifted = base.with_drift(DriftScenario("covariate", drift_day, amount_factor=1.6))
    before = drifted.transactions(drift_day - timedelta(days=1))
    assert before.equals(base.transactions(drift_day - timedelta(days=1)))
    after = drifted.transactions(drift_day)
    normal = base.transactions(drift_day)
    legit = pl.col("fraud_scenario") == "none"
    ratio = after.filter(legit)["amount"].median() / normal.filter(legit)["amount"].median()
    assert 1.3 < ratio < 2.0
    online = lambda df: (df["channel"] == "online").mean()  # noqa: E731
    assert online(after) > online(normal) + 0.15


def test_new_fraud_pattern_appears_only_from_its_start() -> None:
    drift_day = START + timedelta(days=3)
    sim = Simulator(CONFIG).with_drift(DriftScenario("new_fraud_pattern", drift_day))
    before = sim.transactions(drift_day - timedelta(days=1))
    after = sim.transactions(drift_day)
    assert (before["fraud_scenario"] == "new_pattern").sum() == 0
    new = after.filter(pl.col("fraud_scenario") == "new_pattern")
    assert new.height > 0
    assert (new["ts"].dt.hour() < 5).all()
    assert (new["merchant_category"] == "digital_goods").all()


def test_size_scales_volume() -> None:
    small = Simulator(SimulationConfig(seed=1, size=0.5)).transactions(START).height
    large = Simulator(SimulationConfig(seed=1, size=5.0)).transactions(START).height
    assert 8 < large / small < 12


@pytest.mark.parametrize("text", ['[{"kind": "covariate", "start": "2026-04-01"}]'])
def test_drift_from_json(text: str) -> None:
    (scenario,) = SimulationConfig.parse_drift(text)
    assert scenario.kind == "covariate"
    assert scenario.start == date(2026, 4, 1)


def test_realistic_fraud_is_harder_than_classic() -> None:
    """Compromised cards spend x1.5-3 mostly at terminals new to the card; takeovers are
    bursts of online purchases at merchants the customer never used; a compromised
    terminal's frauds are reported late; classic keeps the one-feature tells."""
    days = [START + timedelta(days=i) for i in range(20)]
    frames = {}
    for difficulty in ("classic", "realistic"):
        sim = Simulator(SimulationConfig(seed=4, size=0.5, difficulty=difficulty))
        frames[difficulty] = pl.concat([sim.day_with_label_times(d) for d in days])
        pop = sim.population
    real, classic = frames["realistic"], frames["classic"]
    assert "account_takeover" not in set(classic["fraud_scenario"])
    # Same legitimate traffic for a given population: compare the card's usual spend.
    card = real.filter(pl.col("fraud_scenario") == "compromised_card")
    cust = card["customer_id"].str.slice(1).cast(pl.Int64).to_numpy()
    term = card["terminal_id"].str.slice(1).cast(pl.Int64).to_numpy()
    usual = np.concatenate([pop.customer_nearby, pop.customer_online_merchants], axis=1)
    new_terminal = ~(usual[cust] == term[:, None]).any(axis=1)
    assert 0.5 < new_terminal.mean() < 0.9
    takeover = real.filter(pl.col("fraud_scenario") == "account_takeover")
    assert takeover.height > 8 and (takeover["channel"] == "online").all()
    for _, burst in takeover.group_by("customer_id", pl.col("ts").dt.date()):
        assert (burst["ts"].max() - burst["ts"].min()) <= timedelta(hours=3)

    def delay(df: pl.DataFrame, scenario: str) -> float:
        rows = df.filter(pl.col("fraud_scenario") == scenario)
        return float(((rows["known_at"] - rows["ts"]).dt.total_seconds() / 86_400).median())

    assert delay(real, "compromised_terminal") > delay(classic, "compromised_terminal") + 4
    assert abs(delay(real, "compromised_card") - delay(classic, "compromised_card")) < 2
    with pytest.raises(ValueError, match="difficulty"):
        SimulationConfig(difficulty="nightmare")
