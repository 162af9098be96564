"""Evidently HTML reports: classification quality at our threshold, and feature drift.

Evidently is imported inside the functions (~15 s import; the Dagster code must load fast).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.lib.reports import Frame, prepare_path, to_pandas

TARGET = "target"
PREDICTION = "prediction"
MAX_DRIFT_ROWS = 50_000


def _save_snapshot(snapshot: Any, path: Path, title: str) -> Path:
    """Save an Evidently snapshot and put our title in it (Evidently's HTML has none)."""
    snapshot.save_html(str(path))  # save_html silently writes nothing when given a Path
    text = path.read_text(encoding="utf-8")
    safe = html.escape(title)
    text = text.replace("<head>", f"<head>\n<title>{safe}</title>", 1)
    # Anchor on the dashboard root so that no '<body>' inside embedded data can match.
    text = re.sub(
        r"<body>(\s*<div id=\"root_)",
        lambda m: (
            '<body>\n<h2 style="font-family: sans-serif; margin: 16px 24px 0;">'
            f"{safe}</h2>{m.group(1)}"
        ),
        text,
        count=1,
    )
    path.write_text(text, encoding="utf-8")
    return path


def _classification_frame(y_true: np.ndarray, score: np.ndarray, what: str) -> pd.DataFrame:
    y = np.asarray(y_true).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{what}: y_true has {y.size} rows but score has {s.size}")
    if y.size == 0:
        raise ValueError(f"{what}: no rows")
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: scores contain NaN or infinity")
    return pd.DataFrame({TARGET: y.astype(np.int64), PREDICTION: s})


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def classification_report_html(
    y_true: np.ndarray,
    score: np.ndarray,
    threshold: float,
    path: str | Path,
    *,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "Fraud model evaluation",
) -> Path:
    """Evidently binary-classification report (probabilities, pos_label 1) at our threshold.

    `reference` is (y_true, score) of another model or period, shown side by side: this is
    how a reviewer compares challenger and champion without opening a notebook.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability, got {threshold}")
    out = prepare_path(path)
    definition = DataDefinition(
        classification=[
            BinaryClassification(target=TARGET, prediction_probas=PREDICTION, pos_label=1)
        ],
        numerical_columns=[PREDICTION],
        categorical_columns=[TARGET],
    )
    current = Dataset.from_pandas(
        _classification_frame(y_true, score, "current"), data_definition=definition
    )
    ref = None
    if reference is not None:
        ref = Dataset.from_pandas(
            _classification_frame(reference[0], reference[1], "reference"),
            data_definition=definition,
        )
    full_title = f"{title} (threshold {threshold:.4g})"
    report = Report([ClassificationPreset(probas_threshold=float(threshold))])
    snapshot = report.run(current, ref, name=full_title)
    return _save_snapshot(snapshot, out, full_title)


def _resolve_stattest(stattest: Any, column_type: Any) -> Any | None:
    """The registered stattest for this column type, None if it does not apply to the type.

    The preset passes stattests on by name, so an unregistered `StatTest` would only fail
    deep inside the run: fail here with a clear message instead.
    """
    from evidently.legacy.calculations.stattests.registry import (
        StatTest,
        StatTestInvalidFeatureTypeError,
        StatTestNotFoundError,
        get_registered_stattest,
    )

    name = stattest.name if isinstance(stattest, StatTest) else stattest
    if not isinstance(name, str) or not name:
        raise TypeError(f"psi_stattest must be a StatTest or its name, got {stattest!r}")
    try:
        return get_registered_stattest(name, column_type)
    except StatTestInvalidFeatureTypeError:
        return None
    except StatTestNotFoundError as exc:
        raise ValueError(f"stattest {name!r} is not registered (register_stattest)") from exc


def drift_report_html(
    reference: Frame,
    current: Frame,
    path: str | Path,
    *,
    numeric: list[str],
    categorical: list[str],
    psi_stattest: Any | None = None,
    title: str = "Feature drift",
    max_rows: int = MAX_DRIFT_ROWS,
    seed: int = 0,
) -> Path:
    """Evidently data-drift report over the given columns, reference vs current.

    `psi_stattest` (a registered Evidently `StatTest` or its name) is used for every column
    whose type it supports, so the report shows the same PSI that triggers retraining;
    other columns keep Evidently's default test. Each side is sampled to `max_rows`
    (seeded) because the preset recomputes every column several times.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.core import ColumnType
    from evidently.presets import DataDriftPreset

    columns = [*numeric, *categorical]
    if not columns:
        raise ValueError("drift_report_html needs at least one column")
    if len(set(columns)) != len(columns):
        raise ValueError("a column is listed twice (or as both numeric and categorical)")
    out = prepare_path(path)
    ref_pd = to_pandas(reference, columns)
    cur_pd = to_pandas(current, columns)
    if ref_pd.empty or cur_pd.empty:
        raise ValueError(f"empty side: reference {len(ref_pd)} rows, current {len(cur_pd)} rows")
    ref_s, cur_s = _sample(ref_pd, max_rows, seed), _sample(cur_pd, max_rows, seed + 1)

    per_column: dict[str, Any] | None = None
    if psi_stattest is not None:
        per_column = {}
        for cols, ctype in ((numeric, ColumnType.Numerical), (categorical, ColumnType.Categorical)):
            test = _resolve_stattest(psi_stattest, ctype)
            if test is not None:
                per_column |= dict.fromkeys(cols, test)
        if not per_column:
            raise ValueError(f"stattest {psi_stattest!r} supports none of these column types")

    def rows(full: pd.DataFrame, used: pd.DataFrame) -> str:
        if len(used) == len(full):
            return f"{len(full):,} rows"
        return f"{len(used):,} of {len(full):,} rows sampled"

    full_title = f"{title} (reference: {rows(ref_pd, ref_s)}; current: {rows(cur_pd, cur_s)})"
    definition = DataDefinition(numerical_columns=list(numeric), categorical_columns=categorical)
    report = Report(
        [DataDriftPreset(columns=columns, per_column_method=per_column)], include_tests=True
    )
    snapshot = report.run(
        Dataset.from_pandas(cur_s, data_definition=definition),
        Dataset.from_pandas(ref_s, data_definition=definition),
        name=full_title,
    )
    return _save_snapshot(snapshot, out, full_title)
