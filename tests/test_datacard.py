"""The data card `calibkit prune` writes into every checkpoint folder: prune_report.json["data_card"] and README.md."""
import json

import yaml

from calibkit.cli import main
from calibkit.profile import METRICS


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_prune_writes_the_data_card(tmp_path):
    calib = tmp_path / "c.jsonl"
    assert main(["build", "--mix", "balanced", "--n", "8", "--seqlen", "32", "--seed", "3", "--out", str(calib)]) == 0
    out = tmp_path / "pruned"
    assert main(["prune", "--model", "tiny-llama", "--method", "wanda", "--sparsity", "0.5", "--calib", str(calib),
                 "--out", str(out)]) == 0
    card = json.loads((out / "prune_report.json").read_text())["data_card"]
    cal = card["calibration"]
    assert card["base_model"] == "tiny-llama" and card["pruning"]["method"] == "wanda"
    assert card["pruning"]["sparsity"] == "0.5" and 0.49 < card["pruning"]["totals"]["sparsity"] < 0.51
    assert (cal["spec"], cal["seed"], cal["n"], cal["seqlen"], cal["tokenizer"]) == ("mix_balanced", 3, 8, 32,
                                                                                      "smollm2-135m")
    assert sum(cal["sources"].values()) == 8 and set(cal["dimensions"]) == {"General", "Commonsense", "Code", "Math"}
    assert len(cal["records_sha256"]) == 64 and len(cal["tokens_sha256"]) == 64
    assert set(card["profile"]) == set(METRICS) and card["profile"]["volume"] == 8 * 32
    meta = _front_matter((out / "README.md").read_text())
    assert meta["library_name"] == "transformers" and "calibkit" in meta["tags"] and "wanda" in meta["tags"]
    assert "base_model" not in meta  # a tiny test model has no hub id
    assert all(line.count("|") - line.count("\\|") == 3 for line in (out / "README.md").read_text().splitlines()
               if line.startswith("| "))  # two columns, whatever the values hold
    text = (out / "README.md").read_text()
    assert "| distortion |" in text and cal["tokens_sha256"] in text

    # the same data pruned again: the same digests; another seed: other records and tokens
    again, other = tmp_path / "again", tmp_path / "other.jsonl"
    assert main(["build", "--mix", "balanced", "--n", "8", "--seqlen", "32", "--seed", "4", "--out", str(other)]) == 0
    assert main(["prune", "--model", "tiny-llama", "--method", "sparsegpt", "--sparsity", "0.5", "--calib",
                 str(other), "--out", str(again), "--no-profile"]) == 0
    card2 = json.loads((again / "prune_report.json").read_text())["data_card"]
    assert card2["calibration"]["tokens_sha256"] != cal["tokens_sha256"]
    assert card2["calibration"]["records_sha256"] != cal["records_sha256"]
    assert card2["profile"] is None and card2["profile_skipped"] == "--no-profile"
    assert "Not computed: --no-profile" in (again / "README.md").read_text()


def test_card_without_calibration_and_hub_base(tmp_path):
    from calibkit.datacard import data_card, model_card

    card = data_card("smollm2-135m", {"method": "magnitude", "sparsity": "0.5"})
    assert card["calibration"] is None and "no calibration" in card["profile_skipped"]
    meta = _front_matter(model_card(card))
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert _front_matter(model_card(data_card("org/model", {"method": "wanda", "sparsity": "2:4"})))[
        "base_model"] == "org/model"
    assert "base_model" not in _front_matter(model_card(data_card("./local/model", {"method": "wanda"})))
    text = model_card(data_card("tiny-llama", {"method": "nirvana", "options": {"importance": "sum |w * g|"}}))
    row = next(line for line in text.splitlines() if line.startswith("| options |"))
    assert row.count("|") - row.count("\\|") == 3 and "sum \\|w * g\\|" in row
