"""Error types shared by the library and the CLI.

A :class:`UserError` is bad input from the user. The CLI prints its message on one
line and exits with code 2, never with a traceback. Library code raises it instead of
using ``assert`` on anything a user controls.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: the message names the bad value and what is allowed."""


def nearest(word: str, candidates: Iterable[str]) -> str:
    """Return a ``" (did you mean 'x'?)"`` suffix for the closest candidate, or ``""``."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (at most 200 characters), or
    its type's name: how a third-party error is quoted in a one-line UserError."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


class VerificationFailed(Exception):
    """An artifact is below a verification threshold (exit code 1, not bad input)."""
