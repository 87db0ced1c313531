"""Retention predictor: a calibration set's mixture ratios and information profile -> per-dimension retention.

Fitted on the sweep records of one pruner at one sparsity (``sweep.results_table``): features are the fraction of
the set's sequences from each capability pool (``frac_<dimension>``) and the seven profile metrics (constant or
missing columns are dropped); the model is a standardised ridge regression with its penalty chosen by an inner
grouped 5-fold search over sets (scikit-learn), one per target (S_<dimension>, S_total). Few sets, many correlated
features: a linear model with shrinkage is what the data can carry. Only records of one calibration budget and one
evaluation (N, L, item limit, tasks, eval dtype) are fitted together: profile metrics such as Volume depend on N × L.

The error is measured honestly: leave-one-*calibration-set*-out (every seed of a set is held out together; holding
out one seed of a set would test memory, not prediction), against a predict-the-training-mean baseline on the same
folds. ``skill`` = 1 - MAE / baseline MAE. Whether it predicts better than the mean is decided per target by a
one-sided Wilcoxon signed-rank test over the held-out sets (each set's mean absolute error against the baseline's,
α 0.05; at least MIN_SETS sets, since with fewer no p can fall below α): ``better than the mean`` (p < α),
``not better than the mean`` (skill <= 0), else ``inconclusive``. The interval of a prediction is ± the empirical 90th percentile
(with the (n + 1) finite-sample correction) of the held-out absolute errors over runs: a description of past
errors, not a coverage guarantee (runs of one set are not exchangeable).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data.calibration import pool_fractions
from .data.sources import DIMENSIONS
from .errors import CalibkitError
from .profile import METRICS as PROFILE_METRICS

FEATURES = tuple(f"frac_{d}" for d in DIMENSIONS) + PROFILE_METRICS
TARGETS = tuple(f"S_{d}" for d in DIMENSIONS) + ("S_total",)
COVERAGE = 0.9
ALPHA = 0.05
MIN_SETS = 5  # a one-sided exact Wilcoxon over k sets cannot give p < 0.05 with k <= 4 (1/16 = 0.0625)
ALPHAS = np.logspace(-2, 3, 7)
INNER_FOLDS = 5  # the penalty search holds out sets in 5 groups (leave-one-set-out inside each outer fold is slow)


class PredictError(CalibkitError, ValueError):
    pass


def _model(X, y, groups):
    """Imputer + scaler + ridge, its penalty chosen by a grouped k-fold search on (X, y) (the seeds of a set never
    split between fitting and scoring), refitted on all of it."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), Ridge())
    folds = GroupKFold(n_splits=min(INNER_FOLDS, len(set(groups))))
    search = GridSearchCV(pipe, {"ridge__alpha": ALPHAS}, cv=folds, scoring="neg_mean_absolute_error")
    return search.fit(X, y, groups=groups).best_estimator_


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


BUDGET = ("n", "seqlen", "limit", "tasks", "eval_dtype")  # records fitted together share these


def training_rows(df, method: str, sparsity: str):
    """The records of ``method`` at ``sparsity`` and the targets they measured (a suite may lack a dimension); they
    must share one budget and evaluation (``BUDGET``): filter the table first (``same_budget``)."""
    if not len(df):
        return df, []
    rows = df[(df["method"] == method) & (df["sparsity"].astype(str) == str(sparsity))]
    cols = [c for c in BUDGET if c in rows]
    kinds = rows[cols].astype(str).drop_duplicates() if cols else rows.iloc[:1, :0]
    if len(kinds) > 1:
        raise PredictError(f"{method} at {sparsity}: the records mix calibration budgets or evaluations "
                           f"({kinds.to_dict('records')}); fit on one (same_budget)")
    targets = [t for t in TARGETS if t in rows and rows[t].notna().all()]
    return rows, targets


def fit(df, method: str, sparsity: str) -> Predictor:
    """The predictor of ``method`` at ``sparsity`` from a results table, with its leave-one-set-out errors."""
    from scipy.stats import wilcoxon

    rows, targets = training_rows(df, method, sparsity)
    groups = rows["label"].to_numpy() if len(rows) else np.array([])
    n_sets = len(set(groups))
    if n_sets < MIN_SETS:
        raise PredictError(f"{method} at {sparsity}: {n_sets} calibration sets in the records; the predictor needs at "
                           f"least {MIN_SETS} different sets (held out one at a time)")
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
            pred[test] = _model(X[~test], y[~test], groups[~test]).predict(X[test])
            base[test] = y[~test].mean()
        err, err_base = np.abs(pred - y), np.abs(base - y)
        mae, mae_base = float(err.mean()), float(err_base.mean())
        per_set = np.array([[err[groups == g].mean(), err_base[groups == g].mean()] for g in np.unique(groups)])
        diff = per_set[:, 1] - per_set[:, 0]
        p = float(wilcoxon(diff, alternative="greater").pvalue) if np.any(diff != 0) else 1.0
        cv[t] = {"mae": mae, "baseline_mae": mae_base, "skill": 1 - mae / mae_base if mae_base > 0 else 0.0,
                 "p": p, "interval": float(np.quantile(err, min(1.0, np.ceil((len(err) + 1) * COVERAGE) / len(err))))}
        models[t] = _model(X, y, groups)
    return Predictor(method, str(sparsity), usable, len(rows), n_sets, cv, models)


def same_budget(df, **budget):
    """The rows whose BUDGET columns equal ``budget`` (None matches a missing value)."""
    for k, v in budget.items():
        col = df[k]
        df = df[col.isna()] if v is None else df[col.astype(str) == str(v)]
    return df


def set_features(cs, profile: dict) -> dict:
    """A calibration set's features: its pool fractions and its profile metrics."""
    return {f"frac_{d}": f for d, f in pool_fractions(cs.counts("dimension")).items()} | {
        m: profile.get(m) for m in PROFILE_METRICS}
