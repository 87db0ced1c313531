"""Record -> calibration text, one function per source family.

The formats follow the calibration-data literature: plain text for corpora, ``Question: ...\\nAnswer: ...``
for math QA, problem + solution code for code sets, context + gold ending for commonsense benchmarks, and
the Alpaca instruction/input/response layout for instruction data.
"""
from __future__ import annotations

import re


def plain(rec: dict, field: str = "text") -> str:
    return str(rec[field]).strip()


def question_answer(rec: dict, q: str = "question", a: str = "answer") -> str:
    return f"Question: {str(rec[q]).strip()}\nAnswer: {str(rec[a]).strip()}"


def instruction(rec: dict, instr: str = "instruction", inp: str = "input", out: str = "output") -> str:
    parts = [f"### Instruction:\n{str(rec[instr]).strip()}"]
    if str(rec.get(inp) or "").strip():
        parts.append(f"### Input:\n{str(rec[inp]).strip()}")
    parts.append(f"### Response:\n{str(rec[out]).strip()}")
    return "\n\n".join(parts)


def problem_code(rec: dict, problem: str = "text", code: str = "code") -> str:
    return f"{str(rec[problem]).strip()}\n\n{str(rec[code]).rstrip()}"


def humaneval(rec: dict) -> str:
    return rec["prompt"] + rec["canonical_solution"].rstrip()


def codeio(rec: dict) -> str:
    return f'"""{rec["task_description"].strip()}"""\n\n{rec["code_sample"].rstrip()}'


def arxiv_abstract(rec: dict) -> str:
    title = " ".join(str(rec["title"]).split())
    return f"{title}\n\n{' '.join(str(rec['abstract']).split())}"


# --- commonsense: context + gold ending -----------------------------------------------------------

def _hellaswag_preprocess(text: str) -> str:
    # the same light clean-up lm-eval applies to HellaSwag text
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(rec: dict) -> str:
    """Hub format: activity_label, ctx, endings, label (str or int)."""
    ctx = f"{rec['activity_label']}: {rec['ctx']}"
    return _hellaswag_preprocess(f"{ctx} {rec['endings'][int(rec['label'])]}")


def hellaswag_derived(rec: dict) -> str:
    """llama.cpp's derived format (see data MANIFEST): context line already includes the activity label."""
    return f"{rec['context'].strip()} {rec['endings'][rec['label']].strip()}"


def winogrande(rec: dict) -> str:
    """Hub format: sentence with '_' and option1/option2, answer '1' or '2'."""
    option = rec["option1"] if str(rec["answer"]) == "1" else rec["option2"]
    return rec["sentence"].replace("_", option, 1)


def winogrande_partial(rec: dict) -> str:
    """llm-foundry partial-scoring format: option-filled prefixes + shared continuation."""
    prefix = rec["context_options"][int(rec["gold"])]
    cont = rec["continuation"]
    return f"{prefix.rstrip()} {cont.lstrip()}".strip()


def openbookqa(rec: dict) -> str:
    """Hub format: question_stem, choices {text, label}, answerKey."""
    labels = list(rec["choices"]["label"])
    gold = rec["choices"]["text"][labels.index(rec["answerKey"])]
    return f"{rec['question_stem'].strip()} {gold.strip()}"


_OBQA_CHOICE = re.compile(r"\(([A-D])\)\s*(.*?)(?=\s*\([A-D]\)\s|$)", re.DOTALL)


def openbookqa_tsv(rec: dict) -> str:
    """AI2's original TSV: 'Question Stem', 'Choices' as '(A) ... (B) ...', 'Answer Key'."""
    choices = dict(_OBQA_CHOICE.findall(rec["Choices"]))
    if rec["Answer Key"] not in choices:
        raise ValueError(f"cannot find choice {rec['Answer Key']} in {rec['Choices']!r}")
    return f"{rec['Question Stem'].strip()} {choices[rec['Answer Key']].strip()}"


def multiple_choice_gold(rec: dict) -> str:
    """BIG-bench style {input, choices, gold}: the context followed by the correct answer."""
    context = rec["input"].strip()
    gold = rec["choices"][rec["gold"]].strip()
    if "<MASK>" in context:  # timedial: fill the masked span
        return context.replace("Which phrase best fits the <MASK> span? Context:", "").strip().replace(
            "<MASK>", gold)
    return f"{context} {gold}" if context else gold
