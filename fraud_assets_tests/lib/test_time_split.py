from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from fraud_assets.lib.time_split import SplitConfig, build_refit_set, build_training_set

LAST = date(2026, 3, 31)
CFG = SplitConfig(train_days=10, delay_days=3, test_days=5, validation_share=0.2)
NO_LABELS = pl.DataFrame(
    schema={"transaction_id": pl.String, "is_fraud": pl.Int8, "known_at": pl.Datetime("us", "UTC")}
)


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_windows_are_contiguous_and_sized() -> None:
    w = CFG.windows(LAST)
    assert w["test"] == (date(2026, 3, 27), LAST)
    assert w["gap"] == (date(2026, 3, 24), date(2026, 3, 26))
    assert w["train"] == (date(2026, 3, 14), date(2026, 3, 23))
    assert CFG.total_days == 18


def _features(rows: list[tuple[str, date, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "ts": [_at(r[1]) for r in rows],
            "customer_id": [r[2] for r in rows],
            "terminal_id": ["t"] * len(rows),
            "amount": [10.0] * len(rows),
        }
    )


def test_split_labels_and_known_compromised_exclusion() -> None:
    rows = [
        ("tr_known", date(2026, 3, 15), "c1"),  # fraud known before the cutoff
        ("tr_late", date(2026, 3, 16), "c2"),  # fraud known only after the cutoff
        ("tr_val", date(2026, 3, 23), "c3"),  # in the validation slice (last 20% of train)
        ("gap", date(2026, 3, 25), "c4"),  # in the gap: not used
        ("te_c1", date(2026, 3, 28), "c1"),  # c1 already known compromised: excluded
        ("te_c2", date(2026, 3, 28), "c2"),  # c2 not known yet at the cutoff: kept
        ("te_c5", date(2026, 3, 30), "c5"),
    ]
    cutoff = datetime(2026, 3, 27, tzinfo=UTC)
    labels = pl.DataFrame(
        {
            "transaction_id": ["tr_known", "tr_late", "te_c5"],
            "is_fraud": [1, 1, 1],
            "known_at": [cutoff - timedelta(seconds=1), cutoff, cutoff + timedelta(days=9)],
        },
        schema={
            "transaction_id": pl.String,
            "is_fraud": pl.Int8,
            "known_at": pl.Datetime("us", "UTC"),
        },
    )
    out = build_training_set(_features(rows), labels, None, LAST, CFG)
    by_id = {r["transaction_id"]: r for r in out.iter_rows(named=True)}
    assert set(by_id) == {"tr_known", "tr_late", "tr_val", "te_c2", "te_c5"}
    assert by_id["tr_known"]["label"] == 1 and by_id["tr_known"]["split"] == "train"
    assert by_id["tr_late"]["label"] == 0  # not known when the model is trained
    assert by_id["tr_val"]["split"] == "validation"
    assert by_id["te_c5"]["split"] == "test" and by_id["te_c5"]["label"] == 1  # eventual label
    assert by_id["te_c2"]["label"] == 0
    # With simulator truth, test labels come from it.
    truth = pl.DataFrame(
        {"transaction_id": ["te_c2"], "is_fraud": [1]},
        schema={"transaction_id": pl.String, "is_fraud": pl.Int8},
    )
    out = build_training_set(_features(rows), labels, truth, LAST, CFG)
    assert out.filter(pl.col("transaction_id") == "te_c2")["label"].item() == 1


def test_refit_window_is_the_newest_mature_one_with_labels_known_at_the_end_of_the_day() -> None:
    cfg = SplitConfig(train_days=10, delay_days=3, test_days=5, maturity_days=4)
    assert cfg.windows(LAST)["refit"] == (date(2026, 3, 18), date(2026, 3, 27))
    rows = [
        ("old", date(2026, 3, 17), "c1"),  # before the refit window
        ("first", date(2026, 3, 18), "c1"),
        ("late", date(2026, 3, 20), "c2"),  # its label arrives after the day: unknown
        ("known", date(2026, 3, 27), "c3"),  # in the test window too: refit rows may overlap it
        ("young", date(2026, 3, 28), "c3"),  # younger than the maturity: not used
    ]
    end_of_day = datetime(2026, 4, 1, tzinfo=UTC)
    labels = pl.DataFrame(
        {
            "transaction_id": ["late", "known"],
            "is_fraud": [1, 1],
            "known_at": [end_of_day, end_of_day - timedelta(seconds=1)],
        },
        schema={
            "transaction_id": pl.String,
            "is_fraud": pl.Int8,
            "known_at": pl.Datetime("us", "UTC"),
        },
    )
    out = build_refit_set(_features(rows), labels, LAST, cfg)
    assert out["transaction_id"].to_list() == ["first", "late", "known"]
    assert out["label"].to_list() == [0, 0, 1]
    assert set(out["split"]) == {"refit"}


def test_a_maturity_beyond_the_split_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="maturity_days"):
        SplitConfig(train_days=10, delay_days=3, test_days=5, maturity_days=9)


def test_the_validation_slice_holds_at_least_two_days() -> None:
    """The literature's 7 train days: 20% would be one day; the slice keeps two."""
    cfg = SplitConfig(train_days=7, delay_days=7, test_days=7, maturity_days=7)
    start, end = cfg.windows(LAST)["train"]
    rows = [(f"tx{i}", start + timedelta(days=i), f"c{i}") for i in range((end - start).days + 1)]
    out = build_training_set(_features(rows), NO_LABELS, None, LAST, cfg)
    validation = out.filter(pl.col("split") == "validation")["ts"].dt.date().unique().sort()
    assert validation.to_list() == [end - timedelta(days=1), end]


def test_a_withdrawn_fraud_label_trains_as_genuine_once_the_correction_is_known() -> None:
    rows = [
        ("tr_fixed", date(2026, 3, 15), "c1"),  # fraud, withdrawn before the cutoff
        ("tr_open", date(2026, 3, 16), "c2"),  # fraud, withdrawn only after the cutoff
        ("te_fixed", date(2026, 3, 28), "c3"),  # test row: its eventual label is the latest
    ]
    cutoff = datetime(2026, 3, 27, tzinfo=UTC)
    labels = pl.DataFrame(
        {
            "transaction_id": ["tr_fixed", "tr_fixed", "tr_open", "tr_open", "te_fixed", "te_fixed"],
            "is_fraud": [1, 0, 1, 0, 1, 0],
            "known_at": [
                cutoff - timedelta(days=8), cutoff - timedelta(days=1),
                cutoff - timedelta(days=8), cutoff + timedelta(days=1),
                cutoff + timedelta(days=2), cutoff + timedelta(days=3),
            ],
        },
        schema=NO_LABELS.schema,
    )  # fmt: skip
    out = build_training_set(_features(rows), labels, None, LAST, CFG)
    got = dict(out.select("transaction_id", "label").iter_rows())
    assert got == {"tr_fixed": 0, "tr_open": 1, "te_fixed": 0}


def test_the_post_drift_split_fits_on_and_judges_on_mature_post_drift_days() -> None:
    """Drift from 3-24 seen by 3-31 (maturity 3 days; the usual train window ends 3-23):
    mature post-drift days 3-24..3-28; the later half is the test window, the earlier half
    ends the train window (no gap)."""
    cfg = SplitConfig(train_days=10, delay_days=3, test_days=5, maturity_days=3)
    start = date(2026, 3, 24)
    w = cfg.post_drift_windows(LAST, start)
    assert w["test"] == (date(2026, 3, 26), date(2026, 3, 28))
    assert w["train"] == (date(2026, 3, 16), date(2026, 3, 25))
    assert w["refit"] == cfg.windows(LAST)["refit"]  # the deployed model: the same freshest data
    # A drift the usual train window already reaches past: the usual split.
    assert cfg.post_drift_windows(LAST, date(2026, 3, 10)) == cfg.windows(LAST)
    # Too early: fewer than two mature post-drift days.
    with pytest.raises(ValueError, match="mature post-drift days"):
        cfg.post_drift_windows(LAST, date(2026, 3, 28))

    rows = [(f"t{d}_{c}", date(2026, 3, d), f"c{c}") for d in range(14, 32) for c in range(300)]
    late = datetime(2026, 3, 30, tzinfo=UTC)  # known after the test start, before now
    labels = pl.DataFrame(
        {"transaction_id": ["t25_3"], "is_fraud": [1], "known_at": [late]},
        schema=NO_LABELS.schema,
    )
    df = build_training_set(_features(rows), labels, None, LAST, cfg, drift_start=start)
    days = {s: set(df.filter(pl.col("split") == s)["ts"].dt.day()) for s in ("train", "test")}
    assert days["test"] == {26, 27, 28} and max(days["train"]) == 25
    # Validation holds out cards, not days: post-drift days are in train and validation.
    val = df.filter(pl.col("split") == "validation")
    assert set(val["customer_id"]).isdisjoint(df.filter(pl.col("split") == "train")["customer_id"])
    assert 24 in set(val["ts"].dt.day()) and 24 in days["train"]
    assert 0.1 < val.height / (val.height + df.filter(pl.col("split") == "train").height) < 0.3
    # Labels are those known now (a label known after the test start counts in training).
    assert df.filter(pl.col("transaction_id") == "t25_3")["label"].to_list() == [1]
