"""A battery of bad inputs through the command line, as a hostile new user would try them.

Every case must: exit with status 2, print a message naming the offending file, option or value, print no
traceback, and create or change no file (the whole working folder is fingerprinted before and after).
"""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from calibkit.cli import main

GOOD = "good.jsonl"


def _lines(path: Path, records) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def _sweep(path: Path, **changes) -> None:
    group = {"calibration": ["ptb"], "methods": ["wanda"], "sparsities": ["0.5"]}
    prof = {"name": "bad", "model": "tiny-llama", "suite": "embedded", "limit": 1, "n": 2, "seqlen": 16,
            "seeds": [0], "experiments": {"main": group}}
    for key, value in changes.items():
        if key.startswith("group_"):
            group[key[6:]] = value
        else:
            prof[key] = value
    path.write_text(yaml.safe_dump(prof))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A working folder with one good calibration set, bad ones, model folders and a user's own folder."""
    from calibkit.models import tiny_model, load_tokenizer

    w = tmp_path_factory.mktemp("world")
    here = os.getcwd()
    os.chdir(w)
    try:
        assert main(["build", "--source", "ptb", "--n", "2", "--seqlen", "16", "--out", GOOD]) == 0
    finally:
        os.chdir(here)
    ok = json.loads((w / GOOD).read_text().splitlines()[0])
    ids = ok["input_ids"]
    bad = {
        "negative.jsonl": [{"input_ids": ids[:-1] + [-3]}],
        "float.jsonl": [{"input_ids": ids[:-1] + [253.5]}],
        "string.jsonl": [{"input_ids": ids[:-1] + ["253"]}],
        "nested.jsonl": [{"input_ids": [ids]}],
        "bools.jsonl": [{"input_ids": [True] * 16}],
        "emptyids.jsonl": [{"input_ids": []}],
        "noids.jsonl": [{"text": "hello"}],
        "idsstring.jsonl": [{"input_ids": "1 2 3"}],
        "ragged.jsonl": [{"input_ids": ids}, {"input_ids": ids[:8]}],
        "notjson.jsonl": [{"input_ids": ids}, "{not json"],
        "array.jsonl": ["[1, 2, 3]"],
        "vocab.jsonl": [{"input_ids": ids[:-1] + [10 ** 6]}],
        "nodim.jsonl": [{"input_ids": ids, "dimension": "General"}, {"input_ids": ids}],
    }
    for name, recs in bad.items():
        _lines(w / name, recs)
    (w / "empty.jsonl").write_text("")
    (w / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage\x80")
    (w / "badmeta.jsonl").write_text((w / GOOD).read_text())
    (w / "badmeta.meta.json").write_text("{oops")
    (w / "adir.jsonl").mkdir()
    foreign = w / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("the user's notes\n")
    model, tok = tiny_model("tiny-llama"), load_tokenizer()
    model.save_pretrained(w / "tiny")
    tok.save_pretrained(w / "tiny")
    broken = tiny_model("tiny-llama")
    with torch.no_grad():
        broken.model.layers[1].mlp.down_proj.weight[3, 5] = float("inf")
    broken.save_pretrained(w / "infmodel")
    tok.save_pretrained(w / "infmodel")
    for name, changes in {
        "typo_seqlen.yaml": {"seqeln": 16}, "typo_limit.yaml": {"limt": 1}, "seed_half.yaml": {"seeds": [0.5]},
        "n_negative.yaml": {"n": -4}, "suite.yaml": {"suite": "nosuch"}, "limit.yaml": {"limit": -1},
        "method.yaml": {"group_methods": ["obs"]}, "calib.yaml": {"group_calibration": ["nope"]},
        "sparsity.yaml": {"group_sparsities": ["1.5"]}, "none.yaml": {"group_calibration": ["none"]},
        "grouptypo.yaml": {"group_sparsity": ["0.5"]}, "name.yaml": {"name": "../escape"},
        "tasks.yaml": {"tasks": ["ck_nope"]}, "seqlen_str.yaml": {"seqlen": "256"},
        "good_sweep.yaml": {},
    }.items():
        _sweep(w / name, **changes)
    (w / "notyaml.yaml").write_text("experiments: [unclosed\n")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "noexp.yaml").write_text("name: x\nmodel: tiny-llama\n")
    return w


# (argv, text the error must contain). Paths are relative to the world folder.
CASES = [
    # build
    (["build", "--source", "c5", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "'c5'"),
    (["build", "--mix", "nosuch", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "unknown mix 'nosuch'"),
    (["build", "--mix", "-1:1:1:1", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "non-negative"),
    (["build", "--mix", "1e308:1e308:1:1", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "too large"),
    (["build", "--mix", "0:0:0:0", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "sum to zero"),
    (["build", "--mix", "1:1:1", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "'1:1:1'"),
    (["build", "--mix", "1:a:1:1", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "four numbers"),
    (["build", "--mix", "nan:1:1:1", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "finite"),
    (["build", "--mix", "balanced@nowhere", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "'nowhere'"),
    (["build", "--mix", "loo_xyz", "--n", "2", "--seqlen", "8", "--out", "x.jsonl"], "unknown dimension"),
    (["build", "--samples", "ptb#1,1", "--seqlen", "8", "--out", "x.jsonl"], "distinct sequence numbers"),
    (["build", "--samples", "ptb#-2", "--seqlen", "8", "--out", "x.jsonl"], "distinct sequence numbers"),
    (["build", "--samples", "none#0", "--seqlen", "8", "--out", "x.jsonl"], "not from 'none'"),
    (["build", "--samples", "ptb", "--seqlen", "8", "--out", "x.jsonl"], "is a source spec, not a samples"),
    (["build", "--samples", GOOD + "#5", "--seqlen", "16", "--out", "x.jsonl"], "out of range: the set has 2"),
    (["build", "--samples", GOOD + "#0", "--seqlen", "8", "--out", "x.jsonl"], "not --seqlen 8"),
    (["build", "--source", "ptb", "--seed", "-1", "--out", "x.jsonl"], "--seed"),
    (["build", "--source", "ptb", "--seed", "1.5", "--out", "x.jsonl"], "--seed"),
    (["build", "--source", "ptb", "--n", "0", "--out", "x.jsonl"], "--n"),
    (["build", "--source", "ptb", "--n", "abc", "--out", "x.jsonl"], "--n"),
    (["build", "--source", "ptb", "--seqlen", "-5", "--out", "x.jsonl"], "--seqlen"),
    (["build", "--selfgen", "nosuch", "--out", "x.jsonl"], "selfgen:nosuch"),
    (["build", "--selfgen", "selfcal", "--selfgen-param", "t_init", "--out", "x.jsonl"], "key=value"),
    (["build", "--selfgen", "igsp", "--selfgen-param", "t_inti=0.7", "--out", "x.jsonl"], "t_inti"),
    (["build", "--source", "ptb", "--selfgen-param", "t_init=0.7", "--out", "x.jsonl"], "--selfgen"),
    (["build", "--source", "ptb", "--n", "2", "--seqlen", "8", "--out", GOOD], GOOD),
    (["build", "--source", "ptb", "--n", "2", "--seqlen", "8", "--out", "adir.jsonl"], "adir.jsonl"),
    (["build", "--source", "ptb", "--n", "2", "--seqlen", "8", "--out", f"{GOOD}/x.jsonl"], "not a directory"),
    (["build", "--source", "ptb", "--n", "2", "--seqlen", "8", "--out", "x.jsonl", "--hf-dataset", "foreign"],
     "foreign"),
    (["build", "--source", "ptb", "--n", "2", "--seqlen", "8", "--out", "x.jsonl", "--hf-dataset", "foreign",
      "--overwrite"], "not written by calibkit"),
    (["build", "--source", "ptb", "--n", "2", "--seqlen", "8", "--out", "x.jsonl", "--hf-dataset", "x.jsonl"],
     "same path"),
    (["build", "--source", "humaneval", "--n", "1000", "--seqlen", "2048", "--out", "x.jsonl"], "humaneval"),
    (["build", "--source", "ptb", "--mix", "balanced", "--out", "x.jsonl"], "not allowed with"),
    (["build", "--source", "ptb"], "--out"),
    # inspect: one validation of calibration files, naming file, line and field
    (["inspect", "missing.jsonl"], "missing.jsonl"),
    (["inspect", "adir.jsonl"], "adir.jsonl is a folder"),
    (["inspect", "notjson.jsonl"], "notjson.jsonl:2"),
    (["inspect", "empty.jsonl"], "empty calibration set"),
    (["inspect", "negative.jsonl"], "negative.jsonl:1: field 'input_ids', position 15"),
    (["inspect", "float.jsonl"], "253.5"),
    (["inspect", "string.jsonl"], "'253'"),
    (["inspect", "nested.jsonl"], "nested.jsonl:1: field 'input_ids', position 0"),
    (["inspect", "bools.jsonl"], "True"),
    (["inspect", "emptyids.jsonl"], "'input_ids' is empty"),
    (["inspect", "noids.jsonl"], "noids.jsonl:1: field 'input_ids'"),
    (["inspect", "idsstring.jsonl"], "must be a list"),
    (["inspect", "ragged.jsonl"], "ragged.jsonl:2"),
    (["inspect", "array.jsonl"], "expected a JSON object"),
    (["inspect", "binary.jsonl"], "binary.jsonl"),
    (["inspect", "badmeta.jsonl"], "badmeta.meta.json"),
    (["inspect", GOOD, "--show", "-1"], "--show"),
    # export: never into a folder calibkit did not write, never over its input
    (["export", GOOD, "--out", "foreign"], "foreign exists and is not empty"),
    (["export", GOOD, "--out", "foreign", "--overwrite"], "not written by calibkit"),
    (["export", GOOD, "--out", GOOD], "same path"),
    (["export", GOOD, "--out", "~"], "~"),
    (["export", GOOD, "--out", "."], "contains the input"),
    (["export", "float.jsonl", "--out", "ds_new"], "253.5"),
    (["export", GOOD, "--out", f"{GOOD}/ds"], "not a directory"),
    (["export", "missing.jsonl", "--out", "ds_new"], "missing.jsonl"),
    # prune
    (["prune", "--model", "tiny", "--method", "magnitude", "--sparsity", "0.5", "--out", "tiny"], "same path"),
    (["prune", "--model", "tiny", "--method", "magnitude", "--sparsity", "0.5", "--out", "tiny", "--overwrite"],
     "same path"),
    (["prune", "--model", "tiny", "--method", "magnitude", "--sparsity", "0.5", "--out", "tiny/pruned"], "inside"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "0.5", "--calib", GOOD, "--out",
      "foreign"], "foreign exists and is not empty"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "0.5", "--calib", GOOD, "--out",
      "foreign", "--overwrite"], "not written by calibkit"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "0.5", "--out", "p"], "--calib"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "1.5", "--calib", GOOD, "--out", "p"],
     "--sparsity"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "2:4", "--calib", GOOD, "--out", "p"],
     "--nm"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--nm", "2-4", "--calib", GOOD, "--out", "p"],
     "--nm"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--nm", "4:2", "--calib", GOOD, "--out", "p"],
     "0 < N < M"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "abc", "--calib", GOOD, "--out", "p"],
     "'abc'"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "0.5", "--calib", "vocab.jsonl",
      "--out", "p"], "vocab.jsonl:1"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "0.5", "--calib", "adir.jsonl",
      "--out", "p"], "adir.jsonl"),
    (["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "0.5", "--calib", GOOD, "--out", "p",
      "--dtype", "int8"], "--dtype"),
    (["prune", "--model", "tiny-llama", "--method", "sparsegpt", "--sparsity", "0.5", "--calib", GOOD, "--out",
      "p", "--percdamp", "-1"], "--percdamp"),
    (["prune", "--model", "tiny-llama", "--method", "sparsegpt", "--sparsity", "0.5", "--calib", GOOD, "--out",
      "p", "--blocksize", "0"], "--blocksize"),
    (["prune", "--model", "tiny-llama", "--method", "obs", "--sparsity", "0.5", "--out", "p"], "--method"),
    (["prune", "--model", "infmodel", "--method", "magnitude", "--sparsity", "0.5", "--out", "p"],
     "layers.1.mlp.down_proj: 1 non-finite"),
    (["prune", "--model", "infmodel", "--method", "sparsegpt", "--sparsity", "0.5", "--calib", GOOD, "--out", "p"],
     "layers.1.mlp.down_proj: 1 non-finite"),
    (["prune", "--model", "./no/such/model", "--method", "magnitude", "--sparsity", "0.5", "--out", "p"],
     "./no/such/model"),
    # profile
    (["profile", GOOD, "--k", "0"], "--k"),
    (["profile", GOOD, "--k", "1.5"], "--k"),
    (["profile", "vocab.jsonl", "--model", "tiny-llama"], "vocab.jsonl:1"),
    (["profile", "ragged.jsonl", "--no-model"], "ragged.jsonl:2"),
    # eval / retention
    (["eval", "--model", "tiny-llama", "--suite", "nosuch"], "'nosuch'"),
    (["eval", "--model", "tiny-llama", "--limit", "0"], "--limit"),
    (["eval", "--model", "tiny-llama", "--tasks", "ck_nope"], "ck_nope"),
    (["retention", "--base", "tiny-llama", "--pruned", "nowhere"], "nowhere"),
    (["retention", "--base", "tiny-llama", "--pruned", "foreign"], "foreign"),
    # sweep: the whole profile is validated up front
    (["sweep", "good_sweep.yaml", "--repair-profiles", "--dry-run"], "no --dry-run"),
    (["sweep", "typo_seqlen.yaml", "--dry-run"], "'seqeln' (did you mean 'seqlen'?)"),
    (["sweep", "typo_limit.yaml", "--dry-run"], "'limt'"),
    (["sweep", "seed_half.yaml", "--dry-run"], "seeds"),
    (["sweep", "n_negative.yaml", "--dry-run"], "experiments.main.n"),
    (["sweep", "suite.yaml", "--dry-run"], "'nosuch'"),
    (["sweep", "limit.yaml", "--dry-run"], "limit"),
    (["sweep", "method.yaml", "--dry-run"], "'obs'"),
    (["sweep", "calib.yaml", "--dry-run"], "'nope'"),
    (["sweep", "sparsity.yaml", "--dry-run"], "sparsities"),
    (["sweep", "none.yaml", "--dry-run"], "need(s) calibration"),
    (["sweep", "grouptypo.yaml", "--dry-run"], "'sparsity'"),
    (["sweep", "name.yaml", "--dry-run"], "../escape"),
    (["sweep", "tasks.yaml", "--dry-run"], "ck_nope"),
    (["sweep", "seqlen_str.yaml", "--dry-run"], "seqlen"),
    (["sweep", "notyaml.yaml", "--dry-run"], "notyaml.yaml"),
    (["sweep", "list.yaml", "--dry-run"], "list.yaml"),
    (["sweep", "noexp.yaml", "--dry-run"], "experiments"),
    (["sweep", "no-such-profile"], "no-such-profile"),
    (["sweep", "good_sweep.yaml", "--only", "nosuch", "--dry-run"], "nosuch"),
    (["sweep", "good_sweep.yaml", "--store", "foreign"], "not a calibkit store"),
    (["sweep", "good_sweep.yaml", "--store", GOOD], GOOD),
    (["sweep", "good_sweep.yaml", "--executor", "slurm"], "--executor"),
    # assets
    (["assets", "verify", "no-such-asset"], "no-such-asset"),
]


def _fingerprint(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.join(dirpath, d)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns, hashlib.sha256(Path(p).read_bytes()).hexdigest())
    return out


@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(c[0])[:70] for c in CASES])
def test_bad_input_is_refused_cleanly(world, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(world)
    before = _fingerprint(world)
    try:
        rc = main(argv)
    except SystemExit as e:  # (main returns argparse's status; kept so the battery also runs on older code)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, f"exit {rc}; stderr: {err[-500:]}"
    assert "Traceback" not in err
    assert needle in err, err[-800:]
    assert _fingerprint(world) == before, "a refused command created or changed a file"


def test_battery_size():
    assert len(CASES) >= 60


def test_records_without_optional_fields_are_counted_not_a_crash(world, monkeypatch, capsys):
    monkeypatch.chdir(world)
    assert main(["inspect", "nodim.jsonl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_dimension"] == {"General": 1, "(none)": 1}
