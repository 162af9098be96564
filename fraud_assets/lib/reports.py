"""Human-readable reports: Evidently HTML and matplotlib PNGs for MLflow and the Dagster UI.

These files are for people. The numbers that drive automation (promotion gate, drift alerts)
are computed elsewhere with plain numpy; the reports only show them. Evidently (~15 s import)
and matplotlib are imported inside the functions so that loading the Dagster code stays fast.
Plots use the Agg canvas directly (no pyplot state), so they are safe in worker threads.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TARGET = "target"
PREDICTION = "prediction"
MAX_DRIFT_ROWS = 50_000
PNG_DPI = 110

Frame = pd.DataFrame | pl.DataFrame


# --------------------------------------------------------------------------- helpers


def _prepare_path(path: str | Path) -> Path:
    """Create the parent folders: report folders are per partition and may not exist yet."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


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


def _to_pandas(frame: Frame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Evidently and matplotlib want pandas; select first so only needed columns convert."""
    if isinstance(frame, pl.DataFrame):
        return (frame.select(columns) if columns is not None else frame).to_pandas()
    if isinstance(frame, pd.DataFrame):
        return frame[list(columns)] if columns is not None else frame
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def _new_figure(width: float, height: float) -> Figure:
    """A figure bound to the Agg canvas without touching pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------- Evidently


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
    out = _prepare_path(path)
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
    out = _prepare_path(path)
    ref_pd = _to_pandas(reference, columns)
    cur_pd = _to_pandas(current, columns)
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


# --------------------------------------------------------------------------- matplotlib


def precision_recall_png(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    threshold_points: dict[str, tuple[float, float]] | None = None,
    title: str = "Precision-recall",
) -> Path:
    """Precision-recall curves of several models on one plot, AP in the legend.

    PR rather than ROC because with ~1% fraud ROC looks excellent for nearly any model.
    `threshold_points` maps a model to its operating point (recall, precision).
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    if not curves:
        raise ValueError("precision_recall_png needs at least one curve")
    out = _prepare_path(path)
    fig = _new_figure(7.0, 5.5)
    ax = fig.add_subplot()
    for name, (y_true, score) in curves.items():
        y = np.asarray(y_true).ravel().astype(np.int64)
        s = np.asarray(score, dtype=np.float64).ravel()
        if y.shape != s.shape:
            raise ValueError(f"{name}: y_true has {y.size} rows but score has {s.size}")
        if y.sum() == 0:
            raise ValueError(f"{name}: no positives, the precision-recall curve is undefined")
        precision, recall, _ = precision_recall_curve(y, s)
        ap = average_precision_score(y, s)
        (line,) = ax.step(
            recall, precision, where="post", lw=1.6, label=f"{name} (AP={ap:.3f}, n={y.size:,})"
        )
        if threshold_points and name in threshold_points:
            r, p = threshold_points[name]
            ax.plot([r], [p], "o", ms=8, color=line.get_color(), markeredgecolor="black", zorder=5)
            ax.annotate(
                f"R={r:.2f} P={p:.2f}",
                (r, p),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize=8,
            )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    fig.savefig(out, dpi=PNG_DPI, format="png")
    return out


def timeseries_png(
    frame: Frame,
    x: str,
    ys: list[str],
    path: str | Path,
    *,
    hline: float | None = None,
    title: str = "",
) -> Path:
    """Line plot of metrics over time (drift, performance); `hline` draws the alert level."""
    if not ys:
        raise ValueError("timeseries_png needs at least one y column")
    out = _prepare_path(path)
    data = _to_pandas(frame, [x, *ys]).sort_values(x)
    fig = _new_figure(9.0, 4.5)
    ax = fig.add_subplot()
    for y in ys:
        ax.plot(data[x], data[y], marker="o", ms=3, lw=1.4, label=y)
    if hline is not None:
        ax.axhline(hline, color="red", ls="--", lw=1.2, label=f"alert {hline:g}")
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(ys) > 1 or hline is not None:
        ax.legend(fontsize=9)
    else:
        ax.set_ylabel(ys[0])
    if pd.api.types.is_datetime64_any_dtype(data[x]):
        fig.autofmt_xdate()
    fig.savefig(out, dpi=PNG_DPI, format="png")
    return out
