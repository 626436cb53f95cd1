r"""Correctness: answer normalisation, exact match, token F1, numeric equivalence, boxed answers.

Normalisation (SQuAD-style, Unicode-aware): NFKC, casefold, drop punctuation,
drop the articles *a, an, the*, collapse whitespace. Checks are strict where
strictness stops reward hacking:

* no credit for an empty answer, and none for a *hedged* one: explicit
  alternatives or doubt ("Paris or London", "either", "maybe", "/", ";", "?",
  several lines) that no reference contains, or a comma list one of whose items is
  a reference ("London, Paris") when the whole answer is not;
* never substring credit; F1 is token overlap only, and still lenient ("not
  Paris" scores 0.67 against "Paris"), so log it at weight 0 or gate it;
* several distinct ``\boxed{}`` answers score 0.

Components (registered): ``exact_match`` (1/0), ``f1`` (token F1 in [0, 1]),
``numeric_match`` (1/0; None when no reference is a number), ``answer_match``
(exact match or numeric equivalence, 1/0), ``boxed_match`` (the boxed answer in
the agent's text, by ``answer_match``) and ``lenient_match`` (see
:func:`lenient_match`: the last number the agent wrote, or the answer span
containing a reference; a diagnostic for telling a format gain from a task gain,
and an opt-in shaping reward). All return None without references.

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    >>> exact_match("the eiffel tower", ["Eiffel Tower"]), exact_match("Paris or Rome", ["Paris"])
    (1.0, 0.0)
    >>> parse_number(r"\$1,250.50"), parse_number(r"\frac{3}{4}"), parse_number("12 cm")
    (Fraction(2501, 2), Fraction(3, 4), Fraction(12, 1))
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from thinkgym.protocols import RewardInput
from thinkgym.rewards.base import REWARDS, FunctionComponent
from thinkgym.rewards.parsing import agent_text, extract_boxed

__all__ = [
    "answer_match",
    "boxed_answer",
    "exact_match",
    "is_hedged",
    "last_number",
    "lenient_match",
    "normalize_answer",
    "numbers_equal",
    "parse_number",
    "token_f1",
]

_ASCII_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """NFKC, casefold, remove punctuation and articles, collapse whitespace."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(ch for ch in text if not _is_punct(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


# -- hedging --------------------------------------------------------------------------
_HEDGE_WORDS = re.compile(r"\b(?:or|either|maybe|perhaps|possibly|probably|unsure|not sure)\b")
_HEDGE_CHARS = ("/", ";", "|", "?")


def _markers(text: str) -> set[str]:
    low = unicodedata.normalize("NFKC", text).casefold()
    found = {m.group(0) for m in _HEDGE_WORDS.finditer(low)}
    found.update(c for c in _HEDGE_CHARS if c in low)
    if len([ln for ln in low.splitlines() if ln.strip()]) > 1:
        found.add("\n")
    return found


def is_hedged(answer: str | None, references: Sequence[str] = ()) -> bool:
    """True for empty answers and answers offering several candidates (see module doc)."""
    if answer is None or not normalize_answer(answer):
        return True
    ref_markers = set().union(*(_markers(r) for r in references)) if references else set()
    if _markers(answer) - ref_markers:
        return True
    norm_refs = {normalize_answer(r) for r in references}
    if normalize_answer(answer) in norm_refs:
        return False
    parts = [normalize_answer(p) for p in answer.split(",")]
    return len(parts) > 1 and any(p and p in norm_refs for p in parts)


# -- string metrics ---------------------------------------------------------------------
def exact_match(answer: str | None, references: Sequence[str]) -> float:
    """1.0 if the normalised answer equals a normalised reference (hedges score 0)."""
    if is_hedged(answer, references):
        return 0.0
    norm = normalize_answer(answer or "")
    return 1.0 if any(norm == normalize_answer(r) for r in references) else 0.0


def token_f1(answer: str | None, references: Sequence[str]) -> float:
    """Best token-level F1 against the references (hedges and empty answers score 0)."""
    if is_hedged(answer, references):
        return 0.0
    pred = normalize_answer(answer or "").split()
    best = 0.0
    for ref in references:
        gold = normalize_answer(ref).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


# -- numbers ----------------------------------------------------------------------------
_LATEX_DROP = re.compile(r"\\[,;:! ]|\\left|\\right|\\displaystyle|\^\{?\\circ\}?|°|\\?%|\\?\$")
_TEXT_UNIT = re.compile(r"\\(?:text|mathrm|mbox|textbf)\{[^{}]*\}")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$")
_SCI = re.compile(r"^(.+?)\s*(?:\\times|\\cdot|×|\*)\s*10\^\{?(-?\d+)\}?$")
_PLAIN = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_UNIT = re.compile(r"^(.*?\d\.?)\s*[a-zA-Z][a-zA-Z/^\d]*(?:\s+[a-zA-Z]+)?$")
_CURRENCY = "€£¥₹"


def parse_number(text: str | None) -> Fraction | float | None:
    r"""The single number ``text`` denotes, or None.

    Accepts integers, decimals, ``1,000`` thousands separators, ``a/b`` and
    ``\frac{a}{b}``, scientific ``1e3`` / ``2\times10^{3}``, a leading currency sign, a
    trailing ``%`` (``50%`` is 50: the percent sign is a unit) and a trailing unit
    (``12 cm``, ``5\text{ m}``). Lists and alternatives ("3, 4", "3 or 4") are not a
    number. Exact forms return a Fraction, so 0.1 + 0.2 style rounding never matters.
    """
    if text is None:
        return None
    s = unicodedata.normalize("NFKC", text).replace("\u2212", "-").strip()
    s = _TEXT_UNIT.sub("", s)
    s = _LATEX_DROP.sub("", s).strip().lstrip(_CURRENCY).strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1].strip()
    if s.count("=") == 1 and re.match(r"^[a-zA-Z]\w*\s*=", s):  # "x = 5"
        s = s.split("=", 1)[1].strip()
    unit = _UNIT.match(s)
    if unit and not _PLAIN.match(s):
        s = unit.group(1).strip()
    return _parse_core(s)


def _parse_core(s: str) -> Fraction | float | None:
    sci = _SCI.match(s)
    if sci:
        base = _parse_core(sci.group(1).strip())
        return None if base is None else base * Fraction(10) ** int(sci.group(2))
    frac = _FRAC.match(s)
    if frac:
        num, den = _parse_core(frac.group(2).strip()), _parse_core(frac.group(3).strip())
        if num is None or den is None or den == 0:
            return None
        out = Fraction(num) / Fraction(den)
        return -out if frac.group(1) else out
    if "/" in s:
        num_s, _, den_s = s.partition("/")
        num, den = _parse_core(num_s.strip()), _parse_core(den_s.strip())
        if num is None or den is None or den == 0 or "/" in den_s:
            return None
        return Fraction(num) / Fraction(den)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if not _PLAIN.match(s.casefold()):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        value = float(s)
        return value if math.isfinite(value) else None


def numbers_equal(a: Fraction | float, b: Fraction | float, *, rel_tol: float = 1e-6,
                  abs_tol: float = 1e-9) -> bool:
    """Exact for two Fractions, else ``math.isclose`` with the given tolerances."""
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)


def _numeric_match(answer: str | None, references: Sequence[str]) -> float | None:
    refs = [n for n in (parse_number(r) for r in references) if n is not None]
    if not refs:
        return None
    if is_hedged(answer, references):
        return 0.0
    value = parse_number(answer)
    return 1.0 if value is not None and any(numbers_equal(value, r) for r in refs) else 0.0


def answer_match(answer: str | None, references: Sequence[str]) -> float:
    """1.0 on exact match or numeric equivalence with any reference, else 0.0."""
    if exact_match(answer, references) == 1.0:
        return 1.0
    return _numeric_match(answer, references) or 0.0


def boxed_answer(text: str) -> str | None:
    r"""The one ``\boxed{}`` answer in ``text``; None if there is none or several differ."""
    boxes = extract_boxed(text)
    if not boxes:
        return None
    keys = set()
    for b in boxes:
        num = parse_number(b)
        keys.add(("n", num) if num is not None else ("s", normalize_answer(b)))
    return boxes[-1] if len(keys) == 1 else None


_NUMBER = re.compile(r"(?<![\w.])[-\u2212]?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")


def last_number(text: str) -> str | None:
    r"""The last number written in ``text`` (``12``, ``-3.5``, ``1,250``, ``3/4``), or None.

    >>> last_number("2 pencils at $6 each, so 2 * 6 = 12 dollars."), last_number("none")
    ('12', None)
    """
    found = _NUMBER.findall(text)
    return found[-1].strip().rstrip(",") if found else None


def lenient_match(text: str, answer: str | None, references: Sequence[str]) -> float:
    """1.0 if the agent's result is right however it was written, else 0.0.

    Numeric references: the boxed answer, else the last number in ``text``, is
    numerically equal to one. Other references: the normalised ``answer`` (or the
    last line of ``text``) contains a normalised reference as whole words. This is
    substring credit, so it is a diagnostic (weight 0 by default): a hedged list of
    candidates would pass it.
    """
    if any(parse_number(r) is not None for r in references):
        candidate = boxed_answer(text) or last_number(text)
        return answer_match(candidate, references) if candidate is not None else 0.0
    span = answer if answer is not None else (text.strip().splitlines() or [""])[-1]
    words = f" {' '.join(normalize_answer(span).split())} "
    return float(any(f" {' '.join(normalize_answer(r).split())} " in words
                     for r in references if normalize_answer(r)))


# -- components -------------------------------------------------------------------------
def _needs_refs(inp: RewardInput) -> bool:
    return bool(inp.references)


def _exact_match(inp: RewardInput) -> float | None:
    """1.0 if ``inp.answer`` matches a reference after normalisation."""
    return exact_match(inp.answer, inp.references) if _needs_refs(inp) else None


def _f1(inp: RewardInput) -> float | None:
    """Token F1 of ``inp.answer`` against the best reference."""
    return token_f1(inp.answer, inp.references) if _needs_refs(inp) else None


def _numeric(inp: RewardInput) -> float | None:
    """1.0 if ``inp.answer`` is numerically equal to a numeric reference."""
    return _numeric_match(inp.answer, inp.references)


def _answer_match(inp: RewardInput) -> float | None:
    """Exact match or numeric equivalence of ``inp.answer``."""
    return answer_match(inp.answer, inp.references) if _needs_refs(inp) else None


def _boxed(inp: RewardInput) -> float | None:
    r"""``answer_match`` of the single ``\boxed{}`` answer in the agent's text."""
    if not _needs_refs(inp):
        return None
    return answer_match(boxed_answer(agent_text(inp.completion, inp.env_spans)), inp.references)


def _lenient(inp: RewardInput) -> float | None:
    """:func:`lenient_match` of the agent's text (env spans removed) on the final turn."""
    if not _needs_refs(inp):
        return None
    return lenient_match(agent_text(inp.completion, inp.env_spans), inp.answer, inp.references)


for _name, _fn in (("exact_match", _exact_match), ("f1", _f1), ("numeric_match", _numeric),
                   ("answer_match", _answer_match), ("boxed_match", _boxed),
                   ("lenient_match", _lenient)):
    REWARDS.register(_name, FunctionComponent(_name, _fn))
