"""Procedural arithmetic, algebra and word problems with graded difficulty (1-5).

Each generator takes a ``numpy`` Generator and a difficulty and returns a
:class:`Problem` whose answer is computed exactly (``fractions.Fraction``; the
``expand`` kind gives a polynomial). Difficulty grows the number of terms, the
size of numbers and the operations involved:

==================  ==================================================================
kind                what grows with difficulty
==================  ==================================================================
arithmetic          terms 2 -> 6, numbers up to 20 -> 200, then ``*``, ``/``, negatives
fractions           terms 2 -> 4, larger denominators, then ``*`` and ``/``
linear_equation     ``ax+b=c`` -> ``a(x+b)=cx+d`` with fractional solutions
shopping            more item types, prices in cents, change from a bill
rates               distance = speed x time -> minutes -> two workers together
percent             percent of -> discount -> discount then tax -> net percent change
sequence            next term (arithmetic, geometric, quadratic) -> n-th term -> sums
expand              ``(x+a)(x+b)`` -> three factors (answer is a polynomial in x)
==================  ==================================================================

Items are reproducible by index with :func:`make_problem` (``default_rng([seed,
index])``, so neighbouring seeds never share streams).

    >>> p = make_problem(seed=0, index=3, kind="linear_equation", difficulty=1)
    >>> p.kind, p.difficulty, p.answer_type
    ('linear_equation', 1, 'number')
    >>> make_problem(0, 3, "linear_equation", 1) == p
    True
    >>> render_number(Fraction(3, 4)), render_number(Fraction(-7, 3)), render_number(Fraction(5))
    ('0.75', '-7/3', '5')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from thinkgym.errors import ConfigError

__all__ = ["PROBLEM_KINDS", "Problem", "generate_problem", "make_problem", "render_number"]


@dataclass(frozen=True)
class Problem:
    """One generated problem and its exact answer."""

    kind: str
    """Generator name, one of :data:`PROBLEM_KINDS`."""
    difficulty: int
    """1 (easiest) to 5."""
    question: str
    """The problem statement (without answer-format instructions)."""
    answer: str
    """Canonical answer: an integer, exact decimal, ``p/q``, or a polynomial in ``x``."""
    answer_type: Literal["number", "expression"]
    """``number``: numeric equivalence; ``expression``: symbolic equivalence."""
    solution: str
    """A short worked solution ending in the answer (what the oracle baseline writes)."""


def render_number(value: Fraction) -> str:
    """Integer, exact decimal (denominator 2^a 5^b, up to 4 places) or ``p/q``."""
    if value.denominator == 1:
        return str(value.numerator)
    for places in range(1, 5):
        scaled = value * 10**places
        if scaled.denominator == 1:
            sign = "-" if value < 0 else ""
            digits = f"{abs(scaled.numerator):0{places + 1}d}"
            return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return f"{value.numerator}/{value.denominator}"


def _money(value: Fraction) -> str:
    cents = value * 100
    return f"{cents.numerator // cents.denominator // 100}.{int(cents) % 100:02d}" if (
        cents.denominator == 1 and value >= 0) else render_number(value)


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]`` (inclusive)."""
    return int(rng.integers(lo, hi + 1))


# -- arithmetic -----------------------------------------------------------------------------
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _tree(rng: np.random.Generator, n: int, hi: int, ops: str,
          neg: bool) -> tuple[str, Fraction, str]:
    """Random expression of ``n`` numbers: ``(text, value, top_op)``; top_op '' for a leaf."""
    if n == 1:
        v = _int(rng, 1, hi) * (-1 if neg and rng.random() < 0.25 else 1)
        return (f"({v})" if v < 0 else str(v)), Fraction(v), ""
    k = _int(rng, 1, n - 1)
    lt, lv, lop = _tree(rng, k, hi, ops, neg)
    rt, rv, rop = _tree(rng, n - k, hi, ops, neg)
    op = ops[int(rng.integers(len(ops)))]
    if op == "/" and (rv == 0 or rop):  # divide only by a (non-zero) number: small denominators
        op = "+"
    if op == "*" and abs(lv * rv) > 10**7:
        op = "-"
    if lop and _PREC[lop] < _PREC[op]:
        lt = f"({lt})"
    if rop and (_PREC[rop] < _PREC[op] or (_PREC[rop] == _PREC[op] and op in "-/")):
        rt = f"({rt})"
    value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else lv}[op]
    return f"{lt} {op} {rt}", value, op


def _arithmetic(rng: np.random.Generator, d: int) -> Problem:
    n, hi, ops = {1: (2, 20, "+-"), 2: (3, 50, "+-*"), 3: (4, 100, "+-*"),
                  4: (5, 100, "+-*/"), 5: (6, 200, "+-*/")}[d]
    text, value, _ = _tree(rng, n, hi, ops, neg=d >= 5)
    ans = render_number(value)
    return Problem("arithmetic", d, f"Compute {text}.", ans, "number",
                   f"Evaluate {text} respecting the order of operations: {text} = {ans}.")


def _frac_text(f: Fraction) -> str:
    return f"{f.numerator}/{f.denominator}" if f.denominator != 1 else str(f.numerator)


def _fractions(rng: np.random.Generator, d: int) -> Problem:
    n = 2 if d <= 2 else 3 if d <= 4 else 4
    ops = "+-" if d <= 2 else "+-*/"
    top = 3 + 3 * d
    text, value, low_top = "", Fraction(0), False
    for i in range(n):
        den = _int(rng, 2, top)
        num = _int(rng, 1, top)
        num += num % den == 0  # a proper fraction, never an integer in disguise
        term = Fraction(num, den)
        if i == 0:
            text, value = f"({num}/{den})", term
            continue
        op = ops[int(rng.integers(len(ops)))]
        if op in "*/" and low_top:  # keep left-to-right grouping explicit
            text = f"[{text}]"
        low_top = op in "+-"
        value = {"+": value + term, "-": value - term, "*": value * term, "/": value / term}[op]
        text = f"{text} {op} ({num}/{den})"
    ans = _frac_text(value)
    return Problem("fractions", d, f"Compute {text} and give the result as a fraction in "
                   "lowest terms.", ans, "number", f"Working left to right: {text} = {ans}.")


# -- algebra --------------------------------------------------------------------------------
def _signed(value: int) -> str:
    return f"+ {value}" if value >= 0 else f"- {-value}"


def _linear_equation(rng: np.random.Generator, d: int) -> Problem:
    hi = 5 + 3 * d
    a, b = _int(rng, 2, hi), _int(rng, -hi, hi)
    if d <= 2:  # integer solution: pick x, then the right-hand side
        x = _int(rng, -hi, hi)
        if d == 1:
            question = f"Solve for x: {a}x {_signed(b)} = {a * x + b}."
        else:
            c = _int(rng, -hi, hi)
            c = c + 1 if c == a else c
            question = f"Solve for x: {a}x {_signed(b)} = {c}x {_signed(a * x + b - c * x)}."
        value = Fraction(x)
    else:  # a(x + b) = c x + e  ->  x = (e - a b) / (a - c), often a fraction
        c, e = _int(rng, 1, hi), _int(rng, -hi * hi, hi * hi)
        c = c + 1 if c == a else c
        value = Fraction(e - a * b, a - c)
        question = f"Solve for x: {a}(x {_signed(b)}) = {c}x {_signed(e)}."
    ans = _frac_text(value)
    return Problem("linear_equation", d, question + " Give x as an integer or a fraction.",
                   ans, "number", f"Collect the x terms on one side and divide: x = {ans}.")


def _expand(rng: np.random.Generator, d: int) -> Problem:
    hi = 3 + 2 * d
    n = 2 if d <= 3 else 3
    factors = []
    for _ in range(n):
        a = 1 if d == 1 else _int(rng, 1, min(hi, 4))
        b = _int(rng, -hi, hi) or 1
        factors.append((a, b))
    coeffs = [1]  # polynomial coefficients, lowest degree first
    for a, b in factors:
        nxt = [0] * (len(coeffs) + 1)
        for i, c in enumerate(coeffs):
            nxt[i] += c * b
            nxt[i + 1] += c * a
        coeffs = nxt
    terms = []
    for power in range(len(coeffs) - 1, -1, -1):
        c = coeffs[power]
        if c == 0:
            continue
        mono = "" if power == 0 else "x" if power == 1 else f"x^{power}"
        body = str(abs(c)) if power == 0 or abs(c) != 1 else ""
        terms.append(("-" if c < 0 else "+", f"{body}{mono}"))
    ans = " ".join(f"{s} {t}" for s, t in terms).lstrip("+ ")
    ans = ans if not ans.startswith("- ") else "-" + ans[2:]
    fac = "".join(f"({'' if a == 1 else a}x {'+' if b >= 0 else '-'} {abs(b)})"
                  for a, b in factors)
    return Problem("expand", d, f"Expand and simplify {fac} as a polynomial in x.", ans or "0",
                   "expression", f"Multiply the factors term by term and collect powers of x: "
                   f"{fac} = {ans or '0'}.")


# -- word problems --------------------------------------------------------------------------
_ITEMS = ("notebooks", "pencils", "apples", "tickets", "mugs", "batteries", "stamps", "candles")


def _shopping(rng: np.random.Generator, d: int) -> Problem:
    kinds = 1 + (d + 1) // 2
    picks = rng.choice(len(_ITEMS), size=kinds, replace=False)
    parts, total = [], Fraction(0)
    for k in picks:
        qty = _int(rng, 2, 4 + 2 * d)
        price = Fraction(_int(rng, 1, 9 + 4 * d)) if d <= 2 else Fraction(
            _int(rng, 105, 1999), 100)
        total += qty * price
        parts.append(f"{qty} {_ITEMS[int(k)]} at ${_money(price)} each")
    bought = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    if d >= 3:
        bill = Fraction(((int(total) // 20) + 1) * 20)
        value, q = bill - total, f"Sam buys {bought}, and pays with ${int(bill)}. How much " \
                                 "change, in dollars, does Sam get?"
    else:
        value, q = total, f"Sam buys {bought}. How many dollars does Sam spend in total?"
    ans = _money(value)
    return Problem("shopping", d, q, ans, "number",
                   f"Add up quantity times price for each item: total ${_money(total)}; the "
                   f"answer is {ans}.")


def _rates(rng: np.random.Generator, d: int) -> Problem:
    if d <= 2:
        speed, hours = _int(rng, 20, 40 + 20 * d), _int(rng, 2, 3 + 2 * d)
        value, q = Fraction(speed * hours), (f"A train travels at {speed} km per hour for "
                                              f"{hours} hours. How many km does it travel?")
    elif d == 3:
        speed, minutes = 6 * _int(rng, 5, 20), _int(rng, 10, 90)
        dist = Fraction(speed * minutes, 60)
        value, q = Fraction(minutes), (f"A cyclist rides {render_number(dist)} km at {speed} km "
                                        "per hour. How many minutes does the ride take?")
    else:
        a, b = _int(rng, 2, 4 + 2 * d), _int(rng, 2, 4 + 2 * d)
        value = Fraction(a * b, a + b)
        q = (f"One pump fills a tank in {a} hours and another fills it in {b} hours. Working "
             "together, how many hours do they take to fill the tank?")
    ans = render_number(value)
    return Problem("rates", d, q, ans, "number", f"Use rate x time = amount: the answer is {ans}.")


def _percent(rng: np.random.Generator, d: int) -> Problem:
    # Multiples of 20 dollars and 5 % keep every answer in whole cents.
    price = Fraction(20 * _int(rng, 1, 5 * d))
    r, t = _int(rng, 1, 9) * 5, _int(rng, 1, 20)
    if d == 1:
        value, q = price * r / 100, f"What is {r}% of {price}?"
    elif d == 2:
        value = price * (100 - r) / 100
        q = f"A ${price} jacket is discounted by {r}%. What is the new price in dollars?"
    elif d in (3, 4):
        value = price * (100 - r) / 100 * (100 + t) / 100
        q = (f"A ${price} item is discounted by {r}%, then a {t}% sales tax is added to the "
             "discounted price. What is the final price in dollars?")
    else:
        value = (Fraction(100 + r, 100) * Fraction(100 - t, 100) - 1) * 100
        q = (f"A price rises by {r}% and then falls by {t}%. By what percent has it changed "
             "overall? (Negative for a decrease; give the number without the % sign.)")
    ans = render_number(value)
    return Problem("percent", d, q, ans, "number", f"Apply the percentages as multipliers in "
                   f"order: the answer is {ans}.")


def _sequence(rng: np.random.Generator, d: int) -> Problem:
    a0, step = _int(rng, -10, 20), _int(rng, 2, 9)
    if d == 1:
        seq = [a0 + step * i for i in range(5)]
        value, q = Fraction(a0 + step * 5), f"What is the next term of {', '.join(map(str, seq))}?"
    elif d == 2:
        n = _int(rng, 15, 40)
        seq = [a0 + step * i for i in range(4)]
        value = Fraction(a0 + step * (n - 1))
        q = f"The sequence {', '.join(map(str, seq))}, ... continues with a constant " \
            f"difference. What is its term number {n}?"
    elif d == 3:
        ratio, start = _int(rng, 2, 4), _int(rng, 1, 5)
        seq = [start * ratio**i for i in range(5)]
        value, q = Fraction(start * ratio**5), f"What is the next term of " \
                                                f"{', '.join(map(str, seq))}?"
    elif d == 4:
        c2 = _int(rng, 1, 3)
        seq = [c2 * i * i + step * i + a0 for i in range(5)]
        value, q = Fraction(c2 * 25 + step * 5 + a0), f"What is the next term of " \
                                                        f"{', '.join(map(str, seq))}?"
    else:
        n = _int(rng, 20, 60)
        value = Fraction(n * (2 * a0 + (n - 1) * step), 2)
        q = f"What is the sum of the first {n} terms of {a0}, {a0 + step}, {a0 + 2 * step}, ...?"
    ans = render_number(value)
    return Problem("sequence", d, q, ans, "number", f"Find the rule of the sequence and apply "
                   f"it: the answer is {ans}.")


_GENERATORS: dict[str, Callable[[np.random.Generator, int], Problem]] = {
    "arithmetic": _arithmetic,
    "fractions": _fractions,
    "linear_equation": _linear_equation,
    "expand": _expand,
    "shopping": _shopping,
    "rates": _rates,
    "percent": _percent,
    "sequence": _sequence,
}

PROBLEM_KINDS: tuple[str, ...] = tuple(_GENERATORS)
"""Every problem kind."""


def generate_problem(rng: np.random.Generator, kind: str | None = None,
                     difficulty: int = 2, kinds: tuple[str, ...] = PROBLEM_KINDS) -> Problem:
    """Draw one problem (``kind`` drawn uniformly from ``kinds`` when None)."""
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or not 1 <= difficulty <= 5:
        raise ConfigError("difficulty must be an int in 1..5", field="difficulty",
                          got=difficulty, fix="pass difficulty=1 (easiest) ... 5 (hardest)")
    if kind is None:
        kind = kinds[int(rng.integers(len(kinds)))]
    if kind not in _GENERATORS:
        raise ConfigError("unknown problem kind", field="kind", got=kind,
                          fix=f"use one of {list(PROBLEM_KINDS)}")
    return _GENERATORS[kind](rng, difficulty)


def make_problem(seed: int, index: int, kind: str | None = None, difficulty: int = 2) -> Problem:
    """Problem number ``index`` of the stream ``seed`` (independent streams per index)."""
    return generate_problem(np.random.default_rng([seed, index]), kind, difficulty)
