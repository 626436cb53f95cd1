"""Fictional names built from syllables, unique across a whole world.

Every name *word* a world uses (a person's first or last name, a city, a
country, the distinctive word of an organisation or a work title) is drawn once
and never reused, so no name is a substring-word of another and a name carries
no hint about any fact (nothing is derived from anything else). With ~2,500
syllables and two or three syllables per word there are millions of words, so a
100k-passage world draws its ~140k words with few collisions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NameGenerator"]

_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n",
           "p", "pr", "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z", "j")
_NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ae", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "nd", "rk", "m", "x", "v", "sk")

# Words that templates or normalisation give a meaning to; a name must not be one.
_RESERVED = frozenset({
    "a", "an", "the", "of", "in", "by", "and", "or", "who", "which", "what", "year",
    "city", "born", "from", "founded", "guild", "society", "institute", "company",
    "league", "academy", "bank", "collective", "foundation", "orchestra", "order",
})


class NameGenerator:
    """Draws capitalised fictional words, never the same word twice.

    >>> gen = NameGenerator(np.random.default_rng(0))
    >>> words = gen.words(5)
    >>> len(set(words)) == 5 and all(w[0].isupper() and w.isalpha() for w in words)
    True
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def _draw(self, n: int) -> list[str]:
        rng = self._rng
        n_syl = np.where(rng.random(n) < 0.3, 3, 2)  # mostly two syllables
        onsets = rng.integers(0, len(_ONSETS), size=(n, 3))
        nuclei = rng.integers(0, len(_NUCLEI), size=(n, 3))
        codas = rng.integers(0, len(_CODAS), size=(n, 3))
        words = []
        for i in range(n):
            parts = []
            for s in range(n_syl[i]):
                # A coda only on the last syllable keeps words pronounceable.
                coda = _CODAS[codas[i, s]] if s == n_syl[i] - 1 else ""
                parts.append(_ONSETS[onsets[i, s]] + _NUCLEI[nuclei[i, s]] + coda)
            words.append("".join(parts).capitalize())
        return words

    def words(self, n: int) -> list[str]:
        """``n`` new words, distinct from each other and from every earlier draw."""
        out: list[str] = []
        while len(out) < n:
            for word in self._draw(int((n - len(out)) * 1.1) + 8):
                key = word.lower()
                if key in self._used or key in _RESERVED:
                    continue
                self._used.add(key)
                out.append(word)
                if len(out) == n:
                    break
        return out
