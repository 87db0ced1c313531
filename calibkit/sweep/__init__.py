"""Sweeps: expand a named parameter set into run configs, run each once, keep one atomic record per config.

A *run* = calibration spec (source or mix, N, L, seed) x pruner x sparsity (or N:M) x model x eval suite. Its
identity is the hash of its full config (``run_key``); its record (profile of the calibration set, prune report
totals, per-task scores, retention against the cached dense scores) is written atomically to
``<store>/runs/<key>.json`` only when the run is complete. Re-running a sweep skips every key already there, so a
sweep killed at any moment resumes with nothing lost and nothing duplicated. Profiles of calibration sets are kept
under ``<store>/profiles/`` (shared by the runs that use the same set).

Executors: ``local`` (sequential, in this process) and ``ray`` (one Ray task per run, declaring its CPUs/GPU;
``ray_address`` for an existing cluster). Results load into one pandas table with ``results_table``.
"""
from .config import NO_CALIBRATION, PROFILE_DIR, Group, Profile, RunConfig, RunSettings, SweepError, expand, \
    load_profile, restrict_groups, run_key, sample_specs
from .executors import run_sweep
from .run import profile_sets, repair_profiles, run_one
from .store import Store, checksum
from .tables import PROFILE_METRICS, profiles_table, results_table

__all__ = ["NO_CALIBRATION", "PROFILE_DIR", "PROFILE_METRICS", "Group", "Profile", "RunConfig", "RunSettings",
           "Store", "SweepError", "checksum", "expand", "load_profile", "profile_sets", "profiles_table",
           "repair_profiles", "restrict_groups", "results_table", "run_key", "run_one", "run_sweep", "sample_specs"]
