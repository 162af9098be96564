"""serving_metrics, live_performance and business_metrics: the scoring service's logs of a day.

They read the service's prediction, error and feedback logs (the `serving_logs` resource;
in the graph, the external asset `scoring_service_logs`) and the stored `fraud_labels`
partitions from the day onwards (labels arrive late, so a day's numbers grow as it is
re-materialized later; the dependency is declared for lineage, the lake is read directly).
The logic lives in `fraud_assets.lib.monitoring`; these assets only read, log and
publish. Metadata values are plain floats/ints (None where undefined) so the UI plots them;
the drift sensor reads `live_ap_champion` and `n_labelled` of live_performance.
"""

import math
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs.partitions import daily_partitions, partition_day, window
from fraud_assets.lib.contracts import CHALLENGER, LOGGED_VARIANTS
from fraud_assets.lib.monitoring import ALL
from fraud_assets.resources.storage import LakeStorage, ServingLogs

LIVE_CODE_VERSION = "live-v1"
TREND_DAYS = 30  # days of live AP on the trend plot
LABEL_ASSET = "fraud_labels"
# Fraud is confirmed late: all of a day's labels are in within this many days (the
# simulator's cap and typical chargeback windows); the refresh schedule uses it too.
LABEL_HORIZON_DAYS = 30

scoring_service_logs = dg.AssetSpec(
    "scoring_service_logs",
    group_name="monitoring",
    kinds={"bentoml"},
    description="Written by the scoring service (`bentoml serve`), not by Dagster: the "
    "prediction log and error log (a folder per day) and the feedback log, under the "
    "serving-state root (FRAUD_SERVING_STATE; layout in lib/contracts.py).",
)


def _clean(value: Any) -> Any:
    """Metadata value: numpy scalars as Python numbers, NaN as None (omitted from plots)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _md_table(frame: pl.DataFrame, columns: list[str]) -> dg.MetadataValue:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return f"{v:,.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.select(columns).rows()
    ]
    return dg.MetadataValue.md("\n".join(lines))


def _warn_all(context: dg.AssetExecutionContext, problems: list[str]) -> None:
    for problem in problems:
        context.log.warning(problem)


def _with_day(frame: pl.DataFrame, day: date) -> pl.DataFrame:
    return frame.select(pl.lit(day).alias("day"), pl.all())


def _labelled_predictions(
    context: dg.AssetExecutionContext, storage: LakeStorage, logs: ServingLogs, day: date
) -> pl.DataFrame:
    """The day's predictions joined with the latest label known for each transaction."""
    from fraud_assets.lib.labels import latest_labels
    from fraud_assets.lib.monitoring.logs import (
        join_labels,
        read_feedback,
        read_label_partitions,
        read_predictions,
    )

    predictions, problems = read_predictions(logs.state_root, day)
    feedback, feedback_problems = read_feedback(logs.state_root)
    _warn_all(context, problems + feedback_problems)
    pipeline = read_label_partitions(storage.data_root, LABEL_ASSET, day)
    labels = latest_labels(pipeline, feedback)
    context.log.info(
        f"{day}: {predictions.height} prediction rows; labels known: {pipeline.height} pipeline "
        f"events from {day} on, {feedback.height} feedback rows ({labels.height} transactions)"
    )
    if not predictions.height:
        context.log.warning(f"{day}: no predictions logged under {logs.state_root}")
    return join_labels(predictions, labels)


def _live_asset(description: str, *, labels: bool = True) -> Any:
    """The shape every asset here shares: a daily partition of the lake, group monitoring,
    fed by the service's logs (and the labels of the day's transactions as they arrive)."""
    deps: list[Any] = [scoring_service_logs]
    if labels:
        deps.append(dg.AssetDep(LABEL_ASSET, partition_mapping=window(0, LABEL_HORIZON_DAYS)))
    return dg.asset(
        partitions_def=daily_partitions,
        io_manager_key="lake",
        group_name="monitoring",
        code_version=LIVE_CODE_VERSION,
        kinds={"polars"},
        deps=deps,
        description=description,
    )


@_live_asset(
    "What the scoring service did that day (UTC), from its prediction and error "
    "logs: requests, rows scored, latency p50/p95/p99 per request, error rate, traffic per "
    "variant (champion / challenger / shadow), model versions seen.",
    labels=False,
)
def serving_metrics(
    context: dg.AssetExecutionContext, serving_logs: ServingLogs
) -> dg.Output[pl.DataFrame]:
    from fraud_assets.lib.monitoring import serving
    from fraud_assets.lib.monitoring.logs import read_errors, read_predictions

    day = partition_day(context)
    predictions, problems = read_predictions(serving_logs.state_root, day)
    errors, error_problems = read_errors(serving_logs.state_root, day)
    _warn_all(context, problems + error_problems)
    table = serving.serving_metrics(predictions, errors)
    overall = table.filter(pl.col("variant") == ALL).row(0, named=True)
    per_variant = {r["variant"]: r for r in table.iter_rows(named=True)}
    by_status = serving.errors_by_status(errors)
    if not predictions.height:
        context.log.warning(f"{day}: no predictions logged under {serving_logs.state_root}")
    context.log.info(
        f"{day}: {overall['requests']} requests, {overall['rows']} rows scored, "
        f"{errors.height} errors, p99 latency {overall['latency_p99_ms']} ms"
    )
    answered = overall["rows"]
    metadata: dict[str, Any] = {
        "requests": int(overall["requests"]),
        "rows_scored": int(answered),
        "rows_logged": predictions.height,
        "latency_p50_ms": _clean(overall["latency_p50_ms"]),
        "latency_p95_ms": _clean(overall["latency_p95_ms"]),
        "latency_p99_ms": _clean(overall["latency_p99_ms"]),
        "errors": errors.height,
        "errors_4xx": by_status["4xx"],
        "errors_5xx": by_status["5xx"],
        "error_rate": _clean(overall["error_rate"]),
        "challenger_share": _clean(
            per_variant[CHALLENGER]["rows"] / answered if answered else math.nan
        ),
        "model_versions": "; ".join(
            f"{v}: {per_variant[v]['model_versions']}"
            for v in LOGGED_VARIANTS
            if per_variant[v]["rows"]
        )
        or "none",
        "skipped_lines": len(problems) + len(error_problems),
        "serving_state": dg.MetadataValue.path(serving_logs.state_root),
        "summary": _md_table(
            table,
            ["variant", "rows", "requests", "latency_p50_ms", "latency_p99_ms", "model_versions"],
        ),
    }
    for variant in LOGGED_VARIANTS:
        metadata[f"rows_{variant}"] = int(per_variant[variant]["rows"])
    return dg.Output(_with_day(table, day), metadata=metadata)


def _ap_history_png(storage: LakeStorage, day: date, today: pl.DataFrame) -> str | None:
    """PNG of AP per variant over the last TREND_DAYS days (earlier partitions of this
    asset from the lake), or None when no day has a defined AP."""
    from fraud_assets.lib.monitoring.logs import read_history
    from fraud_assets.lib.reports.plots import ap_trend_png

    start = day - timedelta(days=TREND_DAYS - 1)
    days = [start + timedelta(days=k) for k in range(TREND_DAYS - 1)]
    history = read_history(storage.data_root, "live_performance", days)
    frames = [today.select("day", "variant", "ap")]
    if history.height and {"day", "variant", "ap"} <= set(history.columns):
        frames.insert(0, history.select("day", "variant", pl.col("ap").cast(pl.Float64)))
    points = pl.concat(frames, how="vertical_relaxed").filter(pl.col("ap").is_not_null())
    if not points.height:
        return None
    path = storage.report_path("live_performance", f"{day.isoformat()}.png")
    ap_trend_png(points, path, start=start, end=day, floor=settings.LIVE_AP_FLOOR)
    return str(path)


@_live_asset(
    "The day's predictions joined with the labels known so far (fraud_labels from "
    "the day on + service feedback, latest wins): per variant labelled share, AP, precision "
    "and recall at the alert rule (decision != approve), and the A/B difference "
    "champion - challenger with a bootstrap 95% CI (independent for split traffic, paired "
    "for shadow mode). `live_ap_champion` and `n_labelled` feed the drift sensor."
)
def live_performance(
    context: dg.AssetExecutionContext, storage: LakeStorage, serving_logs: ServingLogs
) -> dg.Output[pl.DataFrame]:
    from fraud_assets.lib.monitoring import performance

    day = partition_day(context)
    joined = _labelled_predictions(context, storage, serving_logs, day)
    table = _with_day(performance.live_performance(joined), day)
    head = performance.headline(table)
    ap = head["live_ap_champion"]
    if head["n_labelled"] == 0:
        context.log.warning(f"{day}: no labels yet for the champion's traffic: AP undefined")
    elif ap is None:
        context.log.warning(
            f"{day}: {head['n_labelled']} labelled champion rows, all of one class: AP undefined"
        )
    else:
        context.log.info(f"{day}: champion live AP {ap:.4f} on {head['n_labelled']} labels")
    if head["ab_mode"] == "none":
        context.log.info(f"{day}: no labelled challenger or shadow traffic: no A/B comparison")
    elif head.get("ap_diff") is None or head.get("ap_diff_ci_low") is None:
        context.log.warning(
            f"{day}: A/B ({head['ab_mode']}) undefined or without an interval: too few "
            "labelled frauds on one side"
        )
    else:
        context.log.info(
            f"{day}: A/B ({head['ab_mode']}): AP champion - challenger "
            f"{head['ap_diff']:+.4f} [{head['ap_diff_ci_low']:+.4f}, "
            f"{head['ap_diff_ci_high']:+.4f}]"
        )
    metadata: dict[str, Any] = {k: _clean(v) for k, v in head.items()}
    metadata["live_ap_floor"] = settings.LIVE_AP_FLOOR
    metadata["summary"] = _md_table(
        table,
        [
            "variant",
            "rows",
            "n_labelled",
            "n_fraud",
            "ap",
            "precision_at_alert",
            "recall_at_alert",
            "ap_diff",
            "ap_diff_ci_low",
            "ap_diff_ci_high",
        ],
    )
    plot = _ap_history_png(storage, day, table)
    if plot is not None:
        metadata["ap_history"] = dg.MetadataValue.path(plot)
    return dg.Output(table, metadata=metadata)


@_live_asset(
    "Money and customers on the day's traffic with the labels known so far: fraud "
    "amount caught (alerted) and missed (approved), false declines (declined genuine: count "
    "and amount), alert rate; per variant and for all answered traffic (shadow rows are what "
    "the challenger would have done and are not in the total)."
)
def business_metrics(
    context: dg.AssetExecutionContext, storage: LakeStorage, serving_logs: ServingLogs
) -> dg.Output[pl.DataFrame]:
    from fraud_assets.lib.monitoring import performance

    day = partition_day(context)
    joined = _labelled_predictions(context, storage, serving_logs, day)
    table = performance.business_metrics(joined)
    rows = {r["variant"]: r for r in table.iter_rows(named=True)}
    total = rows[ALL]
    context.log.info(
        f"{day}: fraud caught {total['fraud_amount_caught']:.2f}, missed "
        f"{total['fraud_amount_missed']:.2f}, {total['false_declines']} false declines "
        f"({total['n_labelled']} of {total['rows']} answered rows labelled)"
    )
    keys = [
        "fraud_amount_caught",
        "fraud_amount_missed",
        "false_declines",
        "false_decline_amount",
        "alert_rate",
        "n_labelled",
    ]
    metadata: dict[str, Any] = {k: _clean(total[k]) for k in keys}
    for variant in LOGGED_VARIANTS:
        if variant in rows:
            metadata |= {f"{k}_{variant}": _clean(rows[variant][k]) for k in keys}
    metadata["summary"] = _md_table(
        table,
        [
            "variant",
            "rows",
            "n_labelled",
            "alert_rate",
            "fraud_amount_caught",
            "fraud_amount_missed",
            "false_declines",
            "false_decline_amount",
        ],
    )
    return dg.Output(_with_day(table, day), metadata=metadata)
