from __future__ import annotations

import dagster as dg

from fraud_assets.defs.training.evaluation import PromotionConfig, promotion_gate


def _evaluation(
    challenger_ap: float, champion_ap: float | None, ci: tuple[float, float] | None = None
) -> dict:
    """An evaluation's gate inputs; ``ci``: the bootstrap interval of the AP gain (default: a
    tight one around the point difference)."""
    results = {"challenger": {"average_precision": challenger_ap}}
    comparisons = {}
    if champion_ap is not None:
        results["champion"] = {"average_precision": champion_ap}
        diff = challenger_ap - champion_ap
        low, high = ci or (diff - 0.001, diff + 0.001)
        comparisons["champion"] = {"ap_diff": diff, "ci_low": low, "ci_high": high}
    return {
        "version": "2",
        "champion_version": "1" if champion_ap is not None else None,
        "results": results,
        "comparisons": comparisons,
    }


def _run(evaluation: dict, **config: float) -> dg.AssetCheckResult:
    ctx = dg.build_asset_check_context(resources={"promotion": PromotionConfig(**config)})
    return promotion_gate(ctx, model_evaluation=evaluation)


def test_first_model_above_the_floor_is_promotable() -> None:
    assert _run(_evaluation(0.5, None), min_average_precision=0.3).passed


def test_below_the_floor_is_blocked_and_says_why() -> None:
    result = _run(_evaluation(0.2, None), min_average_precision=0.3)
    assert not result.passed
    assert "below the floor" in result.description


def test_must_beat_the_champion_by_the_margin() -> None:
    assert _run(_evaluation(0.52, 0.50), min_average_precision=0.3, min_margin=0.01).passed
    blocked = _run(_evaluation(0.505, 0.50), min_average_precision=0.3, min_margin=0.01)
    assert not blocked.passed
    assert "gain over champion v1" in blocked.description


def test_a_gain_within_noise_does_not_promote() -> None:
    noisy = _run(_evaluation(0.55, 0.50, ci=(-0.01, 0.11)), min_average_precision=0.3)
    assert not noisy.passed and "lower bound" in noisy.description
    assert noisy.metadata["ap_gain_ci_low"].value == -0.01
    assert _run(_evaluation(0.55, 0.50, ci=(0.02, 0.08)), min_average_precision=0.3).passed
