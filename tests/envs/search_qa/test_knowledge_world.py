"""The procedural knowledge world: determinism, splits, unguessability, answerability."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from thinkgym.envs.search_qa.knowledge import KnowledgeWorld, WorldConfig, build_world
from thinkgym.envs.search_qa.questions import PATHS, QTYPES, parse_question
from thinkgym.envs.search_qa.schema import FACTS, read_fact
from thinkgym.errors import ConfigError
from thinkgym.rewards import normalize_answer


@pytest.fixture(scope="module")
def world() -> KnowledgeWorld:
    return build_world(WorldConfig())


@pytest.fixture(scope="module")
def questions(world: KnowledgeWorld) -> dict[str, list]:
    return {s: world.questions(s, 600) for s in ("train", "test", "easy")}


# -- determinism ------------------------------------------------------------------------
def test_same_config_same_world_and_questions() -> None:
    a, b = KnowledgeWorld(WorldConfig(num_passages=300, seed=4)), KnowledgeWorld(
        WorldConfig(num_passages=300, seed=4))
    assert [p.contents for p in a.passages] == [p.contents for p in b.passages]
    assert a.questions("test", 50) == b.questions("test", 50)


def test_other_seed_other_world() -> None:
    a, b = KnowledgeWorld(WorldConfig(num_passages=300, seed=4)), KnowledgeWorld(
        WorldConfig(num_passages=300, seed=5))
    assert {e.name for e in a.entities}.isdisjoint({e.name for e in b.entities}) or (
        len({e.name for e in a.entities} & {e.name for e in b.entities}) < 5)
    assert [q.text for q in a.questions("train", 20)] != [q.text for q in b.questions("train", 20)]


def test_question_is_reproducible_by_index(world: KnowledgeWorld) -> None:
    batch = world.questions("train", 30)
    assert world.question("train", 17) == batch[17]
    assert world.questions("train", 5, start=10) == batch[10:15]


@pytest.mark.parametrize("n", [100, 1000, 5000])
def test_size_is_configurable(n: int) -> None:
    w = KnowledgeWorld(WorldConfig(num_passages=n, seed=1))
    assert len(w.passages) == len(w.entities) == n
    assert {p.id for p in w.passages} == set(range(n))
    w.questions("test", 20)  # every split can draw questions even in small worlds
    w.questions("easy", 20)


@pytest.mark.parametrize(("field", "value"), [("num_passages", 99), ("num_passages", 10**6),
                                              ("seed", -1), ("test_fraction", 0.9)])
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        WorldConfig(**{field: value})


def test_unknown_split_and_bad_index_raise(world: KnowledgeWorld) -> None:
    with pytest.raises(ConfigError, match="split"):
        world.question("dev", 0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="index"):
        world.question("train", -1)


# -- splits -----------------------------------------------------------------------------
def test_question_types_are_mixed_and_easy_is_single_hop(questions: dict) -> None:
    for split in ("train", "test"):
        counts = Counter(q.qtype for q in questions[split])
        assert set(counts) == set(QTYPES)
        assert min(counts.values()) > 0.15 * len(questions[split])
    assert {q.qtype for q in questions["easy"]} == {"single_hop"}
    assert {len(p) for p in PATHS["three_hop"]} == {3}


def test_splits_are_disjoint(world: KnowledgeWorld, questions: dict) -> None:
    train_texts = {q.text for q in questions["train"] + questions["easy"]}
    assert train_texts.isdisjoint({q.text for q in questions["test"]})
    # Test questions start from held-out entities; train ones only read train entities.
    for q in questions["test"]:
        assert world.is_test_entity[q.supporting_ids[0]]
    for q in questions["train"] + questions["easy"]:
        assert not world.is_test_entity[list(q.supporting_ids)].any()


def test_first_fact_of_a_test_question_is_never_read_by_train(world: KnowledgeWorld,
                                                             questions: dict) -> None:
    read_in_train = set()
    for q in questions["train"] + questions["easy"]:
        for chain, subject in _fact_subjects(q):
            read_in_train.add((subject, chain))
    for q in questions["test"]:
        for chain, subject in _fact_subjects(q)[:1]:
            assert (subject, chain) not in read_in_train


def _fact_subjects(q) -> list[tuple[str, int]]:
    if q.comparison is None:
        return list(zip(q.chains[0].facts, q.supporting_ids, strict=True))
    a, b, ba, bb = q.supporting_ids
    rel, attr = q.chains[0].facts[0], q.comparison.attribute
    return [(rel, a), (rel, b), (attr, ba), (attr, bb)]


# -- unguessability ---------------------------------------------------------------------
def test_no_answer_appears_in_its_question(questions: dict) -> None:
    for qs in questions.values():
        for q in qs:
            norm_q = normalize_answer(q.text)
            for a in q.answers:
                assert a.lower() not in q.text.lower()
                assert f" {normalize_answer(a)} " not in f" {norm_q} "


def test_answers_are_spread_out(questions: dict) -> None:
    # The best constant guess gets ~1% of a split, and at most a few percent of the
    # distinct questions asking for one fact (relations are balanced: equal fan-in).
    for qs in (questions["train"], questions["test"]):
        by_type: dict[str, Counter] = {}
        by_fact: dict[tuple[str, str], Counter] = {}
        for q in qs:
            by_type.setdefault(q.qtype, Counter())[normalize_answer(q.answers[0])] += 1
        for q in {q.text: q for q in qs}.values():
            key = (q.qtype, q.comparison.attribute if q.comparison else q.chains[0].facts[-1])
            by_fact.setdefault(key, Counter())[normalize_answer(q.answers[0])] += 1
        for counts in by_type.values():
            assert max(counts.values()) / sum(counts.values()) <= 0.03, counts.most_common(3)
        for key, counts in by_fact.items():
            total = sum(counts.values())
            if total >= 30:
                assert max(counts.values()) / total <= 0.1, (key, counts.most_common(3))


def test_names_are_unique_fictional_words(world: KnowledgeWorld) -> None:
    words = [w for e in world.entities if e.kind != "work" for w in e.name.split()
             if e.kind != "organisation" or w == e.name.split()[0]]
    assert len(words) == len(set(words))
    assert len({e.name for e in world.entities}) == len(world.entities)
    common = {"london", "paris", "john", "smith", "river", "mountain"}
    assert not common & {w.lower() for w in words}


def test_years_are_uniform_enough(world: KnowledgeWorld) -> None:
    births = np.array([e.facts["birth_year"] for e in world.entities if e.kind == "person"])
    hist, _ = np.histogram(births, bins=7, range=(1600, 1951))
    assert hist.min() > 0.5 * hist.mean()


# -- answerability ----------------------------------------------------------------------
def test_supporting_passages_hold_every_fact(world: KnowledgeWorld, questions: dict) -> None:
    for qs in questions.values():
        for q in qs:
            for fact, subject in _fact_subjects(q):
                text = world.passages[subject].text
                value = read_fact(fact, text)
                assert value == world.value_text(subject, fact), (fact, text)
            if q.comparison is None:
                last_fact, last = q.chains[0].facts[-1], q.supporting_ids[-1]
                assert normalize_answer(read_fact(last_fact, world.passages[last].text) or "") \
                    in {normalize_answer(a) for a in q.answers}


def test_reader_reads_every_fact_of_every_entity(world: KnowledgeWorld) -> None:
    for e in world.entities:
        for fact in e.facts:
            assert read_fact(fact, world.passages[e.id].text) == world.value_text(e.id, fact)


def test_parse_question_recovers_the_plan(questions: dict) -> None:
    for qs in questions.values():
        for q in qs:
            assert parse_question(q.text) == q.plan()
    assert parse_question("What is the capital of France?") is None


def test_every_fact_is_asked_somewhere() -> None:
    asked = {p[-1] for p in PATHS["single_hop"]}
    assert asked == set(FACTS)


# -- export -----------------------------------------------------------------------------
def test_export_round_trips_through_the_tools_loaders(tmp_path, world: KnowledgeWorld) -> None:
    from thinkgym.tools import load_corpus, load_qa

    corpus = load_corpus(world.write_corpus(tmp_path / "corpus.jsonl"))
    assert len(corpus) == len(world.passages)
    assert corpus[5].contents == world.passages[5].contents
    assert corpus[5].contents.startswith(f'"{world.entities[5].name}"\n')
    items = load_qa(world.write_qa(tmp_path / "qa.jsonl", "test", 25))
    expected = world.questions("test", 25)
    assert [i.question for i in items] == [q.text for q in expected]
    assert [tuple(i.golden_answers) for i in items] == [q.answers for q in expected]
    first = json.loads((tmp_path / "qa.jsonl").read_text().splitlines()[0])
    assert first["metadata"]["supporting_ids"] == list(expected[0].supporting_ids)
