"""The one Penn Treebank reader (``data.readers.ptb_lines``) and the three places that read PTB through it."""
import pytest
from calibkit import perplexity
from calibkit.data import readers


def test_ptb_lines_are_the_stripped_non_empty_lines_of_a_split():
    from calibkit import assets

    test = readers.ptb_lines("test")
    raw = readers.read_treebank_module(assets.require("ptb"), "test")
    assert test == [ln.strip() for ln in raw.split("\n") if ln.strip()]
    assert len(test) == 3761 and all(ln and ln == ln.strip() for ln in test)
    assert readers.ptb_lines("validation") == readers.ptb_lines("valid", assets.require("ptb"))
    with pytest.raises(readers.DataError, match="no split 'dev'"):
        readers.ptb_lines("dev")


def test_every_ptb_user_reads_through_ptb_lines(monkeypatch):
    from calibkit import assets
    from calibkit.data import parsers
    from calibkit.eval.tasks.embedded import utils

    asked = []

    def fake(split="train", path=None):
        asked.append(split)
        return [f"{split} {i}" for i in range(3)]

    monkeypatch.setattr(readers, "ptb_lines", fake)
    assert perplexity.ptb_text("test") == "test 0 test 1 test 2"
    assert parsers.ptb([assets.require("ptb")], lines_per_doc=2) == [{"text": "train 0\ntrain 1"},
                                                                       {"text": "train 2"}]
    assert utils.ptb_test(lines_per_doc=2)["test"]["text"] == ["test 0\ntest 1", "test 2"]
    assert asked == ["test", "train", "test"]
