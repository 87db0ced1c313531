"""One call that opens a study for a notebook: the validated sweep profile, its result store and its reports folder.

    study = open_study("embedded", groups=["main"])
    study.configs()       # the run configs of the chosen groups
    study.results()       # one row per finished run (``sweep.results_table``), per-sample prunes apart
    study.sample_results()  # the per-sample prunes (single samples and pairs: ``calibkit.samples``)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import sweep
from .reports import Reports, results_dir


@dataclass
class Study:
    profile: dict  # the profile as loaded (validated), restricted to the chosen groups
    name: str
    store: Path
    reports: Reports
    highest: str  # the sparsity at which the main grid's findings are read
    reference: str | None  # the single source standing in for the study's C4

    def configs(self, groups: list[str] | None = None) -> list[sweep.RunConfig]:
        prof = self.profile if not groups else sweep.restrict_groups(self.profile, groups)
        return sweep.expand(prof)

    def results(self):
        """One row per finished run of the capability study (the per-sample prunes are ``sample_results``)."""
        df = sweep.results_table(self.store)
        return df[df["kind"] != "samples"].reset_index(drop=True) if len(df) else df

    def sample_results(self, metric: str = "score_ck_ptb_ppl"):
        """The per-sample prunes (calibration sets of chosen samples), as ``calibkit.samples`` reads them: one row
        per prune with ``samples`` (the tuple of sequence ids), ``method``, ``seed``, ``sparsity`` and ``ppl`` (the
        post-pruning perplexity ``metric`` of its record)."""
        from .spec import parse

        df = sweep.results_table(self.store)
        if not len(df) or not (df["kind"] == "samples").any():
            import pandas as pd

            return pd.DataFrame(columns=["samples", "method", "seed", "sparsity", "ppl", "label", "key"])
        d = df[df["kind"] == "samples"].copy()
        if metric not in d:
            raise KeyError(f"the per-sample records have no {metric!r}; columns: {', '.join(d.columns)}")
        d["samples"] = d["calibration"].map(lambda c: parse(c).ids)
        d["of"] = d["calibration"].map(lambda c: getattr(parse(c).base, "text", parse(c).base))
        return d.rename(columns={metric: "ppl"}).reset_index(drop=True)

    def coverage(self, groups: list[str] | None = None) -> dict:
        """How many of the (chosen groups') runs the store holds, without computing any."""
        configs = self.configs(groups)
        store = sweep.Store(self.store)
        done = sum(store.done(c) for c in configs)
        return {"total": len(configs), "done": done, "missing": len(configs) - done, "store": str(self.store)}

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
