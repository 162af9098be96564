"""transaction_features (daily) and training_set (the time split as of a day)."""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs.common import check_results, concat_labels, concat_partitions
from fraud_assets.defs.partitions import daily_partitions, partition_day, window
from fraud_assets.lib.features import batch, definitions
from fraud_assets.lib.features.batch import batch_features
from fraud_assets.lib.features.definitions import (
    FEATURE_CODE_VERSION,
    FEATURE_ROW_KEYS,
    available_categoricals,
    feature_columns,
    terminal_lookback_days,
)
from fraud_assets.lib.quality import FEATURE_CHECKS, validate_features
from fraud_assets.lib.schema import SCENARIO
from fraud_assets.lib.time_split import SplitConfig, build_refit_set, build_training_set
from fraud_assets.lib.versioning import code_version, data_version

MATURITY_DAYS = settings.LABEL_MATURITY_DAYS
REACH_DAYS = terminal_lookback_days(MATURITY_DAYS)  # the furthest any window reaches back
_PARAMETERS = definitions.FEATURE_PARAMETERS  # conventions from the environment
FEATURES_CODE_VERSION = (
    f"{FEATURE_CODE_VERSION}-m{MATURITY_DAYS}-s{_PARAMETERS['small_amount']:g}"
    f"-n{'-'.join(map(str, _PARAMETERS['night_hours']))}-{code_version(definitions, batch)}"
)
SPLIT = SplitConfig(
    settings.TRAIN_DAYS, settings.DELAY_DAYS, settings.TEST_DAYS, maturity_days=MATURITY_DAYS
)
SPLITS = ("train", "validation", "test", "refit")


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="lake",
    group_name="features",
    code_version=FEATURES_CODE_VERSION,
    kinds={"polars", "parquet"},
    ins={
        # Mature terminal windows reach furthest back; labels count only once known.
        "raw_transactions": dg.AssetIn(partition_mapping=window(-REACH_DAYS, 0)),
        "fraud_labels": dg.AssetIn(partition_mapping=window(-REACH_DAYS, -1)),
    },
    check_specs=[
        dg.AssetCheckSpec(name, asset="transaction_features", blocking=True, description=desc)
        for name, desc in FEATURE_CHECKS.items()
    ],
    description="Point-in-time features of every transaction of the day (keys + feature vector).",
)
def transaction_features(
    context: dg.AssetExecutionContext, raw_transactions: dict, fraud_labels: dict
):
    day = partition_day(context)
    history = concat_partitions(raw_transactions)
    labels = concat_labels(fraud_labels)
    context.log.info(
        f"{day}: features from {len(raw_transactions or {})} raw partitions ({history.height} rows)"
        f" and {labels.height} label events"
    )
    df = batch_features(history, labels, day, maturity_days=MATURITY_DAYS)
    cats = available_categoricals(history.columns)
    version = data_version(df)
    yield dg.Output(
        df,
        data_version=dg.DataVersion(version),
        metadata={
            "data_version": version,
            "feature_code_version": FEATURES_CODE_VERSION,
            "features": len(feature_columns(cats)),
            "categoricals": ", ".join(cats) or "none",
            "terminal_risk_30d_mean": float(df["terminal_risk_30d"].mean() or 0.0),
            "terminal_risk_30d_mature_mean": float(df["terminal_risk_30d_mature"].mean() or 0.0),
        },
    )
    yield from check_results(
        "transaction_features",
        validate_features(df, [*FEATURE_ROW_KEYS, *feature_columns(cats)]),
        context.log,
    )


class TrainingSetConfig(dg.Config):
    """Set by the drift path: the first drifted day, for the post-drift split (judge the
    challenger on post-drift days, fit it on some). Empty: the usual split."""

    drift_start: str = ""


def _drift_start(raw: str, day: date) -> date | None:
    """The configured first drifted day, checked against the split it asks for."""
    if not raw:
        return None
    try:
        start = date.fromisoformat(raw)
    except ValueError:
        raise dg.Failure(
            f"training_set {day}: drift_start {raw!r} is not a YYYY-MM-DD day"
        ) from None
    try:
        SPLIT.post_drift_windows(day, start)
    except ValueError as exc:
        raise dg.Failure(f"training_set {day}: {exc}") from None
    return start


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="lake",
    group_name="training",
    code_version="training-set-v2",
    kinds={"polars"},
    ins={
        "transaction_features": dg.AssetIn(partition_mapping=window(-(SPLIT.total_days - 1), 0)),
        "raw_transactions": dg.AssetIn(partition_mapping=window(-(SPLIT.total_days - 1), 0)),
        "fraud_labels": dg.AssetIn(partition_mapping=window(-(SPLIT.total_days - 1), 0)),
    },
    description=f"Time split as of the day: {SPLIT.train_days} train days (last "
    f"{int(SPLIT.validation_share * 100)}% for early stopping), a {SPLIT.delay_days}-day gap "
    f"for label delay, {SPLIT.test_days} test days without cards already known compromised; and "
    f"the refit window (the {SPLIT.train_days} newest days at least {SPLIT.maturity_days} days "
    "old, labels known at the end of the day) that the deployed model is fitted on. After "
    "drift (config drift_start, set by the drift sensor): the post-drift split, the test window "
    "on mature post-drift days and the train window reaching into them (lib/time_split).",
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    transaction_features: dict,
    raw_transactions: dict,
    fraud_labels: dict,
) -> dg.Output[pl.DataFrame]:
    day = partition_day(context)
    features = concat_partitions(transaction_features)
    raw = concat_partitions(raw_transactions)
    truth_cols = ["transaction_id", "is_fraud", *([SCENARIO] if SCENARIO in raw.columns else [])]
    truth = raw.select(truth_cols) if "is_fraud" in raw.columns else None
    labels = concat_labels(fraud_labels)
    drift_start = _drift_start(config.drift_start, day)
    df = pl.concat(
        [
            build_training_set(features, labels, truth, day, SPLIT, drift_start),
            build_refit_set(features, labels, day, SPLIT),
        ],
        how="diagonal",
    )
    counts = {s: df.filter(pl.col("split") == s) for s in SPLITS}
    windows = SPLIT.windows(day)
    used = windows if drift_start is None else SPLIT.post_drift_windows(day, drift_start)
    missing = [
        (windows["train"][0] + timedelta(days=i)).isoformat()
        for i in range(SPLIT.total_days)
        if (windows["train"][0] + timedelta(days=i)).isoformat() not in (transaction_features or {})
    ]
    if missing:
        raise dg.Failure(
            f"training_set {day}: transaction_features missing for {len(missing)} days "
            f"({missing[0]} .. {missing[-1]}); materialize them first"
        )
    meta = {f"{s}_rows": d.height for s, d in counts.items()} | {
        f"{s}_fraud_rate": float(d["label"].mean() or 0.0) for s, d in counts.items()
    }
    meta |= {k: f"{a} .. {b}" for k, (a, b) in used.items()}
    meta["drift_start"] = config.drift_start or "none"
    meta["data_version"] = data_version(df)
    return dg.Output(df, data_version=dg.DataVersion(meta["data_version"]), metadata=meta)
