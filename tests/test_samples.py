"""Per-sample analysis (calibkit.samples) on hand-built prune tables whose truth is known."""
import itertools

import numpy as np
import pandas as pd
from calibkit import samples as S


def _table(quality, pair_effect, method="wanda", noise=0.0, seed=0):
    """quality: sample id -> single-sample ppl; pair_effect(a, b) -> ppl of the pair."""
    rng = np.random.default_rng(seed)
    rows = [{"samples": (i,), "method": method, "seed": 0, "ppl": q} for i, q in quality.items()]
    for a, b in itertools.combinations(sorted(quality), 2):
        rows.append({"samples": (a, b), "method": method, "seed": 0,
                     "ppl": pair_effect(quality[a], quality[b]) + rng.normal(0, noise)})
    return pd.DataFrame(rows)


QUALITY = {i: 20.0 + 2 * i for i in range(12)}  # 0..3 golden, 4..7 mediocre, 8..11 detrimental


def test_tiers_are_thirds_of_the_rank():
    t = S.tiers(pd.Series(QUALITY))
    assert list(t[[0, 3, 4, 7, 8, 11]]) == ["golden", "golden", "mediocre", "mediocre", "detrimental", "detrimental"]
    assert t.value_counts().to_dict() == {"golden": 4, "mediocre": 4, "detrimental": 4}


def test_synergy_and_degradation_hold_fail_or_are_inconclusive_by_the_data():
    tier = S.tiers(pd.Series(QUALITY))

    def oasis(a, b):  # same tier: better than both; mixed: worse than the better one
        same = tier[[k for k, v in QUALITY.items() if v == a][0]] == tier[[k for k, v in QUALITY.items() if v == b][0]]
        return min(a, b) - 1.0 if same else max(a, b) + 1.0
    df = _table(QUALITY, oasis)
    assert S.synergy(df, "wanda")["verdict"] == "holds"
    assert S.degradation(df, "wanda")["verdict"] == "holds"
    averaging = _table(QUALITY, lambda a, b: (a + b) / 2 + 0.5)  # a pair is the mean of its members: no synergy
    assert S.synergy(averaging, "wanda")["verdict"] == "fails"
    noisy = _table(QUALITY, lambda a, b: min(a, b), noise=1.0)
    assert S.synergy(noisy, "wanda")["verdict"] == "inconclusive"
    d = S.pair_table(df, "wanda")
    assert set(d["pair"]) == {"golden + golden", "mediocre + mediocre", "detrimental + detrimental",
                              "golden + mediocre", "golden + detrimental", "mediocre + detrimental"}


def test_context_dependency_from_two_pruners_rankings():
    a = _table(QUALITY, min, "wanda")
    same = _table({i: 2 * q for i, q in QUALITY.items()}, min, "sparsegpt")
    rng = np.random.default_rng(1)
    shuffled = _table(dict(zip(QUALITY, rng.permutation(list(QUALITY.values())))), min, "nirvana")
    df = pd.concat([a, same, shuffled])
    assert S.context_dependency(df, "wanda", "sparsegpt")["verdict"] == "fails"  # identical ranking
    assert S.context_dependency(df, "wanda", "nirvana")["verdict"] == "holds"
