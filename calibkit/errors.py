"""The one error base class of calibkit.

Every error that calibkit raises *on purpose* (bad input, missing data, a refused operation) is a
``CalibkitError``; the command line prints it as one clear line and exits with status 2. Anything else is a bug
and surfaces as a traceback.

``ConfigError`` is for a bad option, value, key or spec given by the user. It is also a ``ValueError`` so that
callers that validate values the usual Python way keep working.
"""
from __future__ import annotations


class CalibkitError(Exception):
    """Base class of every error calibkit raises on purpose."""


class ConfigError(CalibkitError, ValueError):
    """A bad option, value, key or specification given by the user."""


class OutputError(CalibkitError):
    """An output path that calibkit refuses to write (it would delete or overwrite something it did not create)."""
