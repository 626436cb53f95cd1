"""SearchQA-v0 as a choice among four macro-actions: the search-or-answer decision, learnable.

:class:`SearchQAMacroAdapter` is a :class:`~thinkgym.agents.macro.MacroAdapter`. It
reads only what the env shows (the prompt, then ``<information>`` blocks) and
keeps a small *reader* state: the question's hop structure (from the question
templates, as :class:`~thinkgym.agents.search_qa.OracleAgent` does — never the
answer) and every passage seen so far. From that state it renders four moves as
valid protocol text:

* ``search_entity`` — search the entity whose fact is needed next (the start
  entity, then each bridge entity as the passages reveal it);
* ``search_entity_kind`` — the same entity with its kind ("Veltra city"), the
  retry that helps when a bare name ranks look-alikes first;
* ``search_question`` — search the question text;
* ``answer`` — answer with the value the hops have led to, or, if the hops are
  not finished, with the first right-typed span of the last top passage
  (:class:`~thinkgym.agents.search_qa.RetrieveThenAnswerAgent`'s rule).

What a policy must learn is the control: when the facts read so far answer the
question, answer; otherwise search, and re-query differently after a miss — all
under a per-search cost. The features (:data:`FEATURES`) describe that state; one of
them, ``answer_ready``, is 1 exactly when the hops read so far answer the question, so
the answer-or-search decision is a threshold on that feature (the rule
``answer if answer_ready else search_entity`` scores EM 1.0; see
``benchmarks/reinforce_searchqa.py``). A learner here learns control over the reader,
not reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from thinkgym.agents.search_qa import RetrieveThenAnswerAgent, question_of
from thinkgym.envs.search_qa import parse_action, read_passages
from thinkgym.envs.search_qa.questions import parse_question
from thinkgym.envs.search_qa.schema import FACTS, read_fact
from thinkgym.errors import ConfigError

__all__ = ["ACTIONS", "FEATURES", "SearchQAMacroAdapter"]

ACTIONS = ("search_entity", "search_entity_kind", "search_question", "answer")
"""Macro-action names, in index order."""

FEATURES = (
    "bias", "turn_fraction", "search_fraction", "budget_exhausted", "answer_ready",
    "lookups_needed", "lookups_done_fraction", "last_search_progressed", "misses_in_a_row",
    "has_guess", "question_parsed", "is_comparison", "top_title_in_question",
    *(f"last_{a}" for a in ACTIONS))
"""Feature names, in vector order (all in [0, 1])."""


def _act(thought: str, tag: str, content: str) -> str:
    return f"<think>{thought}</think>\n<{tag}>{content}</{tag}>"


class SearchQAMacroAdapter:
    """Features and protocol-text actions for SearchQA-v0 (see the module docstring).

    Args:
        search_budget: the env's ``search_budget`` (scales a feature; default 6).
        max_turns: the env's ``max_turns`` (scales a feature; default 8).
    """

    action_names = ACTIONS
    num_features = len(FEATURES)

    def __init__(self, search_budget: int = 6, max_turns: int = 8) -> None:
        for name, value in (("search_budget", search_budget), ("max_turns", max_turns)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError("must be an int >= 1", field=name, got=value,
                                  fix="pass the env's config value")
        self.search_budget, self.max_turns = search_budget, max_turns
        self.reset()

    @classmethod
    def for_env(cls, env: Any) -> SearchQAMacroAdapter:
        """An adapter scaled to ``env``'s (a SearchQA-v0 env's) budgets."""
        config = env.unwrapped.config
        return cls(search_budget=config.search_budget, max_turns=config.max_turns)

    def reset(self) -> None:
        self.question = ""
        self.plan: dict[str, Any] | None = None
        self.seen: dict[str, str] = {}
        self.turn = self.searches = self.misses = 0
        self.last_action: int | None = None
        self.progressed = False
        self.top_title = ""
        self._reader = RetrieveThenAnswerAgent()
        self._last_observation = ""

    # -- state ------------------------------------------------------------------------------
    def _fact(self, entity: str, fact: str) -> str | None:
        text = self.seen.get(entity)
        return read_fact(fact, text) if text is not None else None

    def _walk(self) -> tuple[tuple[str, str] | None, int, int, str | None]:
        """(next (entity, fact) to look up, lookups done, lookups needed, answer if done)."""
        plan = self.plan
        if plan is None:
            return None, 0, 1, None
        if plan["comparison"] is None:
            facts = plan["chains"][0]["facts"]
            entity = plan["chains"][0]["start"]
            for done, fact in enumerate(facts):
                value = self._fact(entity, fact)
                if value is None:
                    return (entity, fact), done, len(facts), None
                entity = value
            return None, len(facts), len(facts), entity
        chains, attribute = plan["chains"], plan["comparison"]["attribute"]
        total = 2 * len(chains)
        bridges: list[str] = []
        for chain in chains:
            value = self._fact(chain["start"], chain["facts"][0])
            if value is None:
                return (chain["start"], chain["facts"][0]), len(bridges), total, None
            bridges.append(value)
        values: list[int] = []
        for bridge in bridges:
            value = self._fact(bridge, attribute)
            if value is None:
                return (bridge, attribute), len(bridges) + len(values), total, None
            values.append(int(value.replace(",", "")))
        pick = min if plan["comparison"]["pick"] == "min" else max
        return None, total, total, bridges[values.index(pick(values))]

    def _guess(self) -> str | None:
        if not self._last_observation:
            return None
        parsed = parse_action(self._reader.act(self._last_observation))
        return parsed.content if parsed.content and parsed.content != "unknown" else None

    # -- adapter ----------------------------------------------------------------------------
    def features(self, observation: Any) -> np.ndarray:
        text = str(observation)
        if not self.question:
            self.question = question_of(text)
            self.plan = parse_question(self.question) if self.question else None
            self._reader.act(text)  # the reader learns the question
        elif "<information>" in text:
            _, before, _, _ = self._walk()
            passages = read_passages(text)
            for _, title, body in passages:
                self.seen.setdefault(title, body)
            self.top_title = passages[0][1] if passages else ""
            self._last_observation = text if passages else self._last_observation
            if self.last_action is not None and ACTIONS[self.last_action].startswith("search"):
                self.progressed = self._walk()[1] > before
                self.misses = 0 if self.progressed else self.misses + 1
        _, done, total, answer = self._walk()
        last = [float(self.last_action == i) for i in range(len(ACTIONS))]
        return np.array([
            1.0, self.turn / self.max_turns, min(1.0, self.searches / self.search_budget),
            float(self.searches >= self.search_budget), float(answer is not None),
            min(1.0, total / 4), done / total, float(self.progressed), min(1.0, self.misses / 3),
            float(self._guess() is not None), float(self.plan is not None),
            float(self.plan is not None and self.plan["comparison"] is not None),
            float(bool(self.top_title) and self.top_title in self.question), *last],
            dtype=np.float32)

    def render(self, action: int) -> str:
        if isinstance(action, bool) or not 0 <= int(action) < len(ACTIONS):
            raise ConfigError("unknown macro-action", field="action", got=action,
                              fix=f"use 0 .. {len(ACTIONS) - 1} ({', '.join(ACTIONS)})")
        name = ACTIONS[int(action)]
        self.turn += 1
        self.last_action = int(action)
        need, _, _, answer = self._walk()
        if name == "answer":
            value = answer or self._guess() or "unknown"
            return _act("I can answer now.", "answer", value)
        self.searches += 1
        query = self.question or "?"
        if need is not None and name == "search_entity":
            query = need[0]
        elif need is not None and name == "search_entity_kind":
            query = f"{need[0]} {FACTS[need[1]].subject}"
        return _act("I need to look this up.", "search", query)

    def success(self, info: Mapping[str, Any], episode_return: float) -> bool:
        components = info.get("reward_components") or {}
        em = components.get("exact_match") or {}
        return float(em.get("raw") or 0.0) >= 1.0
