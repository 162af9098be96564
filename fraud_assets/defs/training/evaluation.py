"""model_evaluation, the promotion gate and the champion alias."""

from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs.partitions import daily_partitions, partition_day
from fraud_assets.lib.contracts import (
    BASELINE,
    CHALLENGER,
    CHAMPION,
    EVALUATED_VERSION_TAG,
    THRESHOLD_TAGS,
    TRAIN_WINDOW_TAG,
)
from fraud_assets.lib.evaluation import (
    CostModel,
    card_day_clusters,
    choose_thresholds,
    evaluate_scores,
)
from fraud_assets.lib.modeling import predict_catboost, predict_logistic, train_logistic
from fraud_assets.resources.mlflow import ModelRegistry
from fraud_assets.resources.storage import LakeStorage, ServingLogs

HEADLINE = (
    "average_precision",
    "card_precision_at_100",
    "card_precision_at_k",
    "card_precision_at_k_normalised",
    "auc_roc",
    "recall",
    "precision",
)


class EvaluationConfig(dg.Config):
    review_cost: float = 5.0
    false_decline_cost: float = 10.0
    decline_precision: float = 0.8
    review_share: float = CostModel.review_share  # daily review capacity, share of cards

    def costs(self) -> CostModel:
        return CostModel(
            self.review_cost,
            self.false_decline_cost,
            self.decline_precision,
            review_share=self.review_share,
        )


class PromotionConfig(dg.ConfigurableResource):
    """The gate: an absolute floor on AP, and a margin over the current champion that the
    lower bound of the 95% card-day bootstrap interval of the AP gain must exceed (a gain
    within noise does not promote)."""

    min_average_precision: float = float(settings.PROMOTION_MIN_AP)
    min_margin: float = float(settings.PROMOTION_MARGIN)


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="training",
    code_version="evaluation-v1",
    kinds={"mlflow", "evidently"},
    description="AUC, AP, card precision@100, threshold for maximal expected savings, business "
    "figures; the same for the current champion and a logistic baseline; Evidently report.",
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    model_registry: ModelRegistry,
    storage: LakeStorage,
    training_set: pl.DataFrame,
    fraud_model: dict,
) -> dg.Output[dict]:
    from fraud_assets.lib.reports.evidently import classification_report_html
    from fraud_assets.lib.reports.plots import precision_recall_png, reliability_png

    day = partition_day(context)
    costs = config.costs()
    features, cats = fraud_model["features"], fraud_model["categoricals"]
    numeric = [f for f in features if f not in cats]
    frames = {s: training_set.filter(pl.col("split") == s) for s in ("train", "validation", "test")}
    test, val = frames["test"], frames["validation"]
    if test.height == 0 or test["label"].sum() == 0:
        raise dg.Failure(f"model_evaluation {day}: the test window has no fraud to evaluate on")

    client = model_registry.client()
    from fraud_assets.lib.calibration import Platt

    # The CatBoost models are scored calibrated (each with its own Platt scaling), as the
    # service scores them: thresholds and savings are then on probabilities.
    challenger = model_registry.load_model(fraud_model["version"])
    challenger_cal = Platt.from_dict(fraud_model.get("calibration"))
    models = {
        CHALLENGER: lambda df: challenger_cal.apply_array(
            predict_catboost(challenger, df, features)
        )
    }
    champion_version = model_registry.version(CHAMPION)
    champion_scored = _champion_estimate(model_registry, champion_version, test)
    if champion_version is not None and champion_scored is None:
        context.log.warning(
            f"champion v{champion_version.version} has no evaluated sibling and was fitted on "
            "part of this test window: it is not compared (its score would be flattered)"
        )
    if champion_scored is not None and str(champion_scored.version) != fraud_model["version"]:
        champion = model_registry.load_model(str(champion_scored.version))
        champion_cal = Platt.from_tags(champion_scored.tags)
        models[CHAMPION] = lambda df: champion_cal.apply_array(
            predict_catboost(champion, df, features)
        )
    baseline = train_logistic(frames["train"], numeric, cats)
    models[BASELINE] = lambda df: predict_logistic(baseline, df, features)

    results: dict[str, dict[str, float]] = {}
    scores: dict[str, Any] = {}
    for name, predict in models.items():
        val_score, test_score = predict(val), predict(test)
        thresholds = choose_thresholds(
            val["label"].to_numpy(), val_score, val["amount"].to_numpy(), costs
        )
        results[name] = evaluate_scores(test, test_score, thresholds["review"], costs) | {
            "decline_threshold": thresholds["decline"]
        }
        scores[name] = test_score
        context.log.info(f"{name}: " + ", ".join(f"{k}={results[name][k]:.4f}" for k in HEADLINE))
    comparisons = _compare(test, scores)
    for name, diff in comparisons.items():
        context.log.info(
            f"challenger - {name}: AP {diff['ap_diff']:+.4f}, 95% CI "
            f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}] (card-day bootstrap)"
        )

    report_dir = storage.report_path("model_evaluation", day.isoformat())
    y = test["label"].to_numpy()
    html = classification_report_html(
        y,
        scores[CHALLENGER],
        results[CHALLENGER]["threshold"],
        report_dir / "classification.html",
        title=f"{fraud_model['model_name']} v{fraud_model['version']} on {test.height} test transactions",
    )
    png = precision_recall_png(
        {name: (y, s) for name, s in scores.items()},
        report_dir / "precision_recall.png",
        threshold_points={n: (r["recall"], r["precision"]) for n, r in results.items()},
        title=f"Precision-recall, test window as of {day}",
    )
    reliability = reliability_png(
        {name: (y, s) for name, s in scores.items()},
        report_dir / "reliability.png",
        title=f"Reliability, test window as of {day}",
    )
    run_id = fraud_model["run_id"]
    for name, res in results.items():
        for key, value in res.items():
            client.log_metric(run_id, f"test_{name}_{key}", float(value))
    client.log_artifact(run_id, str(html), "evaluation")
    client.log_artifact(run_id, str(png), "evaluation")
    client.log_artifact(run_id, str(reliability), "evaluation")
    client.set_terminated(run_id, "FINISHED")  # dagster-mlflow's hook misses gated runs
    version = fraud_model["version"]
    ch = results[CHALLENGER]
    for key in THRESHOLD_TAGS:
        client.set_model_version_tag(fraud_model["model_name"], version, key, str(ch[key]))

    value = {
        "model_name": fraud_model["model_name"],
        "version": version,
        "champion_version": str(champion_version.version) if CHAMPION in models else None,
        # The champion's evaluated sibling (the served champion is a refit that has seen
        # part of this test window): the comparison is recipe against recipe.
        "champion_scored_version": str(champion_scored.version) if CHAMPION in models else None,
        "results": results,
        "comparisons": comparisons,
        "test_rows": test.height,
        "test_frauds": int(test["label"].sum()),
        "reports": {
            "classification": str(html),
            "precision_recall": str(png),
            "reliability": str(reliability),
        },
    }
    metadata: dict[str, Any] = {
        f"{name}_{k}": float(res[k]) for name, res in results.items() for k in HEADLINE
    }
    for name, diff in comparisons.items():
        metadata |= {
            f"ap_gain_over_{name}_{k.removeprefix('ap_')}": v
            for k, v in diff.items()
            if v == v  # NaN (too few frauds for an interval) is left out
        }
    metadata |= {k: v for k, v in ch.items() if k.startswith("recall_") or k == "cp_k"}
    metadata |= {
        "threshold_review": ch["threshold"],
        "threshold_decline": ch["decline_threshold"],
        "fraud_amount_caught": ch["fraud_amount_caught"],
        "fraud_amount_missed": ch["fraud_amount_missed"],
        "alerts_per_day": ch["alerts_per_day"],
        "classification_report": dg.MetadataValue.path(str(html)),
        "precision_recall_plot": dg.MetadataValue.path(str(png)),
        "reliability_plot": dg.MetadataValue.path(str(reliability)),
        "model_version": version,
    }
    return dg.Output(value, metadata=metadata)


def _champion_estimate(
    model_registry: ModelRegistry, champion: Any | None, test: pl.DataFrame
) -> Any | None:
    """The registry version that stands for the champion on this test window: its evaluated
    sibling when the champion is a refit, else the champion itself if it was fitted before
    the window; None when neither can be scored honestly."""
    if champion is None:
        return None
    tags = champion.tags or {}
    sibling = tags.get(EVALUATED_VERSION_TAG)
    if sibling:
        return model_registry.client().get_model_version(model_registry.model_name, sibling)
    window = tags.get(TRAIN_WINDOW_TAG, "")
    fitted_until = window.partition("..")[2]
    test_start = test["ts"].dt.date().min()
    if fitted_until and date.fromisoformat(fitted_until) < test_start:
        return champion
    return None


def _compare(test: pl.DataFrame, scores: dict[str, Any]) -> dict[str, dict[str, float]]:
    """AP of the challenger minus each other model's on the test window, with a paired
    bootstrap over card-days (a card's transactions of one day are not independent)."""
    from fraud_assets.lib.monitoring.ab import bootstrap_clustered_ap_difference

    card_days = card_day_clusters(test)
    y = test["label"].to_numpy()
    out = {}
    for name, score in scores.items():
        if name == CHALLENGER:
            continue
        diff = bootstrap_clustered_ap_difference(y, scores[CHALLENGER], score, card_days)
        out[name] = {"ap_diff": diff.value, "ci_low": diff.ci_low, "ci_high": diff.ci_high}
    return out


@dg.asset_check(
    asset=model_evaluation,
    blocking=True,
    description="Promote only above the quality floor and ahead of the current champion.",
    partitions_def=daily_partitions,
)
def promotion_gate(model_evaluation: dict, promotion: PromotionConfig) -> dg.AssetCheckResult:
    ch = model_evaluation["results"][CHALLENGER]
    ap = ch["average_precision"]
    reasons = []
    if ap < promotion.min_average_precision:
        reasons.append(f"AP {ap:.4f} below the floor {promotion.min_average_precision:.4f}")
    champion = model_evaluation["results"].get(CHAMPION)
    gain = model_evaluation.get("comparisons", {}).get(CHAMPION)
    if champion is not None and not (gain and gain["ci_low"] > promotion.min_margin):
        interval = (
            f"{gain['ap_diff']:+.4f}, 95% CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]"
            if gain
            else "not measured"
        )
        reasons.append(
            f"AP gain over champion v{model_evaluation['champion_version']} {interval}: "
            f"the lower bound is not above the margin {promotion.min_margin:.4f}"
        )
    return dg.AssetCheckResult(
        passed=not reasons,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(reasons)
        or f"challenger v{model_evaluation['version']} AP {ap:.4f} promotable",
        metadata={
            "challenger_ap": ap,
            "champion_ap": champion["average_precision"] if champion else -1.0,
            **(
                {"ap_gain": gain["ap_diff"], "ap_gain_ci_low": gain["ci_low"]}
                | {"ap_gain_ci_high": gain["ci_high"]}
                if gain
                else {}
            ),
            "floor": promotion.min_average_precision,
            "margin": promotion.min_margin,
        },
    )


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="training",
    kinds={"mlflow"},
    description="Moves the MLflow alias `champion` to the refit of the evaluated challenger "
    "(with the thresholds evaluated for it); the previous champion stays reachable as "
    "`previous_champion`.",
)
def champion_model(
    context: dg.AssetExecutionContext,
    model_registry: ModelRegistry,
    model_evaluation: dict,
    refit_model: dict,
) -> dg.Output[dict]:
    if refit_model["evaluated_version"] != model_evaluation["version"]:
        raise dg.Failure(
            f"refit v{refit_model['version']} is of v{refit_model['evaluated_version']}, but "
            f"v{model_evaluation['version']} was evaluated"
        )
    evaluated = model_evaluation["results"][CHALLENGER]
    thresholds = {"review": evaluated["threshold"], "decline": evaluated["decline_threshold"]}
    client = model_registry.client()
    for key in THRESHOLD_TAGS:
        client.set_model_version_tag(
            refit_model["model_name"], refit_model["version"], key, str(evaluated[key])
        )
    change = model_registry.promote(refit_model["version"])
    context.log.info(
        f"champion is now v{change.champion}, the refit of evaluated v{model_evaluation['version']}"
        f" (previous: {change.previous})"
    )
    value = {
        "model_name": model_evaluation["model_name"],
        "champion": change.champion,
        "evaluated_version": model_evaluation["version"],
        "previous": change.previous,
        "thresholds": thresholds,
    }
    return dg.Output(
        value,
        metadata={
            "champion": change.champion,
            "evaluated_version": model_evaluation["version"],
            "train_window": refit_model["lineage"][TRAIN_WINDOW_TAG],
            "previous": str(change.previous),
        },
    )


@dg.op
def rollback_champion_op(
    context: dg.OpExecutionContext, model_registry: ModelRegistry, serving_logs: ServingLogs
) -> None:
    """The registry alias and the running services (their deployment pointer) go back."""
    from fraud_assets.lib import control

    change = model_registry.rollback()
    context.log.info(f"rolled back: champion is v{change.champion} (was v{change.previous})")
    try:
        pointer = control.roll_back(serving_logs.state_root, reason=f"job {context.run_id}")
    except control.NothingToRollBack as exc:
        context.log.info(f"running services unchanged: {exc}")
        return
    switched, workers = control.wait_for_workers(
        serving_logs.state_root, pointer["bundle_id"], settings.ROLLOUT_TIMEOUT_S
    )
    context.log.info(f"{len(workers)} workers on {pointer['versions']} (all: {switched})")
    if not switched:
        raise dg.Failure(f"not every worker switched back to {pointer['versions']}")


@dg.job(description="Point the `champion` alias back at the previous champion.")
def rollback_champion() -> None:
    rollback_champion_op()
