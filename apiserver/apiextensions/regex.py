"""Go (RE2) regular expressions, as schema ``pattern`` uses them, run on Python's ``re``.

kube-openapi compiles ``pattern`` with Go's ``regexp`` (RE2 syntax, unanchored search). Python's
``re`` accepts nearly the same syntax for the patterns CRDs use; the differences handled here:

- RE2 has no backreferences, lookahead or lookbehind: a pattern using them is refused, as Go
  refuses it (``must be a valid regular expression``), instead of silently working.
- ``\\z`` (end of text) is ``\\Z`` in Python; ``(?P<name>...)`` and ``(?i)`` are the same.
- ``\\pL``/``\\p{Greek}`` Unicode classes are not available in ``re``: such a pattern is refused
  with a message naming the limitation (Go would accept it).
- RE2 matches in linear time; ``re`` backtracks, so a pathological pattern can be slow. Patterns
  are cached after their first compilation.
"""

from __future__ import annotations

import re
from functools import lru_cache

_UNSUPPORTED = (
    (re.compile(r"\(\?[=!]"), "invalid or unsupported Perl syntax: `(?=`"),
    (re.compile(r"\(\?<[=!]"), "invalid or unsupported Perl syntax: `(?<`"),
    (re.compile(r"(?<!\\)\\[1-9]"), "invalid escape sequence: backreferences are not supported"),
    (re.compile(r"(?<!\\)\\[pP]"), "Unicode character classes (\\p) are not supported by this server"),
)


class PatternError(ValueError):
    """The pattern is not a valid Go regular expression."""


def _translate(pattern: str) -> str:
    for probe, message in _UNSUPPORTED:
        if probe.search(pattern):
            raise PatternError(f"error parsing regexp: {message}")
    return re.sub(r"(?<!\\)\\z", r"\\Z", pattern)


@lru_cache(maxsize=4096)
def compile_go(pattern: str) -> re.Pattern[str]:
    """Compile a Go regular expression; :class:`PatternError` with Go-like wording if invalid."""
    translated = _translate(pattern)
    try:
        return re.compile(translated)
    except re.error as exc:
        raise PatternError(f"error parsing regexp: {exc}") from exc


def go_search(pattern: str, text: str) -> bool:
    """Whether ``text`` contains a match (Go's ``MatchString`` semantics)."""
    return compile_go(pattern).search(text) is not None
