"""Scripted baselines for SearchQA-v0: no retrieval, retrieve-then-answer, multi-hop oracle.

All three are :class:`~thinkgym.agents.Policy` objects that see only the text the
env shows them (the prompt, then ``<information>`` blocks); none reads the world.

* :class:`NoRetrievalAgent` answers at once with a guess of the right *type*
  (a fictional name of the asked kind, a year, a population). Its near-zero EM is
  the "unguessable without retrieval" check.
* :class:`RetrieveThenAnswerAgent` searches the question text once and answers
  with the first candidate of the right type in the top passage.
* :class:`OracleAgent` knows the question templates, so it recovers the
  question's structure (start entities and the facts to follow; never the
  answer) with :func:`~thinkgym.envs.search_qa.questions.parse_question`. It then
  searches for every hop's entity, finds that entity's passage among the
  results, and reads the fact with
  :func:`~thinkgym.envs.search_qa.schema.read_fact`.

:func:`run_episode` plays one episode and returns a :class:`EpisodeResult`.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thinkgym.envs.search_qa import read_passages
from thinkgym.envs.search_qa.names import NameGenerator
from thinkgym.envs.search_qa.questions import parse_question
from thinkgym.envs.search_qa.schema import FACTS, read_fact
from thinkgym.errors import ConfigError

__all__ = ["EpisodeResult", "NoRetrievalAgent", "OracleAgent", "RetrieveThenAnswerAgent",
           "answer_kind", "question_of", "run_episode"]

_QUESTION = re.compile(r"^Question: (.*)$", re.MULTILINE)


def question_of(prompt: str) -> str:
    """The question line of a SearchQA prompt ("" if there is none)."""
    found = _QUESTION.findall(prompt)
    return found[-1].strip() if found else ""


def answer_kind(question: str) -> str:
    """What the answer is: an entity kind, ``"year"``, ``"number"`` or ``"unknown"``."""
    plan = parse_question(question)
    if plan is None:
        return "unknown"
    if plan["comparison"] is not None:
        fact = plan["chains"][0]["facts"][0]
    else:
        fact = plan["chains"][0]["facts"][-1]
    spec = FACTS[fact]
    if spec.target is not None:
        return spec.target
    return "number" if fact == "population" else "year"


def _act(thought: str, tag: str, content: str) -> str:
    return f"<think>{thought}</think>\n<{tag}>{content}</{tag}>"


class NoRetrievalAgent:
    """Answers immediately with a type-plausible guess (fresh syllable names, years, numbers)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng([seed, 404])
        self._names = NameGenerator(self._rng)

    def reset(self) -> None:
        """Nothing to forget between episodes."""

    def act(self, observation: str) -> str:
        kind = answer_kind(question_of(observation))
        if kind == "year":
            guess = str(int(self._rng.integers(1600, 2011)))
        elif kind == "number":
            guess = f"{int(self._rng.integers(5_000, 5_000_000)):,}"
        elif kind == "person":
            guess = " ".join(self._names.words(2))
        elif kind == "organisation":
            guess = f"{self._names.words(1)[0]} Society"
        else:
            guess = self._names.words(1)[0]
        return _act("I will answer from memory without searching.", "answer", guess)


_NAME_SPAN = re.compile(r"[A-Z][a-z]+(?: [A-Z][a-z]+)*")
_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d{4,}\b")
_YEAR = re.compile(r"\b\d{3,4}\b")
_NOT_NAMES = frozenset({"The", "It", "Born", "Founded", "Published", "Doc"})


class RetrieveThenAnswerAgent:
    """Searches the question once, answers with the first right-typed span of the top passage.

    The rule: a year question takes the first 3-4 digit number, a population
    question the first large number, a person question the first two-word name,
    anything else the first capitalised name; names that occur in the question or
    are the passage's own title are skipped.
    """

    def __init__(self) -> None:
        self._question = ""

    def reset(self) -> None:
        self._question = ""

    def act(self, observation: str) -> str:
        if not self._question:
            self._question = question_of(observation) or "?"
            return _act("Let me search for the question.", "search", self._question)
        passages = read_passages(observation)
        guess = self._extract(passages[0][1], passages[0][2]) if passages else None
        return _act("The top passage should say it.", "answer", guess or "unknown")

    def _extract(self, title: str, text: str) -> str | None:
        kind = answer_kind(self._question)
        if kind == "year":
            match = _YEAR.search(text)
            return match.group(0) if match else None
        if kind == "number":
            match = _NUMBER.search(text)
            return match.group(0) if match else None
        for span in _NAME_SPAN.findall(text):
            words = span.split()
            while words and words[0] in _NOT_NAMES:
                words = words[1:]
            span = " ".join(words)
            if not span or span == title or span in self._question:
                continue
            if kind == "person" and len(words) != 2:
                continue
            return span
        return None


class OracleAgent:
    """Follows the question's hops by searching each entity and reading the fact from its passage.

    Args:
        retries: extra searches per hop (0, 1 or 2) when the entity's passage is not
            in the results; retries add the entity's kind, then the fact, to the query.
    """

    def __init__(self, retries: int = 2) -> None:
        if isinstance(retries, bool) or retries not in (0, 1, 2):
            raise ConfigError("must be 0, 1 or 2", field="retries", got=retries,
                              fix="pass retries=2 (the default)")
        self.retries = retries
        self._episode: Generator[str, str, None] | None = None

    def reset(self) -> None:
        self._episode = None

    def act(self, observation: str) -> str:
        if self._episode is None:
            self._episode = self._play(question_of(observation))
            return next(self._episode)
        try:
            return self._episode.send(observation)
        except StopIteration:  # acting after the answer: answer again (the env refuses it)
            return _act("I already answered.", "answer", "unknown")

    def _lookup(self, entity: str, fact: str) -> Generator[str, str, str | None]:
        hint = FACTS[fact].name.replace("_", " ")
        # Retries name the entity's kind, then the fact: in large worlds a bare
        # syllable name can rank similar-looking names' passages first.
        queries = [entity, f"{entity} {FACTS[fact].subject}", f"{entity} {hint}"]
        for query in queries[: 1 + self.retries]:
            observation = yield _act(f"I need the {hint} of {entity}.", "search", query)
            for _, title, text in read_passages(observation):
                if title == entity:
                    value = read_fact(fact, text)
                    if value is not None:
                        return value
        return None

    def _play(self, question: str) -> Generator[str, str, None]:
        plan = parse_question(question)
        answer: str | None = None
        if plan is not None and plan["comparison"] is None:
            entity: str | None = plan["chains"][0]["start"]
            for fact in plan["chains"][0]["facts"]:
                entity = (yield from self._lookup(entity, fact)) if entity else None
            answer = entity
        elif plan is not None:
            attribute, pick = plan["comparison"]["attribute"], plan["comparison"]["pick"]
            bridges = []
            for chain in plan["chains"]:
                bridges.append((yield from self._lookup(chain["start"], chain["facts"][0])))
            values: list[int] = []
            for bridge in bridges:
                value = (yield from self._lookup(bridge, attribute)) if bridge else None
                if value is not None:
                    values.append(int(value.replace(",", "")))
            if len(values) == len(bridges) and None not in bridges:
                best = min(values) if pick == "min" else max(values)
                answer = bridges[values.index(best)]
        yield _act("I have followed every hop.", "answer", answer or "unknown")


@dataclass(frozen=True)
class EpisodeResult:
    """One played episode, as the env scored it."""

    question_type: str
    answer: str | None
    gold_answers: tuple[str, ...]
    exact_match: float
    f1: float
    reward: float
    turns: int
    searches: int
    info: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The final step's ``info`` (reward components, transcript, env spans)."""


def run_episode(env: Any, policy: Any, *, seed: int | None = None,
                index: int | None = None) -> EpisodeResult:
    """Play one SearchQA episode with ``policy`` (``index`` picks the question)."""
    policy.reset()
    observation, info = env.reset(seed=seed, options=None if index is None else {"index": index})
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, info = env.step(policy.act(observation))
        total += float(reward)
        done = terminated or truncated
    comps = info["reward_components"]
    return EpisodeResult(
        question_type=info["question_type"], answer=info["answer"],
        gold_answers=tuple(info["gold_answers"]), exact_match=float(comps["exact_match"]["raw"]),
        f1=float(comps["f1"]["raw"]), reward=total, turns=int(info["turn"]),
        searches=int(info["searches_used"]), info=info)
