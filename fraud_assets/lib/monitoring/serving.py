"""Serving metrics of a day: requests, latency percentiles, error rate, per variant.

The log has no request id: a request is the set of rows of one process (log file) sharing
``request_time`` and ``latency_ms`` (a batch logs all its rows with one stamp and one
latency). Latency percentiles are over requests, so a 1000-row batch counts once.
``rows`` of the ``ALL`` row counts answered transactions (champion + challenger rows);
shadow rows are extra work the client never sees.
"""

from __future__ import annotations

import math

import polars as pl

from fraud_assets.lib.contracts import LOGGED_VARIANTS, SHADOW
from fraud_assets.lib.monitoring import ALL
from fraud_assets.lib.monitoring.logs import SOURCE_COLUMN

LATENCY_QUANTILES = (0.5, 0.95, 0.99)


def _latency_exprs() -> list[pl.Expr]:
    return [
        pl.col("latency_ms")
        .quantile(q, interpolation="linear")
        .alias(f"latency_p{round(q * 100)}_ms")
        for q in LATENCY_QUANTILES
    ]


def serving_metrics(predictions: pl.DataFrame, errors: pl.DataFrame) -> pl.DataFrame:
    """Per variant and for all answered traffic (`variant == "all"`): rows, requests, latency
    percentiles over requests, model versions seen; errors and error rate on the "all" row
    (error rate = errors / (errors + scored requests))."""
    request_key = [SOURCE_COLUMN, "request_time", "latency_ms"]
    answered = predictions.filter(pl.col("variant") != SHADOW)
    scopes = [(v, predictions.filter(pl.col("variant") == v)) for v in LOGGED_VARIANTS]
    rows = []
    for name, frame in [(ALL, answered), *scopes]:
        requests = frame.group_by(request_key).agg(pl.len().alias("rows"))
        latency = requests.select(_latency_exprs()).row(0, named=True)
        versions = sorted(v for v in frame["model_version"].unique().to_list() if v is not None)
        rows.append(
            {
                "variant": name,
                "rows": frame.height,
                "transactions": frame["transaction_id"].n_unique(),
                "requests": requests.height,
                **latency,
                "model_versions": ", ".join(versions),
            }
        )
    table = pl.DataFrame(
        rows,
        schema={
            "variant": pl.String,
            "rows": pl.Int64,
            "transactions": pl.Int64,
            "requests": pl.Int64,
            **{f"latency_p{round(q * 100)}_ms": pl.Float64 for q in LATENCY_QUANTILES},
            "model_versions": pl.String,
        },
    )
    n_errors = errors.height
    n_requests = int(table.filter(pl.col("variant") == ALL)["requests"][0])
    is_all = pl.col("variant") == ALL
    return table.with_columns(
        errors=pl.when(is_all).then(pl.lit(n_errors, dtype=pl.Int64)),
        error_rate=pl.when(is_all).then(pl.lit(error_rate(n_errors, n_requests), pl.Float64)),
    )


def error_rate(n_errors: int, n_requests: int) -> float:
    total = n_errors + n_requests
    return n_errors / total if total else math.nan


def errors_by_status(errors: pl.DataFrame) -> dict[str, int]:
    """Error counts by class: "4xx", "5xx", "other" (missing or odd status)."""
    status = pl.col("status")
    kind = (
        pl.when(status.is_between(400, 499))
        .then(pl.lit("4xx"))
        .when(status.is_between(500, 599))
        .then(pl.lit("5xx"))
        .otherwise(pl.lit("other"))
    )
    counts = errors.group_by(kind.alias("kind")).len()
    found = dict(zip(counts["kind"].to_list(), counts["len"].to_list(), strict=True))
    return {k: int(found.get(k, 0)) for k in ("4xx", "5xx", "other")}
