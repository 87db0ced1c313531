"""lm-eval's own minerva_math prompt and scoring, re-exported so the `paper` suite's YAML can name them."""
from lm_eval.tasks.minerva_math.utils import doc_to_text, process_results  # noqa: F401
