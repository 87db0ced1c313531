"""One call that opens a study for a notebook: the validated sweep profile, its result store and its reports folder.

    study = open_study("embedded", groups=["main"])
    study.configs()       # the run configs of the chosen groups
    study.profiles()      # the information profiles of the capability study's sets (Table 3)
    study.results()       # one row per finished run (``sweep.results_table``), per-sample prunes apart
    study.sample_results()  # OASIS: the per-sample prunes (single samples and pairs: ``calibkit.samples``)
    study.macro_results()   # OASIS: whole-set prunes varying size, length, seed and source (Figure 2 form)
    study.selection_results()  # OASIS: selected sets (random, entropy, synthetic, OASIS) x pruners x seeds
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import sweep
from .reports import Reports, results_dir


SAMPLE_GROUPS = ("samples", "macro")  # group-name prefixes of OASIS's per-sample and macro analyses (notebook 06)
SELECTION_GROUPS = ("selection",)  # OASIS's selection experiments (notebook 07)
OASIS_GROUPS = SAMPLE_GROUPS + SELECTION_GROUPS  # kept apart from the capability study (01-05)


@dataclass
class Study:
    profile: dict  # the profile as loaded (validated), restricted to the chosen groups
    name: str
    store: Path
    reports: Reports
    highest: str  # the sparsity at which the main grid's findings are read
    reference: str | None  # the single source standing in for the study's C4

    @property
    def reproductions(self) -> Path:
        """Where reproduction checks of this study are recorded (``calibkit compare ... --csv``), beside the store."""
        return self.store.parent / "reproductions" / self.name

    @property
    def drift(self) -> Path:
        """Where the cross-kernel drift of its runs is recorded (``bench/drift_runs.py``), beside the store."""
        return self.store.parent / "drift"

    def configs(self, groups: list[str] | None = None) -> list[sweep.RunConfig]:
        prof = self.profile if not groups else sweep.restrict_groups(self.profile, groups)
        return sweep.expand(prof)

    def keys(self, groups: list[str] | None = None) -> set[str]:
        """The run keys of the (chosen groups') configs."""
        return {c.key for c in self.configs(groups)}

    def capability_groups(self) -> list[str]:
        """The capability study's groups (notebooks 01-05): every group but OASIS's."""
        return [g for g in self.profile["experiments"] if not g.startswith(OASIS_GROUPS)]

    def profiles(self):
        """The information profiles of the capability study's calibration sets (Table 3): the sets of its groups'
        configs only (OASIS's per-sample, macro and selection sets have other sizes and lengths)."""
        df = sweep.profiles_table(self.store)
        groups = self.capability_groups()
        keys = {(c.calibration, c.n, c.seqlen, c.seed) for c in self.configs(groups)} if groups else set()
        mine = [k in keys for k in zip(df["calibration"], df["n"], df["seqlen"], df["seed"])]
        return df[mine].reset_index(drop=True)

    def _table(self, groups: list[str]):
        """The store's finished runs whose keys belong to ``groups`` (a record no group of the profile names, e.g.
        one left by an edited profile, is in no table)."""
        df = sweep.results_table(self.store)
        if not len(df) or not groups:
            return df.iloc[:0]
        return df[df["key"].isin(self.keys(groups))].reset_index(drop=True)

    def _oasis(self, prefix: str):
        return self._table([g for g in self.profile["experiments"] if g.startswith(prefix)])

    def results(self):
        """One row per finished run of the capability study's groups (notebooks 01-05)."""
        return self._table(self.capability_groups())

    def sample_results(self, metric: str = "score_ck_ptb_ppl"):
        """The per-sample prunes (calibration sets of chosen samples), as ``calibkit.samples`` reads them: one row
        per prune with ``samples`` (the tuple of sequence ids), ``of`` (the set they come from), ``method``, ``seed``,
        ``sparsity`` and ``ppl`` (the post-pruning perplexity ``metric`` of its record)."""
        from .spec import parse

        d = self._oasis("samples")
        d = d[d["kind"] == "samples"].copy() if len(d) else d
        if not len(d):
            import pandas as pd

            return pd.DataFrame(columns=["samples", "of", "method", "seed", "sparsity", "ppl", "label", "key"])
        if metric not in d:
            raise KeyError(f"the per-sample records have no {metric!r}; columns: {', '.join(d.columns)}")
        d["samples"] = d["calibration"].map(lambda c: parse(c).ids)
        d["of"] = d["calibration"].map(lambda c: getattr(parse(c).base, "text", parse(c).base))
        return d.rename(columns={metric: "ppl"}).reset_index(drop=True)

    def macro_results(self, metric: str = "score_ck_ptb_ppl"):
        """OASIS's macro view (Figure 2 form): the whole-set prunes of the ``macro*`` groups, one row per run with
        ``ppl`` = the post-pruning perplexity ``metric`` (set size ``n``, ``seqlen``, ``label``, ``seed``)."""
        d = self._oasis("macro")
        return d.rename(columns={metric: "ppl"}).reset_index(drop=True) if metric in d else d

    def selection_results(self):
        """OASIS's selection experiments (Tables 1, 2 and 4 form): the runs of the ``selection*`` groups, one row per
        run with ``selector`` (random, entropy, synthetic, oasis) next to the method, seed and scores."""
        d = self._oasis("selection")
        if len(d):
            d = d.copy()
            d["selector"] = d["calibration"].map(lambda c: c.split(":")[1] if c.startswith("select:") else c)
        return d

    def coverage(self, groups: list[str] | None = None) -> dict:
        """How many of the (chosen groups') runs the store holds, without computing any: ``done`` (current),
        ``stale`` (held, but evaluated on other items than the suite now asks: read as they are, recomputed by
        the next sweep) and ``missing``."""
        configs = self.configs(groups)
        store = sweep.Store(self.store)
        done = sum(store.done(c) for c in configs)
        stale = len(store.stale(configs))
        return {"total": len(configs), "done": done, "stale": stale, "missing": len(configs) - done - stale,
                "store": str(self.store)}

    def __str__(self) -> str:
        p = self.profile
        return (f"profile {self.name}: model {p['model']}, suite {p.get('suite', 'embedded')}, "
                f"groups {', '.join(p['experiments'])}, store {self.store}, reports {self.reports.dir}")


def open_study(profile: str, groups: list[str] | None = None, verbose: bool = True) -> Study:
    """The study of a sweep profile (name or YAML path), optionally restricted to some experiment groups."""
    import pandas as pd

    prof = sweep.load_profile(profile)
    if groups:
        prof = sweep.restrict_groups(prof, list(groups))
    typed = sweep.Profile.from_dict(prof, prof.get("path"))
    study = Study(prof, typed.name, results_dir(typed.name), Reports(typed.name), typed.highest_sparsity or "",
                  typed.reference)
    pd.set_option("display.precision", 2)
    if verbose:
        print(study)
    return study
