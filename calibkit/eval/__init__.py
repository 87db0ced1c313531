"""Evaluation: lm-evaluation-harness suites (``harness``: the task YAMLs under ``tasks/<suite>/`` and what calibkit
reads from them) and per-capability retention against the dense model (``retention``)."""
