import json
import subprocess
import sys

from calibkit.cli import main


def test_sources_json_lists_study_and_embedded(capsys):
    assert main(["sources", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    study = [r for r in rows if r["family"] == "study"]
    embedded = [r for r in rows if r["family"] == "embedded"]
    assert len(study) >= 15 and len(embedded) >= 6
    assert all(r["available"] for r in embedded)
    assert {"name", "dimension", "genre", "origin", "available", "why"} <= set(rows[0])
    assert all(r["origin"].startswith("asset:") for r in embedded)
    assert next(r for r in rows if r["name"] == "gsm8k")["origin"] == "hub:openai/gsm8k/main"


def test_build_twice_is_byte_identical_and_inspectable(tmp_path, capsys):
    args = ["build", "--mix", "balanced", "--n", "16", "--seqlen", "64", "--seed", "0"]
    assert main(args + ["--out", str(tmp_path / "a.jsonl")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.meta.json").is_file()
    assert main(["inspect", str(tmp_path / "a.jsonl"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sequences"] == 16 and info["seqlen"] == 64
    assert info["by_dimension"] == {"General": 4, "Commonsense": 4, "Code": 4, "Math": 4}


def test_export_hf_dataset(tmp_path):
    assert main(["build", "--source", "ptb", "--n", "4", "--seqlen", "32", "--out", str(tmp_path / "p.jsonl")]) == 0
    assert main(["export", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "ds")]) == 0
    import datasets

    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    assert ds.num_rows == 4 and len(ds[0]["input_ids"]) == 32


def test_errors_are_clear_and_nonzero(tmp_path, capsys):
    assert main(["build", "--source", "c5", "--n", "4", "--seqlen", "8", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "known sources" in capsys.readouterr().err
    assert main(["build", "--mix", "1:1:-1:1", "--n", "4", "--seqlen", "8", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "non-negative" in capsys.readouterr().err
    assert main(["build", "--source", "ptb", "--n", "4", "--seqlen", "0", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert not (tmp_path / "x.jsonl").exists()


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "calibkit", "assets", "list", "--json"], capture_output=True,
                         text=True, check=True)
    assert any(r["asset"] == "smollm2-135m-instruct.gguf" for r in json.loads(out.stdout))
