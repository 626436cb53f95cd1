r"""Task verifiers for ToolUse-v0: ``(answer, task) -> bool | float``, by name or as callables.

A verifier reads the agent's final answer (the text inside ``<answer>``) and the task
dict, and says how right the answer is: ``True``/``False`` or a score in [0, 1]. The
registered ones (:data:`VERIFIERS`) declare the task fields they read, so a task set
missing one fails at ``make`` time, naming the task index and the field:

=================  =============================  ==============================================
name               task fields                    passes when
=================  =============================  ==============================================
``exact_match``    ``answer`` (str or list)       the normalised answer equals one (SQuAD rules)
``numeric``        ``answer``; ``rel_tol``,       the answer is a number within tolerance
                   ``abs_tol`` optional           (default rel 1e-6, abs 1e-9)
``answer_match``   ``answer``                     exact match or numeric equivalence (default)
``boxed``          ``answer``                     the ``\boxed{}`` value in the answer matches
``contains_all``   ``must_contain`` (list)        every listed phrase appears as whole words
=================  =============================  ==============================================

Hedged answers ("3 or 4") never pass. Register your own with
``VERIFIERS.register("name", Verifier("name", fn, fields=("field",)))``, or pass a plain
callable (its ``fields`` attribute, if any, lists the fields it needs).

    >>> VERIFIERS.get("numeric")("12.0", {"answer": 12})
    1.0
    >>> VERIFIERS.get("contains_all")("Oslo and Bergen", {"must_contain": ["bergen", "oslo"]})
    1.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thinkgym.errors import ConfigError, VerifierError
from thinkgym.registry import Registry
from thinkgym.rewards import (
    answer_match,
    boxed_answer,
    exact_match,
    is_hedged,
    normalize_answer,
    numbers_equal,
    parse_number,
)

__all__ = ["VERIFIERS", "Verifier", "VerifierLike", "resolve_verifier"]

VerifierFn = Callable[[str, Mapping[str, Any]], "bool | float"]
VerifierLike = str | VerifierFn


@dataclass(frozen=True)
class Verifier:
    """A named verifier and the task fields it reads."""

    name: str
    fn: VerifierFn
    fields: tuple[str, ...] = ()
    """Task fields every task must have for this verifier."""

    def __call__(self, answer: str, task: Mapping[str, Any]) -> float:
        """The score in [0, 1]; a raise or a non-score is a :class:`VerifierError`."""
        try:
            value = self.fn(answer, task)
        except Exception as exc:
            raise VerifierError(f"raised {type(exc).__name__}: {exc}", verifier=self.name,
                                got=answer, fix="fix the verifier (or the task it read); a "
                                "failing check is never scored 0") from exc
        if isinstance(value, bool):
            return float(value)
        if not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise VerifierError("returned something that is not a score in [0, 1]",
                                verifier=self.name, got=value,
                                fix="return True/False or a float in [0, 1]")
        return float(value)


def _refs(task: Mapping[str, Any]) -> list[str]:
    ref = task["answer"]
    items = ref if isinstance(ref, list | tuple) else [ref]
    return [str(r) for r in items]


def _exact(answer: str, task: Mapping[str, Any]) -> float:
    return exact_match(answer, _refs(task))


def _numeric(answer: str, task: Mapping[str, Any]) -> float:
    refs = _refs(task)
    if is_hedged(answer, refs):
        return 0.0
    got = parse_number(answer)
    rel, abs_ = float(task.get("rel_tol", 1e-6)), float(task.get("abs_tol", 1e-9))
    if got is None:
        return 0.0
    wants = [n for n in (parse_number(r) for r in refs) if n is not None]
    if "rel_tol" in task or "abs_tol" in task:  # explicit tolerance: never exact-only
        return float(any(math.isclose(float(got), float(w), rel_tol=rel, abs_tol=abs_)
                         for w in wants))
    return float(any(numbers_equal(got, w, rel_tol=rel, abs_tol=abs_) for w in wants))


def _answer_match(answer: str, task: Mapping[str, Any]) -> float:
    return answer_match(answer, _refs(task))


def _boxed(answer: str, task: Mapping[str, Any]) -> float:
    boxed = boxed_answer(answer)
    return 0.0 if boxed is None else answer_match(boxed, _refs(task))


def _contains_all(answer: str, task: Mapping[str, Any]) -> float:
    phrases = task["must_contain"]
    if isinstance(phrases, str) or not isinstance(phrases, Sequence) or not phrases:
        raise ValueError("task['must_contain'] must be a non-empty list of phrases")
    words = f" {' '.join(normalize_answer(answer).split())} "
    return float(all(f" {' '.join(normalize_answer(str(p)).split())} " in words
                     for p in phrases))


VERIFIERS: Registry[Verifier] = Registry("verifier")
"""Registered verifiers by name."""
for _v in (Verifier("exact_match", _exact, ("answer",)),
           Verifier("numeric", _numeric, ("answer",)),
           Verifier("answer_match", _answer_match, ("answer",)),
           Verifier("boxed", _boxed, ("answer",)),
           Verifier("contains_all", _contains_all, ("must_contain",))):
    VERIFIERS.register(_v.name, _v)


def resolve_verifier(spec: VerifierLike | Verifier) -> Verifier:
    """A :class:`Verifier` from a registered name, a Verifier or a plain callable."""
    if isinstance(spec, Verifier):
        return spec
    if isinstance(spec, str):
        return VERIFIERS.get(spec)
    if callable(spec):
        fields = getattr(spec, "fields", ())
        name = getattr(spec, "__name__", type(spec).__name__)
        return Verifier(str(name), spec, tuple(fields))
    raise ConfigError("verifier must be a registered name or a callable (answer, task)",
                      field="verifier", got=spec,
                      fix=f"pass one of {VERIFIERS.names()} or a function (answer, task) -> "
                          "bool | float")
