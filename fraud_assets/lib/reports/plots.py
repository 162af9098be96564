"""Matplotlib PNGs: precision-recall and reliability curves, metrics over time, the live AP
trend.

Plots use the Agg canvas directly (no pyplot state), so they are safe in worker threads;
matplotlib is imported inside the functions so that loading the Dagster code stays fast.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import polars as pl

from fraud_assets.lib.contracts import LOGGED_VARIANTS
from fraud_assets.lib.reports import Frame, prepare_path, to_pandas

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_DPI = 110


def _new_figure(width: float, height: float) -> Figure:
    """A figure bound to the Agg canvas without touching pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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
    out = prepare_path(path)
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


def reliability_png(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    title: str = "Reliability",
    n_bins: int = 10,
) -> Path:
    """Observed fraud rate against predicted probability, per model (quantile bins, log
    axes: with ~1% fraud almost everything sits near 0). On the diagonal: calibrated. Brier
    score in the legend."""
    from fraud_assets.lib.calibration import brier_score, reliability_table

    out = prepare_path(path)
    fig = _new_figure(6.5, 5.5)
    ax = fig.add_subplot()
    floor = 1e-5
    for name, (y_true, probability) in curves.items():
        table = reliability_table(y_true, probability, n_bins)
        predicted = [max(p, floor) for p, _, _ in table]
        observed = [max(o, floor) for _, o, _ in table]
        brier = brier_score(y_true, probability)
        ax.plot(predicted, observed, "o-", lw=1.4, label=f"{name} (Brier={brier:.4f})")
    ax.plot([floor, 1.0], [floor, 1.0], "--", color="grey", lw=1, label="perfectly calibrated")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Predicted fraud probability (bin mean)")
    ax.set_ylabel("Observed fraud rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.savefig(out, dpi=PNG_DPI)
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
    out = prepare_path(path)
    data = to_pandas(frame, [x, *ys]).sort_values(x)
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


def ap_trend_png(
    history: pl.DataFrame, path: str | Path, *, start: date, end: date, floor: float | None
) -> Path:
    """PNG of AP per variant over [start, end] (`history`: day, variant, ap; missing days
    are gaps), with the retraining floor as a dashed line. The axis always spans the window,
    so a single day of data still reads as "one day of a month"."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    out = prepare_path(path)
    fig = _new_figure(9.0, 4.0)
    ax = fig.add_subplot()
    data = history.filter(pl.col("day").is_between(start, end) & pl.col("ap").is_not_null())
    for variant in LOGGED_VARIANTS:
        points = data.filter(pl.col("variant") == variant).sort("day")
        if points.height:
            ax.plot(
                points["day"].to_list(), points["ap"].to_list(), marker="o", ms=4, label=variant
            )
    if floor is not None:
        ax.axhline(floor, color="red", ls="--", lw=1.2, label=f"retraining floor {floor:g}")
    ax.set_xlim(start - timedelta(days=0.5), end + timedelta(days=0.5))
    ax.set_ylim(0.0, 1.02)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("average precision (labelled traffic)")
    ax.set_title(f"Live AP per variant, {start} to {end}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    fig.savefig(out, dpi=PNG_DPI, format="png")
    return out


def replay_png(days: pl.DataFrame, drifts: list[dict], path: str | Path) -> Path:
    """The operations replay: per policy, the 7-day rolling detection rate (recall at the
    alert rule), false positive rate and alerts per day, with the drifts' starts and the
    days a policy's model in service changed."""
    out = prepare_path(path)
    data = to_pandas(
        days,
        [
            "policy",
            "day",
            "true_positives",
            "frauds",
            "false_positives",
            "transactions",
            "alerts",
            "model_version",
        ],
    )
    data["day"] = pd.to_datetime(data["day"])
    fig = _new_figure(10.0, 9.0)
    axes = fig.subplots(3, 1, sharex=True)
    for policy, part in data.groupby("policy", sort=False):
        part = part.sort_values("day")
        roll = part.set_index("day").rolling("7D")
        recall = roll["true_positives"].sum() / roll["frauds"].sum()
        fpr = roll["false_positives"].sum() / (roll["transactions"].sum() - roll["frauds"].sum())
        (line,) = axes[0].plot(recall.index, recall.values, lw=1.6, label=policy)
        axes[1].plot(fpr.index, fpr.values * 100, lw=1.6, color=line.get_color())
        axes[2].plot(part["day"], part["alerts"], lw=1.2, color=line.get_color())
        changed = part["model_version"].ne(part["model_version"].shift()).to_numpy()
        changed[0] = False
        axes[0].scatter(
            part["day"][changed],
            recall.values[changed],
            color=line.get_color(),
            marker="^",
            s=30,
            zorder=3,
        )
    for drift in drifts:
        for ax in axes:
            ax.axvline(pd.Timestamp(drift["start"]), color="grey", ls="--", lw=1)
        axes[0].annotate(
            drift["kind"],
            (pd.Timestamp(drift["start"]), 0.02),
            fontsize=8,
            rotation=90,
            va="bottom",
            ha="right",
            color="grey",
        )
    axes[0].set_ylabel("detection rate (7-day)")
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=9, title="▲ new model in service", title_fontsize=8)
    axes[1].set_ylabel("false positive rate, % (7-day)")
    axes[2].set_ylabel("alerts per day")
    axes[0].set_title("Operations replay: policies side by side")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.savefig(out, dpi=PNG_DPI, format="png")
    return out
