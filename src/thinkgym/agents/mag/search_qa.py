"""SearchQA-v0 episodes where "stop at step k" has a well-defined outcome, and a MAG agent.

* :class:`HopSearchAgent` — a scripted searcher that never answers on its own: each
  turn it searches the entity its hop reader needs next (the question's start
  entity, then each bridge entity as the passages reveal it) and, once the hops are
  resolved, the resolved entity itself (a check search that looks like any other
  hop). After every search it holds a *candidate answer*: the hops' value if they
  are resolved, else the first right-typed span of the top passage.
* :func:`log_episode` — plays one episode of ``budget`` searches and records the
  transcript pieces and, per step, the candidate and whether it is right (the gold
  answers are read here, for labels only; they never enter the transcript).
* :class:`MAGSearchAgent` — the same searcher, stopped by a :class:`MAGPolicy`:
  after each ``<information>`` block the detection channel reads the new tokens
  (its memory persists within the episode) and, when it says stop, the agent
  answers with its current candidate.

The searcher's query and the transcript never encode whether the hops are resolved
(every search is "search an entity name"; the thought text is constant), so the
detection channel has to read the question and the passages to decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thinkgym.agents.search_qa_macro import SearchQAMacroAdapter
from thinkgym.errors import ConfigError

__all__ = ["HaltingEpisode", "HopSearchAgent", "MAGSearchAgent", "log_episode"]

THOUGHT = "<think>I need to look this up.</think>\n"


def _search(query: str) -> str:
    return f"{THOUGHT}<search>{query}</search>"


def _answer(value: str) -> str:
    return f"<think>I can answer now.</think>\n<answer>{value}</answer>"


class HopSearchAgent:
    """Searches hop by hop, forever; :meth:`candidate` is its answer so far."""

    def __init__(self, search_budget: int = 6, max_turns: int = 8) -> None:
        self.reader = SearchQAMacroAdapter(search_budget=search_budget, max_turns=max_turns)

    def reset(self) -> None:
        self.reader.reset()

    def observe(self, observation: str) -> None:
        """Read the prompt or an ``<information>`` block."""
        self.reader.features(observation)

    def candidate(self) -> str | None:
        """The hops' value when resolved, else the top passage's first right-typed span."""
        _, _, _, answer = self.reader._walk()
        return answer or self.reader._guess()

    def search_action(self) -> str:
        """The next search: the entity needed next, else the resolved entity (a check)."""
        need, _, _, answer = self.reader._walk()
        self.reader.turn += 1
        self.reader.searches += 1
        self.reader.last_action = 0
        query = need[0] if need is not None else (answer or self.reader.question or "?")
        return _search(query)

    def answer_action(self) -> str:
        return _answer(self.candidate() or "unknown")

    def act(self, observation: str) -> str:
        self.observe(observation)
        return self.search_action()


@dataclass
class HaltingEpisode:
    """One logged episode: the prompt, the (action, observation) steps, candidates, labels."""

    seed: int
    prompt: str
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    candidates: list[str | None] = field(default_factory=list)
    """The candidate answer held after each step."""
    correct: list[bool] = field(default_factory=list)
    """Whether that candidate is right (exact match against the gold answers)."""
    num_hops: int = 0
    """Lookups the question needs (for reporting only)."""
    start_entities: list[str] = field(default_factory=list)
    """Start entities of the question's chains (entity-disjoint validation splits)."""

    @property
    def num_steps(self) -> int:
        return len(self.actions)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HaltingEpisode:
        return cls(**data)


def log_episode(env: Any, seed: int, budget: int | None = None) -> HaltingEpisode:
    """Play SearchQA-v0 seed ``seed`` with :class:`HopSearchAgent` for ``budget`` searches."""
    from thinkgym.rewards.correctness import exact_match

    config = env.unwrapped.config
    budget = config.search_budget if budget is None else budget
    if not 1 <= budget <= min(config.search_budget, config.max_turns):
        raise ConfigError("budget must fit the env's search budget and turns", field="budget",
                          got=budget, fix=f"use 1 .. {min(config.search_budget, config.max_turns)}")
    agent = HopSearchAgent(config.search_budget, config.max_turns)
    prompt, _ = env.reset(seed=seed)
    question = env.unwrapped.question
    gold = list(question.answers)
    episode = HaltingEpisode(seed=seed, prompt=prompt,
                             start_entities=[c.start for c in question.chains])
    observation = prompt
    for _ in range(budget):
        action = agent.act(observation)
        observation, _, terminated, truncated, _ = env.step(action)
        agent.observe(observation)
        episode.actions.append(action)
        episode.observations.append(observation)
        candidate = agent.candidate()
        episode.candidates.append(candidate)
        episode.correct.append(bool(candidate) and exact_match(candidate, gold) == 1.0)
        if terminated or truncated:
            break
    episode.num_hops = agent.reader._walk()[2]
    return episode


class MAGSearchAgent:
    """:class:`HopSearchAgent` whose stop decision is a :class:`MAGPolicy`'s detection channel.

    Args:
        policy: a trained :class:`~thinkgym.agents.mag.policy.MAGPolicy` (its LM's
            tokenizer is ``policy.tokenizer``).
        search_budget: the env's search budget.
        max_turns: the env's ``max_turns``.
        budget: steps before it must answer (default: the smaller of the two); the
            step fraction the head reads is steps / budget, as in :func:`log_episode`.

    :attr:`decisions` lists the :class:`~thinkgym.agents.mag.policy.HaltDecision` of
    each step of the current episode.
    """

    def __init__(self, policy: Any, search_budget: int = 6, max_turns: int = 8,
                 budget: int | None = None) -> None:
        self.policy = policy
        self.searcher = HopSearchAgent(search_budget, max_turns)
        self.budget = min(search_budget, max_turns - 1) if budget is None else budget
        self.decisions: list[Any] = []

    def reset(self) -> None:
        self.searcher.reset()
        self.policy.reset()
        self.decisions = []
        self._last_action = ""

    def act(self, observation: str) -> str:
        self.searcher.observe(observation)
        if not self._last_action:  # the prompt: nothing to stop yet
            self.policy.start(observation)
        else:
            steps = len(self.decisions) + 1
            decision = self.policy.step(self._last_action, observation, steps / self.budget)
            self.decisions.append(decision)
            if decision.stop or steps >= self.budget:
                return self.searcher.answer_action()
        self._last_action = self.searcher.search_action()
        return self._last_action
