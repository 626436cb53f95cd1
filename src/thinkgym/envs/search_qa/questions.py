"""Questions over a knowledge world: single-hop, bridge (two and three hops), comparison.

A question is a *path* of facts from a start entity (``written_by`` then
``born_in`` then ``located_in``: "In which country is the birthplace of the author
of "The Tides of Quorvel"?"), or a comparison of one attribute of two bridge
entities ("Of the authors of A and B, who was born earlier?"). Question ``index``
of a split is drawn from ``np.random.default_rng([world_seed, split_code, index])``:
the hop class uniformly (``"easy"``: single-hop only), then a path uniformly within
the class, then start entities uniformly from the split's pool.

Held-out split. Every entity is either a *train* or a *test* entity
(``KnowledgeWorld.is_test_entity``, a seeded ``test_fraction`` of each kind).
Test questions start from test entities; train and easy questions use only
train entities as the subjects of the facts they look up. So a fact a test
question needs first — its start entity's fact — never appears in any train or
easy question, and no question text occurs in both splits. (Later hops of a test
question may traverse train entities, as in multi-hop datasets built on one
encyclopedia.)

A candidate is rejected and redrawn when any accepted answer occurs in its text
(a cycle such as "Which organisation does the founder of the Veltra Guild belong
to?"), or a comparison has a tie or the same bridge entity twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from thinkgym.envs.search_qa.schema import FACTS, KINDS, RELATIONS, Kind
from thinkgym.errors import ConfigError

if TYPE_CHECKING:
    from thinkgym.envs.search_qa.knowledge import KnowledgeWorld

__all__ = [
    "QTYPES", "SPLITS", "Chain", "Comparison", "QType", "Question", "Split", "make_question",
    "parse_question",
]

Split = Literal["train", "test", "easy"]
SPLITS: tuple[Split, ...] = ("train", "test", "easy")
_SPLIT_CODE = {"train": 10, "test": 11, "easy": 12}
QType = Literal["single_hop", "two_hop", "three_hop", "comparison"]
QTYPES: tuple[QType, ...] = ("single_hop", "two_hop", "three_hop", "comparison")
_MAX_DRAWS = 500


@dataclass(frozen=True)
class Chain:
    """A start entity (by name) and the facts to follow from it, in order."""

    start: str
    facts: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    """Compare ``attribute`` of the chain ends and answer with the ``min`` or ``max`` one."""

    attribute: str
    pick: Literal["min", "max"]


@dataclass(frozen=True)
class Question:
    """One question with its gold answers and the structure that answers it."""

    id: str
    """``"<split>-<index>"``."""
    split: Split
    index: int
    text: str
    answers: tuple[str, ...]
    """Accepted answers, canonical first (aliases: initials, official names, 48,213)."""
    qtype: QType
    chains: tuple[Chain, ...]
    """One chain for bridge questions; two (one relation each) for comparisons."""
    comparison: Comparison | None
    supporting_ids: tuple[int, ...]
    """Passage ids holding every fact on the path (each contains its fact's value)."""

    def plan(self) -> dict[str, Any]:
        """The question's structure without its answer (what a scripted oracle may know)."""
        return {"qtype": self.qtype,
                "chains": [{"start": c.start, "facts": list(c.facts)} for c in self.chains],
                "comparison": None if self.comparison is None else
                {"attribute": self.comparison.attribute, "pick": self.comparison.pick}}


def _enumerate_paths(n_facts: int) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []

    def extend(kind: Kind, prefix: tuple[str, ...]) -> None:
        last = len(prefix) == n_facts - 1
        for spec in FACTS.values():
            if spec.subject != kind or (not last and spec.phrase is None):
                continue
            if last:
                paths.append((*prefix, spec.name))
            elif spec.target is not None:
                extend(spec.target, (*prefix, spec.name))

    for kind in KINDS:
        extend(kind, ())
    return paths


PATHS: dict[QType, list[tuple[str, ...]]] = {
    "single_hop": _enumerate_paths(1), "two_hop": _enumerate_paths(2),
    "three_hop": _enumerate_paths(3)}

# (bridge relation, attribute, template, {pick: word}); {a}, {b} are start noun phrases.
_COMPARISONS = (
    ("written_by", "birth_year", "Of the authors of {a} and {b}, who was born {w}?",
     {"min": "earlier", "max": "later"}),
    ("founded_by", "birth_year", "Of the founders of {a} and {b}, who was born {w}?",
     {"min": "earlier", "max": "later"}),
    ("born_in", "population",
     "Which has {w} inhabitants: the birthplace of {a} or the birthplace of {b}?",
     {"min": "fewer", "max": "more"}),
    ("member_of", "org_founded", "Which is {w}: the organisation that {a} belongs to or "
     "the organisation that {b} belongs to?", {"min": "older", "max": "younger"}),
    ("based_in", "city_founded",
     "Which was founded {w}: the home city of {a} or the home city of {b}?",
     {"min": "earlier", "max": "later"}),
)


def _noun_phrase(world: KnowledgeWorld, entity_id: int) -> str:
    e = world.entities[entity_id]
    if e.kind == "organisation":
        return f"the {e.name}"
    return f'"{e.name}"' if e.kind == "work" else e.name


def _tokens(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def _leaks(text: str, answers: tuple[str, ...]) -> bool:
    """Does any answer occur in ``text`` (as a substring, or as whole normalised words)?"""
    lowered, words = text.lower(), _tokens(text)
    return any(a.lower() in lowered or _tokens(a) in words for a in answers)


def _follow(world: KnowledgeWorld, start: int, facts: tuple[str, ...]) -> list[int]:
    """Subjects of each fact along the path (start first)."""
    subjects = [start]
    for fact in facts[:-1]:
        subjects.append(world.value(subjects[-1], fact))
    return subjects


def _draw_start(world: KnowledgeWorld, kind: Kind, split: Split,
                rng: np.random.Generator) -> int | None:
    pool = world.ids_of(kind, "test" if split == "test" else "train")
    return None if len(pool) == 0 else int(pool[rng.integers(len(pool))])


def _in_pool(world: KnowledgeWorld, split: Split, subjects: list[int]) -> bool:
    # Train questions may only read facts of train entities (see module docstring).
    return split == "test" or not world.is_test_entity[subjects].any()


def _bridge(world: KnowledgeWorld, split: Split, index: int, qtype: QType,
            rng: np.random.Generator) -> Question | None:
    paths = PATHS[qtype]
    facts = paths[int(rng.integers(len(paths)))]
    start = _draw_start(world, FACTS[facts[0]].subject, split, rng)
    if start is None:
        return None
    subjects = _follow(world, start, facts)
    if not _in_pool(world, split, subjects):
        return None
    phrase = _noun_phrase(world, start)
    for fact in facts[:-1]:
        phrase = FACTS[fact].phrase.format(x=phrase)  # type: ignore[union-attr]
    text = FACTS[facts[-1]].ask.format(x=phrase)
    text = text[0].upper() + text[1:]
    answers = world.answers(subjects[-1], facts[-1])
    if _leaks(text, answers):
        return None
    return Question(f"{split}-{index}", split, index, text, answers, qtype,
                    (Chain(world.entities[start].name, facts),), None, tuple(subjects))


def _comparison(world: KnowledgeWorld, split: Split, index: int,
                rng: np.random.Generator) -> Question | None:
    relation, attribute, template, words = _COMPARISONS[int(rng.integers(len(_COMPARISONS)))]
    pick: Literal["min", "max"] = "min" if rng.random() < 0.5 else "max"
    kind = RELATIONS[relation].subject
    starts = [_draw_start(world, kind, split, rng) for _ in range(2)]
    if None in starts or starts[0] == starts[1]:
        return None
    a, b = (int(s) for s in starts)  # type: ignore[arg-type]
    bridges = [world.value(a, relation), world.value(b, relation)]
    values = [world.value(x, attribute) for x in bridges]
    subjects = [a, b, *bridges]
    if bridges[0] == bridges[1] or values[0] == values[1] or not _in_pool(world, split, subjects):
        return None
    winner = bridges[int(np.argmin(values) if pick == "min" else np.argmax(values))]
    text = template.format(a=_noun_phrase(world, a), b=_noun_phrase(world, b), w=words[pick])
    answers = world.entities[winner].aliases
    if _leaks(text, answers):
        return None
    chains = tuple(Chain(world.entities[s].name, (relation,)) for s in (a, b))
    return Question(f"{split}-{index}", split, index, text, answers, "comparison", chains,
                    Comparison(attribute, pick), tuple(subjects))


def make_question(world: KnowledgeWorld, split: Split, index: int) -> Question:
    """Question ``index`` of ``split``; redraws (from the same seeded stream) on rejection."""
    if not isinstance(index, int | np.integer) or index < 0:
        raise ConfigError("question index must be a non-negative int", field="index",
                          got=index, fix="pass e.g. index=0")
    rng = np.random.default_rng([world.config.seed, _SPLIT_CODE[split], int(index)])
    qtype: QType = "single_hop" if split == "easy" else QTYPES[int(rng.integers(len(QTYPES)))]
    for _ in range(_MAX_DRAWS):
        if qtype == "comparison":
            question = _comparison(world, split, int(index), rng)
        else:
            question = _bridge(world, split, int(index), qtype, rng)
        if question is not None:
            return question
    raise ConfigError(f"no valid {qtype} question for split {split!r} after {_MAX_DRAWS} draws",
                      field="num_passages", got=world.config.num_passages,
                      fix="use a larger world (num_passages >= 100) or a larger test_fraction")



# -- reading a question back ------------------------------------------------------------
def _template_regex(template: str, names: tuple[str, ...]) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name in names:
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>.+)")
    return re.compile(pattern)


_ASK_RES = [(spec, _template_regex(spec.ask, ("x",))) for spec in FACTS.values()]
_PHRASE_RES = [(spec, _template_regex(spec.phrase, ("x",)))
               for spec in FACTS.values() if spec.phrase is not None]
_COMPARE_RES = [(relation, attribute, pick, _template_regex(template.replace("{w}", word),
                                                            ("a", "b")))
                for relation, attribute, template, words in _COMPARISONS
                for pick, word in words.items()]


def _bare_kind(name: str) -> tuple[Kind, str]:
    """Kind and plain name of a start mention, from its form alone."""
    if name.startswith('"') and name.endswith('"'):
        return "work", name[1:-1]
    if name.startswith("the "):
        return "organisation", name[4:]
    return ("person" if " " in name else "city"), name


def _read_phrase(text: str) -> tuple[Kind, str, tuple[str, ...]]:
    """``(kind, start name, facts)`` of a (possibly nested) noun phrase."""
    for spec, regex in _PHRASE_RES:
        match = regex.fullmatch(text)
        if match is None:
            continue
        kind, start, facts = _read_phrase(match["x"])
        if kind == spec.subject and spec.target is not None:
            return spec.target, start, (*facts, spec.name)
    kind, start = _bare_kind(text)
    return kind, start, ()


def parse_question(text: str) -> dict[str, Any] | None:
    """Recover :meth:`Question.plan` from a question's text (None if it is not one of ours).

    This inverts the question templates, as :func:`~thinkgym.envs.search_qa.schema.read_fact`
    inverts the passage templates: a scripted agent that knows the templates learns
    the question's structure (start entities and the facts to follow), never the answer.
    """
    text = text.strip()
    for relation, attribute, pick, regex in _COMPARE_RES:
        match = regex.fullmatch(text)
        if match is not None:
            starts = [_bare_kind(match[k])[1] for k in ("a", "b")]
            return {"qtype": "comparison",
                    "chains": [{"start": s, "facts": [relation]} for s in starts],
                    "comparison": {"attribute": attribute, "pick": pick}}
    for spec, regex in _ASK_RES:
        match = regex.fullmatch(text[0].upper() + text[1:] if text else text)
        if match is None:
            continue
        kind, start, facts = _read_phrase(match["x"])
        if kind != spec.subject:
            continue
        path = (*facts, spec.name)
        qtype: QType = ("single_hop", "two_hop", "three_hop")[min(len(path), 3) - 1]
        return {"qtype": qtype, "chains": [{"start": start, "facts": list(path)}],
                "comparison": None}
    return None
