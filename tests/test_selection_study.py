"""selection_study: the paired "OASIS improves on X" verdicts, and their check against measured cross-kernel drift."""
import json

import numpy as np
import pandas as pd

from calibkit import analysis as A, selection_study as SS, verdicts as V


def results(gain_ppl: float, gain_acc: float, seeds: int = 4, noise: float = 0.002) -> pd.DataFrame:
    """A selection results table: per seed, random's and OASIS's scores (OASIS lowers perplexity by ``gain_ppl``
    relative and raises accuracy by ``gain_acc`` points), seed-to-seed noise ``noise``."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base = 1 + rng.normal(0, noise)
        for sel, g_ppl, g_acc in (("random", 0, 0), ("oasis", gain_ppl, gain_acc)):
            e = rng.normal(0, noise, 2)
            rows.append({"method": "wanda", "selector": sel, "seed": seed,
                         "score_ck_ptb_ppl": 30 * base * (1 - g_ppl) * (1 + e[0]),
                         "score_ck_boolq": 0.6 * base + g_acc / 100 + e[1]})
    return pd.DataFrame(rows)


def test_selection_verdicts_read_the_paired_test():
    found = SS.verdicts(results(0.05, 2.0))
    assert found["ppl/wanda/random"]["verdict"] == "holds" and found["acc/wanda/random"]["verdict"] == "holds"
    worse = SS.verdicts(results(-0.05, -2.0))
    assert worse["ppl/wanda/random"]["verdict"] == "fails" and worse["acc/wanda/random"]["verdict"] == "fails"
    assert SS.verdicts(results(0.05, 2.0, seeds=2))["ppl/wanda/random"]["verdict"] == "inconclusive"


def drift_file(folder, sd_ppl: float, sd_acc: float, n: int = 8) -> None:
    """``bench/drift_runs.py --kinds select`` rows: reference and variant scores of ``n`` OASIS and random runs."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        ref = {"ck_ptb_ppl": 30.0, "ck_boolq": 0.6}
        var = {"ck_ptb_ppl": 30.0 * float(np.exp(rng.normal(0, sd_ppl))), "ck_boolq": 0.6 + rng.normal(0, sd_acc) / 100}
        rows.append({"key": f"k{i}", "kind": "select", "label": f"select:{('oasis', 'random')[i % 2]}",
                     "method": "wanda", "sparsity": "0.5", "seed": i // 2, "variant": "avx2-threads2",
                     "scores": {"reference": ref, "variant": var}})
    rows.append({"key": "study", "label": "ptb", "method": "wanda", "sparsity": "0.6", "seed": 0,
                 "variant": "avx2-threads2", "delta": {}})  # a capability-study row (no kind): not a selection's
    rows.append({"key": "whole", "kind": "source", "suite": "oasis", "label": "ptb", "method": "nirvana",
                 "sparsity": "0.2", "seed": 0, "variant": "avx2-threads2", "delta": {}})  # an OASIS whole set: neither
    (folder / "embedded-avx2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_selection_verdict_the_measured_drift_flips_is_inconclusive(tmp_path):
    df = results(0.02, 1.0)
    found = SS.verdicts(df)
    assert found["ppl/wanda/random"]["verdict"] == "holds"
    drift_file(tmp_path, 1e-4, 0.01)
    calm = SS.drift_table(tmp_path, "embedded")
    assert len(calm) == 8 and set(calm["selector"]) == {"oasis", "random"}
    assert calm["log_ppl"].abs().max() < 1e-3 and len(SS.drift_table(tmp_path, "smoke")) == 0
    assert len(A.drift_table(tmp_path, "embedded")) == 1  # the capability study reads only its own rows
    kept = V.under_drift(found, SS.per_seed(df), calm, SS.perturb, SS.seed_verdicts, draws=40)
    assert kept["ppl/wanda/random"]["verdict"] == "holds"
    assert kept["ppl/wanda/random"]["numbers"]["drift_stability"] == 1.0
    drift_file(tmp_path, 0.05, 3.0)  # other kernels move log ppl by ~0.05 and accuracy by ~3 pts
    rough = V.under_drift(found, SS.per_seed(df), SS.drift_table(tmp_path, "embedded"), SS.perturb,
                          SS.seed_verdicts, draws=40)
    assert rough["ppl/wanda/random"]["verdict"] == "inconclusive" and "not decided" in rough["ppl/wanda/random"]["text"]
    assert found["ppl/wanda/random"]["verdict"] == "holds"  # the input is left as it was
    assert V.under_drift(found, df, calm.iloc[:0], SS.perturb, SS.seed_verdicts) is found  # nothing measured: nothing to check
    md = SS.drift_markdown(calm)
    assert "| wanda" in md and "oasis" in md and "0/4" in md and "No cross-kernel" in SS.drift_markdown(calm.iloc[:0])
    runs = SS.per_seed(df)
    assert "←" not in SS.drift_markdown(calm, runs)  # every pruner and selector measured
    assert "nirvana/oasis ← all measured runs" in SS.drift_markdown(calm, runs.assign(method="nirvana"))
