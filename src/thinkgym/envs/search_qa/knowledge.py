"""A procedural knowledge world: fictional entities, facts, passages, questions.

A world is fully determined by :class:`WorldConfig` (size and seed). It holds
countries, cities, organisations, people and works with integer attributes
(birth year, founding year, population, publication year) and functional
relations (a person is *born in* a city and *belongs to* an organisation; a city
*lies in* a country; an organisation is *founded by* a person and *based in* a
city; a work is *written by* a person). Each entity is rendered as one
natural-language passage, so ``num_passages`` is the number of entities.

Why the answers cannot be guessed: every name word is a fresh syllable word used
once in the world (:mod:`~thinkgym.envs.search_qa.names`); relations and attributes
are drawn independently and uniformly, so nothing in a name or a question hints at
a value; and a question is rejected if its answer appears in its text.

Questions (single-hop, two- and three-hop bridges, comparisons) are generated
per index from ``np.random.default_rng([seed, split, index])``; see
:mod:`~thinkgym.envs.search_qa.questions` for the held-out split.

>>> world = KnowledgeWorld(WorldConfig(num_passages=200, seed=3))
>>> len(world.passages)
200
>>> q = world.question("train", 0)
>>> q.answers[0].lower() in q.text.lower()
False
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thinkgym.envs.search_qa.names import NameGenerator
from thinkgym.envs.search_qa.questions import SPLITS, Question, Split, make_question
from thinkgym.envs.search_qa.schema import FACTS, KINDS, Kind
from thinkgym.errors import ConfigError

__all__ = ["Entity", "KnowledgeWorld", "Passage", "WorldConfig", "build_world"]

_SHARE: dict[Kind, float] = {"country": 0.08, "city": 0.16, "organisation": 0.16,
                             "work": 0.24, "person": 0.36}
_OCCUPATIONS = ("painter", "engineer", "poet", "cartographer", "physician", "merchant",
                "astronomer", "composer", "historian", "architect", "botanist", "judge")
_ORG_KINDS = ("Guild", "Society", "Institute", "Company", "League", "Academy", "Bank",
              "Collective", "Foundation", "Orchestra", "Circle", "Union", "Trust")
_COUNTRY_FORMS = ("Republic", "Kingdom", "Commonwealth", "Principality", "Federation")
_WORK_NOUNS = ("Lanterns", "Orchard", "Tides", "Ledger", "Harvest", "Mirrors", "Winter",
               "Compass", "Bells", "Archive", "Garden", "Voyage", "Embers", "Silence")
_WORK_KINDS = ("novel", "play", "poem cycle", "treatise", "memoir", "essay collection")
_GENRES = ("historical", "satirical", "pastoral", "tragic", "comic", "philosophical")

_TEMPLATES: dict[Kind, tuple[str, ...]] = {
    "person": (
        "{name} (born {birth_year}) is {occupation} from {born_in}. "
        "{last} is a member of the {member_of}.",
        "{name} is {occupation} who was born in {born_in} in {birth_year}. "
        "{last} belongs to the {member_of}.",
        "Born in {born_in} in {birth_year}, {name} worked as {occupation}. "
        "{last} later joined the {member_of}.",
    ),
    "city": (
        "{name} is a city in {located_in}. It was founded in {city_founded} and has a "
        "population of {population}.",
        "Founded in {city_founded}, {name} is a city in {located_in} with a population "
        "of {population}.",
        "{name}, a city of {population} people, lies in {located_in}. "
        "The city was founded in {city_founded}.",
    ),
    "country": (
        "{name}, officially the {official}, is a country with an area of {area} square "
        "kilometres.",
        "The {official}, usually called {name}, covers {area} square kilometres.",
    ),
    "organisation": (
        "The {name} is an organisation founded in {org_founded} by {founded_by}. "
        "It is based in {based_in}.",
        "Founded by {founded_by} in {org_founded}, the {name} is headquartered in {based_in}.",
        "The {name} was established in {org_founded} by {founded_by} and has its "
        "headquarters in {based_in}.",
    ),
    "work": (
        '"{name}" is a {genre} {work_kind} by {written_by}, published in {published_year}.',
        '{written_by} wrote the {genre} {work_kind} "{name}", which was published in '
        "{published_year}.",
        'Published in {published_year}, "{name}" is a {genre} {work_kind} written by '
        "{written_by}.",
    ),
}


@dataclass(frozen=True)
class WorldConfig:
    """Size and seed of a knowledge world."""

    num_passages: int = 1500
    """Entities, hence passages, in the world (100 .. 200,000)."""
    seed: int = 0
    """Seed of the world: the same config always builds the same world."""
    test_fraction: float = 0.2
    """Share of entities held out as start entities of test questions (0.05 .. 0.5)."""

    def __post_init__(self) -> None:
        if not isinstance(self.num_passages, int) or not 100 <= self.num_passages <= 200_000:
            raise ConfigError("must be an int in 100 .. 200,000", field="num_passages",
                              got=self.num_passages, fix="pass e.g. num_passages=1500")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("must be a non-negative int", field="seed", got=self.seed,
                              fix="pass e.g. seed=0")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise ConfigError("must lie in 0.05 .. 0.5", field="test_fraction",
                              got=self.test_fraction, fix="pass e.g. test_fraction=0.2")


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity; its ``id`` is also the id of its passage."""

    id: int
    kind: Kind
    name: str
    aliases: tuple[str, ...]
    """Accepted answer strings, the canonical ``name`` first."""
    facts: dict[str, int] = field(default_factory=dict)
    """Fact name -> entity id (relations) or integer value (attributes)."""
    details: dict[str, str] = field(default_factory=dict)
    """Flavour text used by the passage only (occupation, genre, ...); never asked."""


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage; ``contents`` is the common jsonl form: quoted title line, then text."""

    id: int
    title: str
    text: str

    @property
    def contents(self) -> str:
        return f'"{self.title}"\n{self.text}'


class KnowledgeWorld:
    """Entities, passages and the question generator of one :class:`WorldConfig`."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        seed = self.config.seed
        self.entities: tuple[Entity, ...] = _generate_entities(self.config)
        self.by_name: dict[str, int] = {e.name: e.id for e in self.entities}
        rng = np.random.default_rng([seed, 1])
        self.passages: tuple[Passage, ...] = tuple(
            Passage(e.id, e.name, self._render(e, rng)) for e in self.entities)
        held_out = np.random.default_rng([seed, 2]).random(len(self.entities))
        self.is_test_entity: np.ndarray = held_out < self.config.test_fraction  # (N,) bool
        self._kind_ids: dict[Kind, np.ndarray] = {
            k: np.array([e.id for e in self.entities if e.kind == k]) for k in KINDS}

    # -- facts ----------------------------------------------------------------------
    def value(self, entity_id: int, fact: str) -> int:
        """The fact's value: an entity id for a relation, an integer for an attribute."""
        return self.entities[entity_id].facts[fact]

    def value_text(self, entity_id: int, fact: str) -> str:
        """The fact's value as the passage writes it."""
        value = self.value(entity_id, fact)
        if FACTS[fact].is_relation:
            return self.entities[value].name
        return f"{value:,}" if fact == "population" else str(value)

    def answers(self, entity_id: int, fact: str) -> tuple[str, ...]:
        """Accepted answers for the fact's value (the canonical form first)."""
        value = self.value(entity_id, fact)
        if FACTS[fact].is_relation:
            return self.entities[value].aliases
        return (str(value), f"{value:,}") if fact == "population" else (str(value),)

    def ids_of(self, kind: Kind, split: Split | None = None) -> np.ndarray:
        """Entity ids of ``kind``; with ``split``, only its start-entity pool."""
        ids = self._kind_ids[kind]
        if split is None:
            return ids
        test = self.is_test_entity[ids]
        return ids[test] if split == "test" else ids[~test]

    # -- questions ------------------------------------------------------------------
    def question(self, split: Split, index: int) -> Question:
        """Question ``index`` of ``split`` ("train", "test" or "easy"), reproducible by index."""
        if split not in SPLITS:
            raise ConfigError("unknown split", field="split", got=split,
                              fix=f"use one of {SPLITS}")
        return make_question(self, split, index)

    def questions(self, split: Split, n: int, start: int = 0) -> list[Question]:
        """Questions ``start .. start + n - 1`` of ``split``."""
        return [self.question(split, i) for i in range(start, start + n)]

    # -- export ---------------------------------------------------------------------
    def corpus_records(self) -> Iterator[dict[str, str]]:
        """The corpus in the common jsonl form: ``{"id", "contents"}`` per passage."""
        for p in self.passages:
            yield {"id": str(p.id), "contents": p.contents}

    def qa_records(self, split: Split, n: int) -> Iterator[dict[str, Any]]:
        """QA rows ``{"id", "question", "golden_answers", "metadata"}`` of a split."""
        for q in self.questions(split, n):
            yield {"id": q.id, "question": q.text, "golden_answers": list(q.answers),
                   "metadata": {"type": q.qtype, "supporting_ids": list(q.supporting_ids)}}

    def write_corpus(self, path: str | Path) -> Path:
        """Write :meth:`corpus_records` as jsonl; returns the path."""
        return _write_jsonl(Path(path), self.corpus_records())

    def write_qa(self, path: str | Path, split: Split, n: int) -> Path:
        """Write ``n`` questions of ``split`` as QA jsonl; returns the path."""
        return _write_jsonl(Path(path), self.qa_records(split, n))

    # -- rendering ------------------------------------------------------------------
    def _render(self, e: Entity, rng: np.random.Generator) -> str:
        fields: dict[str, str] = {"name": e.name, **e.details}
        for fact in e.facts:
            fields[fact] = self.value_text(e.id, fact)
        templates = _TEMPLATES[e.kind]
        return templates[int(rng.integers(len(templates)))].format(**fields)


@functools.lru_cache(maxsize=8)
def build_world(config: WorldConfig | None = None) -> KnowledgeWorld:
    """The world of ``config``, built once per process (worlds are immutable)."""
    return KnowledgeWorld(config)


def _counts(n: int) -> dict[Kind, int]:
    counts: dict[Kind, int] = {k: max(1, round(n * share)) for k, share in _SHARE.items()
                               if k != "person"}
    counts["person"] = n - sum(counts.values())
    return counts


def _with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(low), math.log(high), size)).astype(np.int64)


def _generate_entities(config: WorldConfig) -> tuple[Entity, ...]:
    """Names, attributes and relations; ids are contiguous per kind in ``KINDS`` order."""
    rng = np.random.default_rng([config.seed, 0])
    names = NameGenerator(rng)
    counts = _counts(config.num_passages)
    first_id: dict[Kind, int] = {}
    offset = 0
    for kind in KINDS:
        first_id[kind] = offset
        offset += counts[kind]

    def pick(kind: Kind, size: int) -> np.ndarray:
        # Balanced: every target is used floor or ceil(size / count) times, so no answer
        # to "In which city was X born?" is more likely than another.
        reps = -(-size // counts[kind])
        return first_id[kind] + rng.permutation(np.tile(np.arange(counts[kind]), reps))[:size]

    n_person, n_org, n_work = counts["person"], counts["organisation"], counts["work"]
    births = rng.integers(1600, 1951, n_person)
    born_in, member_of = pick("city", n_person), pick("organisation", n_person)
    located_in = pick("country", counts["city"])
    city_founded = rng.integers(600, 1900, counts["city"])
    population = _log_uniform(rng, 5_000, 5_000_000, counts["city"])
    founded_by, based_in = pick("person", n_org), pick("city", n_org)
    authors = pick("person", n_work)
    # Dates follow the people involved, so passages read plausibly.
    org_founded = births[founded_by - first_id["person"]] + rng.integers(20, 61, n_org)
    published = births[authors - first_id["person"]] + rng.integers(18, 76, n_work)
    area = _log_uniform(rng, 1_000, 2_000_000, counts["country"])

    out: list[Entity] = []
    for i, name in enumerate(names.words(counts["country"])):
        form = _COUNTRY_FORMS[int(rng.integers(len(_COUNTRY_FORMS)))]
        official = f"{form} of {name}"
        out.append(Entity(len(out), "country", name, (name, official),
                          details={"official": official, "area": f"{int(area[i]):,}"}))
    for i, name in enumerate(names.words(counts["city"])):
        out.append(Entity(len(out), "city", name, (name, f"{name} City"), facts={
            "located_in": int(located_in[i]), "city_founded": int(city_founded[i]),
            "population": int(population[i])}))
    for i, word in enumerate(names.words(n_org)):
        name = f"{word} {_ORG_KINDS[int(rng.integers(len(_ORG_KINDS)))]}"
        out.append(Entity(len(out), "organisation", name, (name, word), facts={
            "founded_by": int(founded_by[i]), "based_in": int(based_in[i]),
            "org_founded": int(org_founded[i])}))
    words = names.words(2 * n_person)
    for i in range(n_person):
        first, last = words[2 * i], words[2 * i + 1]
        name = f"{first} {last}"
        out.append(Entity(len(out), "person", name, (name, f"{first[0]}. {last}"), facts={
            "born_in": int(born_in[i]), "member_of": int(member_of[i]),
            "birth_year": int(births[i])}, details={
            "last": last, "occupation": _with_article(
                _OCCUPATIONS[int(rng.integers(len(_OCCUPATIONS)))])}))
    for i, word in enumerate(names.words(n_work)):
        title = f"The {_WORK_NOUNS[int(rng.integers(len(_WORK_NOUNS)))]} of {word}"
        out.append(Entity(len(out), "work", title, (title,), facts={
            "written_by": int(authors[i]), "published_year": int(published[i])}, details={
            "genre": _GENRES[int(rng.integers(len(_GENRES)))],
            "work_kind": _WORK_KINDS[int(rng.integers(len(_WORK_KINDS)))]}))
    return tuple(out)


def _write_jsonl(path: Path, records: Iterator[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
