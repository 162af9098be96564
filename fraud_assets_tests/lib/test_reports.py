"""Reports: files land where asked, carry our title and numbers, and PNGs are real images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from fraud_assets.lib.contracts import PSI_ALERT
from fraud_assets.lib.reports.evidently import classification_report_html, drift_report_html
from fraud_assets.lib.reports.plots import precision_recall_png, timeseries_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATTEST_NAME = "test_reports_quantile_psi"

# One row of Evidently's drift table as embedded in the report's JSON.
DRIFT_ROW = re.compile(
    r'"column_name": "(?P<col>[^"]+)", "column_type": "\w+", "stattest_name": "(?P<test>[^"]+)"'
    r'.*?"data_drift": "(?P<drift>Detected|Not Detected)", "drift_score": (?P<score>[-+.\deE]+)'
)
# The headline counters of the classification report ("value": "0.976", "label": "Precision").
COUNTER = re.compile(r'\{"value": "([\d.]+)", "label": "(Accuracy|Precision|Recall|F1)"\}')


def _quantile_psi(reference: pd.Series, current: pd.Series, *_: Any) -> float:
    """PSI on 10 reference-quantile bins, the definition the drift alert uses."""
    ref, cur = reference.dropna().to_numpy(), current.dropna().to_numpy()
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref), minlength=edges.size + 1) / ref.size
    c = np.bincount(np.searchsorted(edges, cur), minlength=edges.size + 1) / cur.size
    r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.fixture(scope="module")
def psi_stattest() -> Any:
    """Import Evidently once for the module and register a numeric-only PSI stattest."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    test = StatTest(
        name=STATTEST_NAME,
        display_name="PSI (quantile bins)",
        allowed_feature_types=[ColumnType.Numerical],
        default_threshold=PSI_ALERT,
    )

    def func(reference: pd.Series, current: pd.Series, _type: Any, threshold: float):
        value = _quantile_psi(reference, current)
        return value, value > threshold

    register_stattest(test, func)
    return test


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 3_000
    y = (rng.random(n) < 0.03).astype(np.int64)
    good = np.clip(rng.beta(1, 12, n) + y * rng.beta(2, 2, n) * 0.8, 0, 1)
    weak = np.clip(rng.beta(1, 8, n) + y * rng.beta(2, 3, n) * 0.6, 0, 1)
    return {"y": y, "good": good, "weak": weak}


@pytest.fixture(scope="module")
def drift_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Same distributions except `amount`, which is shifted (x3) in the current frame."""
    rng = np.random.default_rng(11)
    n = 2_000

    def frame(scale: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "amount": rng.lognormal(3.0, 1.0, n) * scale,
                "hour": rng.integers(0, 24, n).astype(np.float64),
                "channel": rng.choice(["web", "pos", "atm"], n),
            }
        )

    return frame(1.0), frame(3.0)


def _png_size(path: Path) -> tuple[int, int]:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width = imread(path).shape[:2]
    return width, height


def _drift_rows(text: str) -> dict[str, dict[str, Any]]:
    rows = {
        m["col"]: {"test": m["test"], "drift": m["drift"] == "Detected", "score": float(m["score"])}
        for m in DRIFT_ROW.finditer(text)
    }
    assert rows, "no drift table found in the report"
    return rows


# --------------------------------------------------------------------------- classification


def test_classification_report_with_reference(
    tmp_path: Path, scores: dict[str, np.ndarray], psi_stattest: Any
) -> None:
    target = tmp_path / "not" / "yet" / "there" / "classification.html"
    out = classification_report_html(
        scores["y"],
        scores["good"],
        0.3,
        target,  # a Path: Evidently's save_html would silently ignore it
        reference=(scores["y"], scores["weak"]),
        title="Challenger <v3> vs champion",
    )
    assert out == target
    text = out.read_text(encoding="utf-8")
    assert out.stat().st_size > 100_000
    assert "<title>Challenger &lt;v3&gt; vs champion (threshold 0.3)</title>" in text
    assert ">Challenger &lt;v3&gt; vs champion (threshold 0.3)</h2>" in text
    for expected in ("Current: Model Quality Metrics", "Reference: Model Quality Metrics"):
        assert expected in text
    assert "Precision-Recall" in text


def test_classification_report_numbers_use_threshold(
    tmp_path: Path, scores: dict[str, np.ndarray], psi_stattest: Any
) -> None:
    """The report's precision/recall are those of `score >= threshold`, without a reference."""
    y, s, threshold = scores["y"], scores["good"], 0.3
    out = classification_report_html(y, s, threshold, str(tmp_path / "c.html"))
    text = out.read_text(encoding="utf-8")
    assert "Reference: Model Quality Metrics" not in text
    shown = {m[1]: float(m[0]) for m in COUNTER.findall(text)}

    def precision_recall(t: float) -> tuple[float, float]:
        flagged = s >= t
        return round(float(y[flagged].mean()), 3), round(float(flagged[y == 1].mean()), 3)

    precision, recall = precision_recall(threshold)
    assert precision_recall(0.5) != (precision, recall)  # Evidently's default would differ
    assert shown["Precision"] == pytest.approx(precision, abs=1e-3)
    assert shown["Recall"] == pytest.approx(recall, abs=1e-3)


def test_classification_report_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows"):
        classification_report_html(
            np.array([0, 1, 0]), np.array([0.1, 0.2]), 0.5, tmp_path / "x.html"
        )
    with pytest.raises(ValueError, match="threshold"):
        classification_report_html(np.array([0, 1]), np.array([0.1, 0.9]), 1.5, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


# --------------------------------------------------------------------------- drift


def test_drift_report_default_tests_find_the_shifted_column(
    tmp_path: Path, drift_frames: tuple[pl.DataFrame, pl.DataFrame], psi_stattest: Any
) -> None:
    reference, current = drift_frames
    out = drift_report_html(
        reference,
        current,
        tmp_path / "drift" / "default.html",
        numeric=["amount", "hour"],
        categorical=["channel"],
        title="Feature drift 2026-03-01",
    )
    text = out.read_text(encoding="utf-8")
    assert out.stat().st_size > 100_000
    assert "<title>Feature drift 2026-03-01 (reference: 2,000 rows; current: 2,000 rows)" in text
    rows = _drift_rows(text)
    assert set(rows) == {"amount", "hour", "channel"}
    assert rows["amount"]["drift"]
    assert not rows["hour"]["drift"] and not rows["channel"]["drift"]
    assert "of columns (1 out of 3)" in text


def test_drift_report_shows_our_psi(
    tmp_path: Path, drift_frames: tuple[pl.DataFrame, pl.DataFrame], psi_stattest: Any
) -> None:
    """The custom stattest is used for numeric columns and its value is our PSI."""
    reference, current = drift_frames
    out = drift_report_html(
        reference.to_pandas(),
        current.to_pandas(),
        tmp_path / "psi.html",
        numeric=["amount", "hour"],
        categorical=["channel"],
        psi_stattest=psi_stattest,
    )
    rows = _drift_rows(out.read_text(encoding="utf-8"))
    assert rows["amount"]["test"] == rows["hour"]["test"] == "PSI (quantile bins)"
    assert rows["channel"]["test"] != "PSI (quantile bins)"  # numeric-only: default test
    expected = _quantile_psi(reference["amount"].to_pandas(), current["amount"].to_pandas())
    assert expected > PSI_ALERT
    assert rows["amount"]["score"] == pytest.approx(expected, rel=1e-3)
    assert rows["amount"]["drift"] and not rows["hour"]["drift"]


def test_drift_report_by_name_and_sampled(
    tmp_path: Path, drift_frames: tuple[pl.DataFrame, pl.DataFrame], psi_stattest: Any
) -> None:
    reference, current = drift_frames
    out = drift_report_html(
        reference,
        current,
        tmp_path / "sampled.html",
        numeric=["amount"],
        categorical=["channel"],
        psi_stattest="psi",  # Evidently's built-in PSI applies to both types
        max_rows=500,
    )
    text = out.read_text(encoding="utf-8")
    assert "reference: 500 of 2,000 rows sampled; current: 500 of 2,000 rows sampled" in text
    rows = _drift_rows(text)
    assert rows["amount"]["test"] == rows["channel"]["test"] == "PSI"
    assert rows["amount"]["drift"]


def test_drift_report_rejects_unknown_stattest(
    tmp_path: Path, drift_frames: tuple[pl.DataFrame, pl.DataFrame], psi_stattest: Any
) -> None:
    reference, current = drift_frames
    with pytest.raises(ValueError, match="not registered"):
        drift_report_html(
            reference,
            current,
            tmp_path / "x.html",
            numeric=["amount"],
            categorical=[],
            psi_stattest="no_such_stattest",
        )


# --------------------------------------------------------------------------- PNGs


def test_precision_recall_png(tmp_path: Path, scores: dict[str, np.ndarray]) -> None:
    y = scores["y"]
    out = precision_recall_png(
        {"challenger": (y, scores["good"]), "logistic_baseline": (y, scores["weak"])},
        tmp_path / "plots" / "pr.png",
        threshold_points={"challenger": (0.8, 0.6)},
        title="PR, test window",
    )
    assert out.exists()
    assert _png_size(out) == (7 * 110, round(5.5 * 110))  # figsize x dpi 110


def test_precision_recall_png_rejects_curve_without_fraud(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no positives"):
        precision_recall_png(
            {"m": (np.zeros(10, dtype=int), np.linspace(0, 1, 10))}, tmp_path / "pr.png"
        )


@pytest.mark.parametrize("as_pandas", [False, True])
def test_timeseries_png(tmp_path: Path, as_pandas: bool) -> None:
    days = pl.date_range(pl.date(2026, 1, 1), pl.date(2026, 2, 14), eager=True)
    frame = pl.DataFrame(
        {
            "day": days,
            "psi_amount": np.linspace(0.0, 0.4, days.len()),
            "psi_hour": np.full(days.len(), 0.05),
        }
    ).reverse()  # unsorted input must still plot left to right
    out = timeseries_png(
        frame.to_pandas() if as_pandas else frame,
        "day",
        ["psi_amount", "psi_hour"],
        tmp_path / "ts" / "psi.png",
        hline=PSI_ALERT,
        title="PSI per day",
    )
    assert _png_size(out) == (9 * 110, round(4.5 * 110))
