"""Observation-space helpers.

Gymnasium's ``spaces.Text`` defaults to alphanumeric characters and ``min_length=1``,
so ordinary text (spaces, punctuation, tags, newlines, non-ASCII) fails
``observation_space.contains`` and ``check_env``. :func:`text_space` builds a Text
space over every printable character of the Basic Multilingual Plane plus the
usual whitespace, with ``min_length=0``.

Vector envs: Gymnasium's async vector env with ``shared_memory=True`` stores text
as indices into the charset and, for Text spaces, can hand back stale strings.
Use ``shared_memory=False`` — :func:`thinkgym.make_vec` does this for you.
"""

from __future__ import annotations

import copy
import functools

from gymnasium import spaces

__all__ = ["text_charset", "text_space"]


@functools.cache
def text_charset() -> frozenset[str]:
    """Every printable character of the Basic Multilingual Plane plus ``\\n``, ``\\t``, ``\\r``."""
    chars = {chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF and chr(c).isprintable()}
    chars.update("\n\t\r")
    return frozenset(chars)


def text_space(max_length: int = 32_768, *, min_length: int = 0) -> spaces.Text:
    """A Text space that accepts ordinary text of up to ``max_length`` characters.

    >>> space = text_space(64)
    >>> space.contains("<search>Who founded Veltra?</search>\\n")
    True
    >>> space.contains("")
    True
    """
    space = copy.copy(_text_prototype(max_length, min_length))
    # Each space seeds its own generator (a shared RNG would couple envs). gymnasium annotates
    # ``_np_random`` as a Generator but itself uses None for "not seeded yet".
    space._np_random = None  # type: ignore[assignment]
    return space


@functools.lru_cache(maxsize=32)
def _text_prototype(max_length: int, min_length: int) -> spaces.Text:
    # Building the charset tables of a ~60k-character Text space takes ~0.2-0.4 s; they are
    # immutable, so spaces of the same lengths share them through a shallow copy.
    return spaces.Text(max_length=max_length, min_length=min_length, charset=text_charset())
