"""calibkit: calibration data for post-training LLM pruning (build, profile, prune, evaluate)."""
__version__ = "0.1.0"

from .data.calibration import CalibrationSet  # noqa: F401
from .spec import build, parse  # noqa: F401
from .models import load_model, load_tokenizer  # noqa: F401
