"""What a knowledge world knows: entity kinds, facts, and how facts are written and read.

A *fact* is a functional edge from a subject entity: a relation to another entity
(``born_in``: person -> city) or an integer attribute (``birth_year``). Each
:class:`FactSpec` carries the three ways the world uses it:

* ``ask``: the question asking for it (``"In which city was {x} born?"``);
* ``phrase``: a noun phrase naming the related entity, for nesting into multi-hop
  questions (``"the birthplace of {x}"``; relations only);
* ``pattern``: a regular expression reading the value back out of the subject's
  passage. The passage templates in :mod:`thinkgym.envs.search_qa.knowledge` and
  these patterns are written together and tested together, so a scripted reader
  (the oracle agent) finds every fact the renderer wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["ATTRIBUTES", "FACTS", "KINDS", "RELATIONS", "FactSpec", "Kind", "read_fact"]

Kind = Literal["person", "city", "country", "organisation", "work"]
KINDS: tuple[Kind, ...] = ("country", "city", "organisation", "person", "work")

_NAME = r"[A-Z][a-z]+"
_PERSON = rf"{_NAME} {_NAME}"
_YEAR = r"\d{3,4}"


@dataclass(frozen=True)
class FactSpec:
    """One kind of fact: who has it, what it points to, and how it is asked and read."""

    name: str
    """Fact id, e.g. ``"born_in"``."""
    subject: Kind
    """Kind of entity that has this fact."""
    target: Kind | None
    """Kind of the related entity; None for an integer attribute."""
    ask: str
    """Question asking for the fact of ``{x}`` (a name or a nested noun phrase)."""
    phrase: str | None
    """Noun phrase for the related entity of ``{x}`` (relations only)."""
    pattern: str
    """Regex over the subject's passage; the first non-empty group is the value."""

    @property
    def is_relation(self) -> bool:
        return self.target is not None


_SPECS = (
    FactSpec("born_in", "person", "city", "In which city was {x} born?",
             "the birthplace of {x}", rf"(?:\bfrom|[Bb]orn in) ({_NAME})\b"),
    FactSpec("member_of", "person", "organisation", "Which organisation does {x} belong to?",
             "the organisation that {x} belongs to",
             rf"(?:member of|belongs to|joined) the ({_NAME} {_NAME})\b"),
    FactSpec("birth_year", "person", None, "In what year was {x} born?", None,
             rf"[Bb]orn (?:in {_NAME} in )?({_YEAR})\b"),
    FactSpec("located_in", "city", "country", "In which country is {x}?", None,
             rf"(?:city in|lies in) ({_NAME})\b"),
    FactSpec("city_founded", "city", None, "In what year was {x} founded?", None,
             rf"[Ff]ounded in ({_YEAR})\b"),
    FactSpec("population", "city", None, "What is the population of {x}?", None,
             r"(?:population of|city of) (\d[\d,]*\d|\d)\b"),
    FactSpec("founded_by", "organisation", "person", "Who founded {x}?", "the founder of {x}",
             rf"(?:[Ff]ounded|established)(?: in {_YEAR})? by ({_PERSON})\b"),
    FactSpec("based_in", "organisation", "city", "In which city is {x} based?",
             "the home city of {x}", rf"(?:based in|headquartered in|headquarters in) ({_NAME})\b"),
    FactSpec("org_founded", "organisation", None, "In what year was {x} founded?", None,
             rf"(?:(?:[Ff]ounded|established) in ({_YEAR})|Founded by {_PERSON} in ({_YEAR}))\b"),
    FactSpec("written_by", "work", "person", "Who wrote {x}?", "the author of {x}",
             rf"(?:\bby|written by) ({_PERSON})\b|\b({_PERSON}) wrote\b"),
    FactSpec("published_year", "work", None, "In what year was {x} published?", None,
             rf"[Pp]ublished in ({_YEAR})\b"),
)

FACTS: dict[str, FactSpec] = {s.name: s for s in _SPECS}
RELATIONS: dict[str, FactSpec] = {s.name: s for s in _SPECS if s.is_relation}
ATTRIBUTES: dict[str, FactSpec] = {s.name: s for s in _SPECS if not s.is_relation}
_COMPILED = {s.name: re.compile(s.pattern, re.MULTILINE) for s in _SPECS}


def read_fact(fact: str, passage: str) -> str | None:
    """The value of ``fact`` as written in ``passage`` (the subject's own passage), or None.

    >>> read_fact("born_in", "Talven Orsk (born 1843) is a painter from Veltra.")
    'Veltra'
    >>> read_fact("birth_year", "Talven Orsk (born 1843) is a painter from Veltra.")
    '1843'
    >>> read_fact("population", "Veltra is a city in Dravonia with a population of 48,213.")
    '48,213'
    """
    match = _COMPILED[fact].search(passage)
    if match is None:
        return None
    return next((g for g in match.groups() if g), None)
