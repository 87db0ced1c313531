"""Retention predictor: a calibration set's mixture ratios and information profile -> per-dimension retention.

Fitted on the sweep records of one pruner at one sparsity (``sweep.results_table``): features are the fraction of
the set's sequences from each capability pool (``frac_<dimension>``) and the seven profile metrics (constant or
missing columns are dropped); the model is a standardised ridge regression with its penalty chosen by internal
cross-validation (scikit-learn), one per target (S_<dimension>, S_total). Few sets, many correlated features: a
linear model with shrinkage is what the data can carry.

The error is measured honestly: leave-one-*calibration-set*-out (every seed of a set is held out together; holding
out one seed of a set would test memory, not prediction), against a predict-the-training-mean baseline on the same
folds. ``skill`` = 1 - MAE / baseline MAE. Whether it predicts better than the mean is decided per target by a
one-sided Wilcoxon signed-rank test over the held-out sets (each set's mean absolute error against the baseline's,
α 0.05): ``better than the mean`` (p < α), ``not better than the mean`` (skill <= 0), else ``inconclusive``. The interval of a prediction is ± the 90th percentile of the held-out absolute errors (split-conformal
style over sets).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data.sources import DIMENSIONS
from .errors import CalibkitError
from .profile import METRICS as PROFILE_METRICS

FEATURES = tuple(f"frac_{d}" for d in DIMENSIONS) + PROFILE_METRICS
TARGETS = tuple(f"S_{d}" for d in DIMENSIONS) + ("S_total",)
COVERAGE = 0.9
ALPHA = 0.05


class PredictError(CalibkitError, ValueError):
    pass


def _model():
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 21)))


@dataclass
class Predictor:
    method: str
    sparsity: str
    features: list[str]
    runs: int
    sets: int
    cv: dict  # target -> {"mae", "baseline_mae", "skill", "interval"} (retention as a fraction)
    models: dict = field(repr=False, default_factory=dict)

    def predict(self, feats: dict) -> dict:
        """{target: {"mean", "low", "high"}} for one set's features (missing ones are imputed)."""
        x = np.array([[np.nan if feats.get(f) is None else float(feats[f]) for f in self.features]])
        out = {}
        for t, m in self.models.items():
            y = float(m.predict(x)[0])
            out[t] = {"mean": y, "low": y - self.cv[t]["interval"], "high": y + self.cv[t]["interval"]}
        return out

    def verdicts(self) -> dict[str, str]:
        return {t: ("better than the mean" if c["p"] < ALPHA else
                    "not better than the mean" if c["skill"] <= 0 else "inconclusive") for t, c in self.cv.items()}


def training_rows(df, method: str, sparsity: str):
    """The records of ``method`` at ``sparsity`` and the targets they measured (a suite may lack a dimension)."""
    if not len(df):
        return df, []
    rows = df[(df["method"] == method) & (df["sparsity"].astype(str) == str(sparsity))]
    targets = [t for t in TARGETS if t in rows and rows[t].notna().all()]
    return rows, targets


def fit(df, method: str, sparsity: str) -> Predictor:
    """The predictor of ``method`` at ``sparsity`` from a results table, with its leave-one-set-out errors."""
    from scipy.stats import wilcoxon

    rows, targets = training_rows(df, method, sparsity)
    groups = rows["label"].to_numpy() if len(rows) else np.array([])
    n_sets = len(set(groups))
    if n_sets < 4:
        raise PredictError(f"{method} at {sparsity}: {n_sets} calibration sets in the records; the predictor needs at "
                           "least 4 different sets (held out one at a time)")
    usable = [f for f in FEATURES if f in rows and rows[f].notna().any() and rows[f].nunique(dropna=True) > 1]
    if not usable:
        raise PredictError(f"{method} at {sparsity}: no feature varies across the records")
    X = rows[usable].astype(float).to_numpy()
    cv, models = {}, {}
    for t in targets:
        y = rows[t].astype(float).to_numpy()
        pred, base = np.empty_like(y), np.empty_like(y)
        for g in np.unique(groups):
            test = groups == g
            pred[test] = _model().fit(X[~test], y[~test]).predict(X[test])
            base[test] = y[~test].mean()
        err, err_base = np.abs(pred - y), np.abs(base - y)
        mae, mae_base = float(err.mean()), float(err_base.mean())
        per_set = np.array([[err[groups == g].mean(), err_base[groups == g].mean()] for g in np.unique(groups)])
        diff = per_set[:, 1] - per_set[:, 0]
        p = float(wilcoxon(diff, alternative="greater").pvalue) if np.any(diff != 0) else 1.0
        cv[t] = {"mae": mae, "baseline_mae": mae_base, "skill": 1 - mae / mae_base if mae_base > 0 else 0.0,
                 "p": p, "interval": float(np.quantile(err, COVERAGE))}
        models[t] = _model().fit(X, y)
    return Predictor(method, str(sparsity), usable, len(rows), n_sets, cv, models)


def set_features(cs, profile: dict) -> dict:
    """A calibration set's features: its pool fractions and its profile metrics."""
    counts = cs.counts("dimension")
    return {f"frac_{d}": counts.get(d, 0) / len(cs) for d in DIMENSIONS} | {m: profile.get(m) for m in PROFILE_METRICS}
