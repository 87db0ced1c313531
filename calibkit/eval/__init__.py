"""Evaluation: per-capability retention (``retention``); lm-evaluation-harness suites come with issue 4's rest."""
