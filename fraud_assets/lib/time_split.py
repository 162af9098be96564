"""Time-based train/test split for fraud: train window, a gap for label delay, test window.

At the moment the model is trained (the start of the test window) only labels already
known can be used: a fraud whose chargeback has not arrived yet looks genuine in training,
as it would in production. Cards already known to be compromised before the test window
are dropped from it: they would be blocked already and only flatter the metrics.

After drift that started on day S (``drift_start``), that split would train and judge on
pre-drift days for three weeks. The post-drift split instead ends the test window on the
newest mature day (``maturity_days`` old) and puts the later half of the mature days since S
in it, the earlier half at the end of the train window (no gap: every label is read as known
now, the train window's as mature as the test's); early stopping then holds out a fifth of
the *cards* of the train window rather than its last days, which would be the post-drift
ones. The challenger is thus fitted on post-drift days and judged against the champion on
later post-drift days. Once S is old enough for the usual train window to reach past it, the
usual split already does both, and is used.

The evaluated model is then *not* the one deployed: its newest data is older than the gap and
the test window. The refit rows (split ``refit``) are the newest window whose labels are
mature at the end of the day (``maturity_days`` old): the model that serves is fitted on
them with the evaluated sibling's recipe. The refit window overlaps the test window, so a
refit is never scored on it; its quality is its sibling's estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from fraud_assets.lib.labels import labels_as_of, latest_labels
from fraud_assets.lib.schema import SCENARIO


@dataclass(frozen=True)
class SplitConfig:
    train_days: int = 28
    delay_days: int = 7
    test_days: int = 14
    validation_share: float = 0.2  # last part of the train window, for early stopping
    # ... and at least this many days of it (one day's weekday pattern is not a sample).
    min_validation_days: int = 2
    # Age at which a day's labels count as mature enough to refit on (the trade-off: a
    # smaller value gives fresher data whose late frauds still look genuine).
    maturity_days: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.maturity_days <= self.delay_days + self.test_days:
            raise ValueError(
                f"maturity_days must be between 0 and delay_days + test_days "
                f"({self.delay_days + self.test_days}), got {self.maturity_days}"
            )

    @property
    def total_days(self) -> int:
        return self.train_days + self.delay_days + self.test_days

    def windows(self, last_day: date) -> dict[str, tuple[date, date]]:
        """Inclusive day ranges for train, gap and test, ending on `last_day`."""
        test_start = last_day - timedelta(days=self.test_days - 1)
        gap_start = test_start - timedelta(days=self.delay_days)
        train_start = gap_start - timedelta(days=self.train_days)
        return {
            "train": (train_start, gap_start - timedelta(days=1)),
            "gap": (gap_start, test_start - timedelta(days=1)),
            "test": (test_start, last_day),
            "refit": (
                last_day - timedelta(days=self.maturity_days + self.train_days - 1),
                last_day - timedelta(days=self.maturity_days),
            ),
        }

    def post_drift_windows(self, last_day: date, drift_start: date) -> dict[str, tuple[date, date]]:
        """Windows for a retraining after drift that started on ``drift_start`` (see the
        module docstring); the usual ones when their train window already reaches past it.
        Raises ValueError with fewer than two mature post-drift days."""
        usual = self.windows(last_day)
        if drift_start <= usual["train"][1]:
            return usual
        mature_end = last_day - timedelta(days=self.maturity_days)
        post = (mature_end - drift_start).days + 1
        if post < 2:
            raise ValueError(
                f"drift since {drift_start}: {max(post, 0)} mature post-drift days by "
                f"{last_day}, at least 2 needed (labels count as mature after "
                f"{self.maturity_days} days)"
            )
        test_start = drift_start + timedelta(days=post // 2)
        train_end = test_start - timedelta(days=1)
        return {
            "train": (train_end - timedelta(days=self.train_days - 1), train_end),
            "gap": (test_start, train_end),  # empty
            "test": (test_start, mature_end),
            "refit": usual["refit"],
        }


VALIDATION_BUCKETS = 5  # post-drift split: one card in this many is held out for validation


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def build_training_set(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    truth: pl.DataFrame | None,
    last_day: date,
    config: SplitConfig,
    drift_start: date | None = None,
) -> pl.DataFrame:
    """Feature rows tagged `split` (train / validation / test) with a `label` column.

    features: transaction_features rows (keys + features) covering the windows.
    labels: label events (transaction_id, is_fraud, known_at), any range.
    truth: optional (transaction_id, is_fraud) ground truth for the test window; without it
        the test labels are those known by now (fine for historical backtests). A
        `fraud_scenario` column in it (the simulator's truth) is kept on the test rows, for
        per-scenario recall; it is never a feature.
    drift_start: the first drifted day, for the post-drift split (module docstring).
    """
    day = pl.col("ts").dt.date()
    w = config.windows(last_day)
    post_drift = drift_start is not None and drift_start > w["train"][1]
    if post_drift:
        assert drift_start is not None
        w = config.post_drift_windows(last_day, drift_start)
        known = _known_labels(labels, _midnight(last_day + timedelta(days=1)))  # known now
        held_out = pl.col("customer_id").hash(seed=0) % VALIDATION_BUCKETS == 0
    else:
        # The model is trained at the start of the test window, with the labels known then.
        known = _known_labels(labels, _midnight(w["test"][0]))
        train_days = (w["train"][1] - w["train"][0]).days + 1
        val_days = max(config.min_validation_days, round(train_days * config.validation_share))
        val_days = max(1, min(val_days, train_days - 1))  # and some days left to train on
        held_out = day >= w["train"][1] - timedelta(days=val_days - 1)
    train = _labelled(features, w["train"], known).with_columns(
        split=pl.when(held_out).then(pl.lit("validation")).otherwise(pl.lit("train"))
    )
    eventual = (
        truth.select(
            "transaction_id",
            pl.col("is_fraud").alias("eventual"),
            *([SCENARIO] if SCENARIO in truth.columns else []),
        )
        if truth is not None and "is_fraud" in truth.columns
        else latest_labels(labels).select("transaction_id", eventual=pl.col("is_fraud"))
    )
    compromised = (
        features.filter(day < w["test"][0])
        .join(known.filter(pl.col("known_label") == 1), on="transaction_id")
        .select("customer_id")
        .unique()
    )
    test = (
        features.filter(day.is_between(*w["test"]))
        .join(compromised, on="customer_id", how="anti")
        .join(eventual, on="transaction_id", how="left")
        .with_columns(label=pl.col("eventual").fill_null(0).cast(pl.Int8), split=pl.lit("test"))
        .drop("eventual")
    )
    return pl.concat([train, test], how="diagonal").sort("ts", "transaction_id")


def build_refit_set(
    features: pl.DataFrame, labels: pl.DataFrame, last_day: date, config: SplitConfig
) -> pl.DataFrame:
    """The refit window's rows (split ``refit``), labelled with what is known at the end of
    `last_day`: the freshest data a deployed model can honestly be fitted on."""
    known = _known_labels(labels, _midnight(last_day + timedelta(days=1)))
    refit = _labelled(features, config.windows(last_day)["refit"], known)
    return refit.with_columns(split=pl.lit("refit")).sort("ts", "transaction_id")


def _known_labels(labels: pl.DataFrame, cutoff: datetime) -> pl.DataFrame:
    """(transaction_id, known_label): the label in force before `cutoff` (a withdrawn fraud
    label is genuine again)."""
    return labels_as_of(labels, cutoff).rename({"is_fraud": "known_label"})


def _labelled(features: pl.DataFrame, days: tuple[date, date], known: pl.DataFrame) -> pl.DataFrame:
    """Feature rows of an inclusive day range with `label` = the known label (else 0)."""
    return (
        features.filter(pl.col("ts").dt.date().is_between(*days))
        .join(known, on="transaction_id", how="left")
        .with_columns(label=pl.col("known_label").fill_null(0).cast(pl.Int8))
        .drop("known_label")
    )
