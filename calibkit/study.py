"""One call that opens a study for a notebook: the validated sweep profile, its result store and its reports folder.

    study = open_study("embedded", groups=["main"])
    study.configs()       # the run configs of the chosen groups
    study.results()       # one row per finished run (``sweep.results_table``)
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
        return sweep.results_table(self.store)

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
