"""``calibkit advise``: the calibration mixture that keeps the capabilities a user weights.

An Optuna TPE search (seeded) over the fraction of the set drawn from each capability pool: each trial suggests a
weight per pool on a 0.1 grid, the weights become the set's per-pool counts (``allocate``; weights that give the
same counts are the same set, and the same run), and the objective is the weighted retention
Σ_d w_d S_d / Σ_d w_d of the set, pruned and evaluated for real through the sweep store (cached, resumable, Ray-
capable), averaged over the search seeds. The first trial is mix_balanced; ``warm_start`` adds the mixtures the
retention predictor (``calibkit.predict``, fitted on a store's records) ranks highest. The chosen mixture is then
measured over the final seeds next to mix_balanced (and the best single source the store holds records of, or the
sources named), and written out: the recommended set (the chosen mixture if its comparison with mix_balanced
holds on the final seeds, else mix_balanced: ``recommend``; jsonl + a ``datasets`` folder for llm-compressor), a
JSON report, a markdown summary and the search trajectory plot. The same inputs and seed give the same trials and
the same set.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .data.calibration import DIM_ALIASES, allocate, pool_fractions
from .data.sources import DIMENSIONS
from .errors import ConfigError

GRID = 0.1  # weight step per pool: coarse enough that revisited mixtures are cache hits
BALANCED = "balanced"


def parse_weights(text: str) -> dict[str, float]:
    """``general=1,commonsense=1,code=2,math=1`` -> {dimension: weight}; unnamed dimensions weigh 0."""
    out = {d: 0.0 for d in DIMENSIONS}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        dim = DIM_ALIASES.get(name.strip().lower())
        if not sep or dim is None:
            raise ConfigError(f"--weights {text!r}: each item is <dimension>=<weight> with a dimension among "
                              f"{', '.join(DIM_ALIASES)}; got {part!r}")
        try:
            w = float(value)
        except ValueError:
            raise ConfigError(f"--weights {text!r}: weight of {name} is not a number ({value!r})") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"--weights {text!r}: weights are finite and >= 0, got {name}={value}")
        out[dim] = w
    if sum(out.values()) <= 0:
        raise ConfigError(f"--weights {text!r}: at least one weight must be positive")
    return out


def parse_budget(text: str) -> tuple[int, int]:
    """``128x2048`` -> (sequences, tokens per sequence)."""
    n, sep, seqlen = text.lower().partition("x")
    if not sep or not n.isdigit() or not seqlen.isdigit() or int(n) <= 0 or int(seqlen) <= 0:
        raise ConfigError(f"--budget {text!r}: give NxL, e.g. 128x2048 (N sequences of L tokens)")
    return int(n), int(seqlen)


def weighted(dimensions: dict[str, float], weights: dict[str, float]) -> float:
    """Σ_d w_d S_d / Σ_d w_d over the weighted dimensions (retention as a fraction)."""
    return sum(w * dimensions[d] for d, w in weights.items() if w > 0) / sum(weights.values())


def mixture(pool_weights: list[float], n: int) -> str:
    """The calibration spec of pool weights (G, C, K, M) for an n-sequence set: its per-pool counts ``G:C:K:M``,
    or ``balanced`` when the counts are mix_balanced's."""
    counts = allocate(n, pool_weights)
    return BALANCED if counts == allocate(n, [1, 1, 1, 1]) else ":".join(map(str, counts))


@dataclass(frozen=True)
class AdviseConfig:
    model: str
    pruner: str
    sparsity: str
    weights: dict
    n: int
    seqlen: int
    out: str
    store: str
    trials: int = 20
    seeds: tuple[int, ...] = (0,)
    final_seeds: tuple[int, ...] = (1, 2, 3)  # disjoint from ``seeds``: see ``check``
    seed: int = 0
    suite: str = "embedded"
    eval_dtype: str = "bfloat16"
    limit: int | None = None  # eval items per task (None: the suite's sizes)
    tasks: tuple[str, ...] | None = None  # subset of the suite's tasks
    singles: tuple[str, ...] = ()
    warm_start: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    device: str = "cpu"
    overwrite: bool = False

    def check(self) -> None:
        """Refuse, before any run: final seeds that the search saw (the chosen mixture's value there is the best of
        many noisy trials: the winner's curse would bias the comparison for it), weights on a dimension the
        evaluated tasks do not measure, and a store inside the output folder (written at the end, atomically)."""
        from .eval.harness import suite

        seen = sorted(set(self.seeds) & set(self.final_seeds))
        if seen:
            raise ConfigError(f"final seeds {list(self.final_seeds)} include search seed(s) {seen}: the comparison "
                              "must use seeds the search did not see (the chosen mixture's search value is the best "
                              "of many noisy trials)")
        measured = {t.dimension for t in suite(self.suite, list(self.tasks) if self.tasks else None)}
        unmeasured = [d for d, w in self.weights.items() if w > 0 and d not in measured]
        if unmeasured:
            raise ConfigError(f"weights on {', '.join(unmeasured)}, which the evaluated tasks do not measure "
                              f"(they measure {', '.join(sorted(measured))})")
        out, store = Path(self.out).resolve(), Path(self.store).resolve()
        if store == out or out in store.parents:
            raise ConfigError(f"--store {self.store} is inside --out {self.out}: the output folder is written "
                              "atomically at the end; keep the runs elsewhere")

    def configs(self, calibration: str, seeds):
        from .sweep import expand

        return expand({"name": "advise", "model": self.model, "suite": self.suite, "eval_dtype": self.eval_dtype,
                       "n": self.n, "seqlen": self.seqlen, "seeds": list(seeds), "limit": self.limit,
                       **({"tasks": list(self.tasks)} if self.tasks else {}),
                       "experiments": {"advise": {"calibration": [calibration], "methods": [self.pruner],
                                                  "sparsities": [self.sparsity]}}})


@dataclass
class Measured:
    calibration: str
    per_seed: list[dict] = field(default_factory=list)  # {"seed", "objective", "dimensions", "total"}

    @property
    def objectives(self) -> list[float]:
        return [r["objective"] for r in self.per_seed]

    def summary(self) -> dict:
        o = np.array(self.objectives)
        dims = {d: [r["dimensions"][d] for r in self.per_seed] for d in self.per_seed[0]["dimensions"]}
        sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else None  # noqa: E731
        return {"calibration": self.calibration, "seeds": [r["seed"] for r in self.per_seed],
                "objective": {"mean": float(o.mean()), "sd": sd(o)},
                "dimensions": {d: {"mean": float(np.mean(v)), "sd": sd(v)} for d, v in dims.items()},
                "per_seed": self.per_seed}


def measure(cfg: AdviseConfig, calibration: str, seeds) -> Measured:
    """Prune and evaluate ``calibration`` at each seed through the store (records already there are reused)."""
    from .sweep import Store, run_sweep

    configs = cfg.configs(calibration, seeds)
    run_sweep(configs, cfg.store, executor=cfg.executor, device=cfg.device, ray_address=cfg.ray_address,
              progress=False, profile=False)  # the objective reads retention only; profiling costs ~10 % of a run
    store, out = Store(cfg.store), Measured(calibration)
    for c in configs:
        r = store.get(c)["retention"]
        out.per_seed.append({"seed": c.seed, "objective": weighted(r["dimensions"], cfg.weights),
                             "dimensions": r["dimensions"], "total": r["total"]})
    return out


def warm_start_mixtures(cfg: AdviseConfig, k: int = 3) -> list[list[float]]:
    """The k pool-weight vectors (on the search grid) whose predicted weighted retention is highest, from the
    predictor fitted on ``cfg.warm_start``'s records (pool fractions only: profile features are imputed)."""
    from itertools import product

    from .predict import fit, same_budget
    from .sweep.tables import results_table

    df = results_table(cfg.warm_start)
    if len(df):
        df = same_budget(df[(df["model"] == cfg.model) & (df["suite"] == cfg.suite)], n=cfg.n, seqlen=cfg.seqlen,
                         limit=cfg.limit, eval_dtype=cfg.eval_dtype,
                         tasks=",".join(cfg.tasks) if cfg.tasks else None)
    pred = fit(df, cfg.pruner, cfg.sparsity)
    targets = [f"S_{d}" for d, w in cfg.weights.items() if w > 0]
    missing = [t for t in targets if t not in pred.models]
    if missing:
        raise ConfigError(f"--warm-start {cfg.warm_start}: its records do not measure {', '.join(missing)}")
    grid = [g for g in product([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], repeat=4) if sum(g) > 0]  # on the search's grid
    scored, seen = [], set()
    for g in grid:
        spec = mixture(list(g), cfg.n)
        if spec in seen:
            continue
        seen.add(spec)
        frac = {f"frac_{d}": f for d, f in pool_fractions(dict(zip(DIMENSIONS, g))).items()}
        p = pred.predict(frac)
        scored.append((weighted({t[2:]: p[t]["mean"] for t in targets}, cfg.weights), spec, list(g)))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [g for _, spec, g in scored if spec != BALANCED][:k]


def search(cfg: AdviseConfig, progress: bool = True):
    """The Optuna study (TPE, seeded) and each trial's mixture; trial 0 is mix_balanced."""
    import optuna
    from tqdm.auto import tqdm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    starts = [[1.0, 1.0, 1.0, 1.0]] + (warm_start_mixtures(cfg) if cfg.warm_start else [])
    for w in starts:
        study.enqueue_trial({f"w_{d}": x for d, x in zip(DIMENSIONS, w)})
    bar = tqdm(total=cfg.trials, desc="advise", unit="trial", disable=not progress)
    best: list[float] = []  # best objective so far, after each measured trial

    def objective(trial) -> float:
        w = [trial.suggest_float(f"w_{d}", 0.0, 1.0, step=GRID) for d in DIMENSIONS]
        if sum(w) == 0:
            raise optuna.TrialPruned("all pool weights are 0")
        spec = mixture(w, cfg.n)
        trial.set_user_attr("calibration", spec)
        value = float(np.mean(measure(cfg, spec, cfg.seeds).objectives))
        best.append(max([value, *best]))
        bar.update()
        bar.set_postfix_str(f"{spec}: {100 * value:.2f} (best {100 * best[-1]:.2f})")
        return value

    try:
        study.optimize(objective, n_trials=cfg.trials)
    finally:
        bar.close()
    return study


def best_single(cfg: AdviseConfig) -> str | None:
    """The single source with the highest weighted retention among the store's current records of this model,
    pruner, sparsity and budget at the final seeds (averaged over them), or None. Picked on the seeds it is then
    compared on, it is favoured by the same winner's curse the advised set is kept from: a bias against the advised
    set, never for it."""
    from .data import sources
    from .sweep import Store

    store, best = Store(cfg.store), None
    for name in sources.names(family="embedded"):
        configs = cfg.configs(name, cfg.final_seeds)
        if all(store.done(c) for c in configs):
            recs = [store.get(c) for c in configs]
            score = float(np.mean([weighted(r["retention"]["dimensions"], cfg.weights) for r in recs]))
            best = max(best or (score, name), (score, name))
    return best[1] if best else None


def compare(advised: Measured, other: Measured) -> dict:
    """Advised minus ``other`` on the weighted objective (points), paired by seed, with its verdict: ``holds`` when
    the paired test decides for the advised set (``verdicts.decide``: n >= 3, p < α, margin above the measured
    drift) *and* the margin exceeds the seed-to-seed sd of either set; ``fails`` when both say the other set is
    better; else ``inconclusive``."""
    import pandas as pd

    from .verdicts import decide, paired

    a = pd.Series({r["seed"]: 100 * r["objective"] for r in advised.per_seed})
    b = pd.Series({r["seed"]: 100 * r["objective"] for r in other.per_seed})
    r = paired(a, b)
    noise = max(float(np.std(a, ddof=1)) if len(a) > 1 else math.inf,
                float(np.std(b, ddof=1)) if len(b) > 1 else math.inf)
    verdict = decide(r)
    if verdict != "inconclusive" and not abs(r["mean"]) > noise:  # either way, the margin must exceed the seed sd
        verdict = "inconclusive"
    return {"against": other.calibration, "margin_pts": r["mean"], "sd_pts": r["sd"], "n": r["n"],
            "agree": r["agree"], "p": r["p"], "seed_sd_pts": noise, "verdict": verdict}


def recommend(chosen: str, comparisons: list[dict]) -> dict:
    """The set to use: the chosen mixture when its comparison with mix_balanced ``holds`` on the final seeds (or it
    is mix_balanced), else mix_balanced — a searched mixture that is not shown better on seeds the search did not
    see is the best of many noisy trials, not a better set."""
    if chosen == BALANCED:
        return {"calibration": BALANCED, "why": "the search's best mixture is mix_balanced itself"}
    vs = next(c for c in comparisons if c["against"] == BALANCED)
    if vs["verdict"] == "holds":
        return {"calibration": chosen, "why": f"it beats mix_balanced on the final seeds "
                                              f"({vs['margin_pts']:+.2f} pts, p={vs['p']:.3f}; holds)"}
    return {"calibration": BALANCED, "why": f"the chosen mixture {chosen} does not beat mix_balanced on the final "
                                            f"seeds ({vs['margin_pts']:+.2f} pts, p={vs['p']:.3f}; "
                                            f"{vs['verdict']})"}


def trajectory_plot(trials: list[dict], path: Path) -> Path:
    """Objective per trial and the best so far (seaborn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    x = [t["number"] for t in trials]
    y = [100 * t["objective"] for t in trials]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.scatterplot(x=x, y=y, ax=ax, label="trial", color="tab:blue")
    ax.plot(x, np.maximum.accumulate(y), color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("weighted retention (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def advise(cfg: AdviseConfig, progress: bool = True) -> dict:
    """Search, measure the chosen mixture against mix_balanced (and a single source) over the final seeds, write
    the outputs into ``cfg.out``; returns the report."""
    import time

    from .outputs import atomic_dir, check_output_dir
    from .spec import build
    from .sweep import Store

    cfg.check()
    check_output_dir(cfg.out, cfg.overwrite, what="advise output folder")  # before the search, not after it
    t0 = time.perf_counter()
    study = search(cfg, progress)
    trials = [{"number": t.number, "calibration": t.user_attrs["calibration"], "objective": t.value,
               "weights": {d: round(t.params[f"w_{d}"], 1) for d in DIMENSIONS}}
              for t in study.trials if t.value is not None]
    best = max(trials, key=lambda t: (t["objective"], -t["number"]))
    t_search = time.perf_counter() - t0
    others = [BALANCED] + list(cfg.singles or ([s] if (s := best_single(cfg)) else []))
    measured = {c: measure(cfg, c, cfg.final_seeds) for c in dict.fromkeys([best["calibration"], *others])}
    advised = measured[best["calibration"]]
    comparisons = [compare(advised, measured[c]) for c in others if c != best["calibration"]]
    rec = recommend(best["calibration"], comparisons)
    used = {c.key: c for t in dict.fromkeys(t["calibration"] for t in trials) for c in cfg.configs(t, cfg.seeds)}
    used |= {c.key: c for m in measured for c in cfg.configs(m, cfg.final_seeds)}
    store = Store(cfg.store)
    report = {"config": asdict(cfg) | {"weights": cfg.weights}, "chosen": best, "recommended": rec,
              "final": {c: m.summary() for c, m in measured.items()}, "comparisons": comparisons,
              "trials": trials, "seconds": {"search": t_search, "total": time.perf_counter() - t0,
                                            "runs": sum(store.get(c)["seconds"]["run"] for c in used.values())},
              "runs": len(used),
              "single_source": None if cfg.singles else (others[1] if len(others) > 1 else None)}
    cs = build(rec["calibration"], n=cfg.n, seqlen=cfg.seqlen, seed=cfg.final_seeds[0], model_name=cfg.model,
               progress=False)
    with atomic_dir(cfg.out, cfg.overwrite, what="advise output folder") as tmp:
        cs.to_jsonl(tmp / "calibration.jsonl")
        cs.to_hf_dataset().save_to_disk(str(tmp / "calibration_dataset"))
        trajectory_plot(trials, tmp / "trajectory.png")
        (tmp / "advise_report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        (tmp / "README.md").write_text(summary_markdown(report))
    return report


def summary_markdown(report: dict) -> str:
    cfg, best, rec = report["config"], report["chosen"], report["recommended"]
    w = ", ".join(f"{d} {x:g}" for d, x in cfg["weights"].items())
    lines = [f"# calibkit advise: {cfg['model']}, {cfg['pruner']} {cfg['sparsity']}, {cfg['n']}x{cfg['seqlen']}", "",
             f"Weights: {w}. {len(report['trials'])} trials (Optuna TPE, seed {cfg['seed']}, search seeds "
             f"{list(cfg['seeds'])}); this invocation {report['seconds']['total'] / 60:.1f} min; the "
             f"{report['runs']} prune + eval runs it used took {report['seconds']['runs'] / 60:.1f} min when they "
             "were computed (the store keeps them).", "",
             f"**Recommended set: `{rec['calibration']}`** ({rec['why']}); `calibration.jsonl` holds it.", "",
             f"Chosen mixture of the search (sequences per pool G:C:K:M): `{best['calibration']}`, found at trial "
             f"{best['number']}.", "", "| set | weighted retention | " + " | ".join(
                 d for d in DIMENSIONS) + " | seeds |", "|---|---|" + "---|" * len(DIMENSIONS) + "---|"]
    sd = lambda v: "" if v is None else f" ± {100 * v:.2f}"  # noqa: E731
    for c, m in report["final"].items():
        lines.append(f"| {c} | {100 * m['objective']['mean']:.2f}{sd(m['objective']['sd'])} | " + " | ".join(
            f"{100 * m['dimensions'][d]['mean']:.1f}{sd(m['dimensions'][d]['sd'])}" for d in DIMENSIONS
            if d in m["dimensions"]) + f" | {len(m['seeds'])} |")
    lines += ["", "Advised minus each other set, paired by seed (points of weighted retention):", ""]
    if not report["comparisons"]:
        lines.append("- none: the chosen mixture is the only set measured (it is mix_balanced itself, and no single "
                     "source was named or found in the store)")
    for c in report["comparisons"]:
        lines.append(f"- vs {c['against']}: {c['margin_pts']:+.2f} ± {c['sd_pts']:.2f} (n={c['n']}, "
                     f"{c['agree']}/{c['n']} seeds agree, paired t p={c['p']:.3f}; seed-to-seed sd "
                     f"{c['seed_sd_pts']:.2f}) — **{c['verdict']}**")
    lines += ["", "Files: `calibration.jsonl` (+ `.meta.json`), `calibration_dataset/` (datasets, for llm-compressor's "
              "`oneshot(dataset=...)`), `advise_report.json`, `trajectory.png`.", ""]
    return "\n".join(lines)
