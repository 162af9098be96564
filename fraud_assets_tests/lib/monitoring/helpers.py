"""Hand-built service logs and labelled frames shared by the monitoring tests."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fraud_assets.lib.contracts import PREDICTIONS_LOG, day_folder

DAY = date(2026, 3, 5)


def prediction(
    tx: str,
    *,
    variant: str = "champion",
    score: float = 0.1,
    decision: str = "approve",
    latency_ms: float = 1.0,
    request_time: str = "2026-03-05T10:00:00+00:00",
    amount: float = 10.0,
    version: str = "1",
) -> dict[str, Any]:
    """A prediction-log row as the service writes it (features and all)."""
    return {
        "request_time": request_time,
        "transaction_id": tx,
        "ts": "2026-03-05T09:59:59+00:00",
        "customer_id": f"c-{tx}",
        "terminal_id": "t-1",
        "amount": amount,
        "merchant_category": "grocery",
        "channel": "pos",
        "features": {"amount": amount, "tx_count_1d": 3},
        "score": score,
        "decision": decision,
        "model_name": "fraud_model",
        "model_version": version,
        "variant": variant,
        "latency_ms": latency_ms,
        "bundle_id": "b-1",
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + tail
    path.write_text(text, encoding="utf-8")
    return path


def write_predictions(state: Path, rows: list[dict[str, Any]], part: str = "part-1") -> Path:
    return write_jsonl(day_folder(state, PREDICTIONS_LOG, DAY) / f"{part}.jsonl", rows)


def stamp(i: int) -> str:
    return (datetime(2026, 3, 5, 8, tzinfo=UTC) + timedelta(seconds=i)).isoformat()


def joined_frame(
    y: np.ndarray,
    score: np.ndarray,
    *,
    variant: str = "champion",
    prefix: str = "t",
    alert: np.ndarray | None = None,
    decision: list[str] | None = None,
    amount: np.ndarray | None = None,
) -> pl.DataFrame:
    """Labelled predictions of one variant, shaped like `join_labels` output."""
    n = len(y)
    alert = (score >= 0.5) if alert is None else alert
    if decision is None:
        decision = ["review" if a else "approve" for a in alert]
    return pl.DataFrame(
        {
            "transaction_id": [f"{prefix}{i}" for i in range(n)],
            "amount": amount if amount is not None else np.full(n, 10.0),
            "score": score.astype(float),
            "decision": decision,
            "model_version": ["1"] * n,
            "variant": [variant] * n,
            "is_fraud": pl.Series(y, dtype=pl.Int8),
            "alert": [d != "approve" for d in decision],
        }
    )


def synthetic(n: int, separation: float, seed: int, fraud_rate: float = 0.1):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fraud_rate).astype(np.int8)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + separation * y - 2)))
    return y, score
