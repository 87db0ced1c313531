import itertools
import random

import pytest
from calibkit.selfgen.generate import Sampling, scheduled_temperature
from calibkit.selfgen.select import (band_filter, diversity_ratio, greedy_ngram_select, ppl_binned_entropy_sample,
                                     vocabulary_entropy)


def test_linear_temperature_schedule():
    assert scheduled_temperature(0, 0.5, 1.5, 10) == pytest.approx(0.5)
    assert scheduled_temperature(5, 0.5, 1.5, 10) == pytest.approx(1.0)
    assert scheduled_temperature(10, 0.5, 1.5, 10) == pytest.approx(1.5)
    assert scheduled_temperature(50, 0.5, 1.5, 10) == pytest.approx(1.5)
    assert [scheduled_temperature(i, 1.0, 0.0 + 1e-9, 4) for i in range(5)][:4] == pytest.approx([1, .75, .5, .25])
    with pytest.raises(ValueError):
        Sampling(temperature=0)


def test_band_filter():
    assert band_filter([1.0, 5.0, 12.0, 12.5, 4.99], 5, 12) == [1, 2]
    with pytest.raises(ValueError):
        band_filter([1.0], 3, 2)


def _exhaustive_greedy(texts, k, n=4):
    chosen = []
    for _ in range(k):
        best = max((i for i in range(len(texts)) if i not in chosen),
                   key=lambda i: (diversity_ratio([texts[j] for j in chosen + [i]], n), -i))
        chosen.append(best)
    return chosen


def test_greedy_selector_equals_exhaustive_greedy():
    words = "a b c d e f g h".split()
    rng = random.Random(0)
    for trial in range(20):
        pool = [" ".join(rng.choice(words[: rng.randint(2, 8)]) for _ in range(rng.randint(4, 14)))
                for _ in range(9)]
        for k in (1, 3, 6):
            assert greedy_ngram_select(pool, k) == _exhaustive_greedy(pool, k), (trial, k, pool)


def test_greedy_prefers_novel_text_and_handles_start():
    pool = ["x y z w x y z w", "x y z w x y z w", "p q r s t u v"]
    assert greedy_ngram_select(pool, 2) == [2, 0]
    assert greedy_ngram_select(pool, 1, start=["p q r s t u v"]) == [0]
    with pytest.raises(ValueError):
        greedy_ngram_select(pool, 4)


def test_vocabulary_entropy_and_sgs_sampling():
    assert vocabulary_entropy([1, 1, 1]) == 0.0
    assert vocabulary_entropy([1, 2]) == pytest.approx(0.6931, abs=1e-4)
    ppl = [float(i) for i in range(10)]          # 8, 9 are the top 20 % and must go
    ent = [0, 5, 1, 4, 2, 9, 3, 1, 99, 99]
    picked = ppl_binned_entropy_sample(ppl, ent, 4, drop_top=0.2, bins=2)
    assert 8 not in picked and 9 not in picked
    assert picked == [1, 3, 5, 6]  # bins {0..3}, {4..7}: two highest-entropy from each
    assert sorted(ppl_binned_entropy_sample(ppl, ent, 8, drop_top=0.2, bins=4)) == list(range(8))
