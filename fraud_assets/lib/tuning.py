"""The optional, bounded hyperparameter search: Optuna's TPE sampler over CatBoost's depth,
learning rate and L2 regularisation, each trial fitted on the train slice with early
stopping on the validation slice and scored by its validation AP.

Off by default (0 trials): the defaults are sound and a search costs a fit per trial. The
test window is never seen, so the evaluation stays an honest estimate; the validation slice
picks the parameters, stops the trees and calibrates, which makes its own AP optimistic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import polars as pl

from fraud_assets.lib.metrics import average_precision
from fraud_assets.lib.modeling import CatBoostParams, predict_catboost, train_catboost

SEARCH_SPACE = {  # name: (low, high, log scale)
    "depth": (4, 8, False),
    "learning_rate": (0.02, 0.2, True),
    "l2_leaf_reg": (1.0, 10.0, True),
}
# Called after each trial with (trial number, its parameters, its validation AP).
TrialCallback = Callable[[int, dict[str, float], float], None]


def tune_catboost(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    features: Sequence[str],
    categoricals: Sequence[str],
    base: CatBoostParams,
    trials: int,
    on_trial: TrialCallback | None = None,
) -> tuple[CatBoostParams, float]:
    """The best parameters of `trials` trials (and their validation AP); `base` supplies
    everything the search does not vary. Deterministic for a given `base.random_seed`."""
    import optuna

    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if validation.height == 0 or validation["label"].n_unique() < 2:
        raise ValueError("the search needs a validation slice with both classes")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y = validation["label"].to_numpy()

    def objective(trial: optuna.Trial) -> float:
        values: dict[str, float] = {}
        for name, (low, high, log) in SEARCH_SPACE.items():
            if isinstance(low, int):
                values[name] = trial.suggest_int(name, low, high)
            else:
                values[name] = trial.suggest_float(name, low, high, log=log)
        model = train_catboost(train, validation, features, categoricals, replace(base, **values))
        ap = average_precision(y, predict_catboost(model, validation, features))
        if on_trial is not None:
            on_trial(trial.number, values, ap)
        return ap

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.random_seed)
    )
    study.optimize(objective, n_trials=trials)
    return replace(base, **study.best_params), float(study.best_value)
