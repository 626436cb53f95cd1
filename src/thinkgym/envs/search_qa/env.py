"""SearchQA-v0: decide when to search and when to answer, over a procedural knowledge world.

The Search-R1 protocol (think, then search or answer; retrieved passages come
back inside ``<information>``) on an offline corpus: the passages of a
:class:`~thinkgym.envs.search_qa.knowledge.KnowledgeWorld`, searched by the tools
package's :class:`~thinkgym.tools.Retriever` (FAISS + MiniLM, cached on disk).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from thinkgym.envs.common.call_repair import CallParseError, parse_tool_call
from thinkgym.envs.common.text_env import TextEnv
from thinkgym.envs.common.tool_turns import (
    CallLog,
    CallRunner,
    FaultConfig,
    FaultInjector,
    ToolFailures,
    check_faults,
    tool_specs_json,
)
from thinkgym.envs.search_qa.knowledge import KnowledgeWorld, WorldConfig, build_world
from thinkgym.envs.search_qa.questions import SPLITS, Question, Split
from thinkgym.errors import (
    ConfigError,
    EnvStateError,
    ToolError,
    check_int_fields,
    config_from_kwargs,
)
from thinkgym.protocols import RewardInput, ToolCallRecord
from thinkgym.rewards import FORMAT_PROTOCOLS, Composer, RewardSpec, StepReward, TagProtocol
from thinkgym.tools.builtins import make_search_tool
from thinkgym.tools.retrieval import Retriever, RetrieverConfig

__all__ = ["DEFAULT_REWARDS", "ParsedAction", "SearchQAConfig", "SearchQAEnv", "build_prompt",
           "parse_action", "read_passages"]

DEFAULT_REWARDS = RewardSpec(weights={"exact_match": 1.0, "f1": 0.0, "lenient_match": 0.0,
                                      "format": 0.2, "search_cost": 1.0, "invalid_action": 1.0})
"""Component weights; override any of them with ``reward_weights`` (see the env's Rewards)."""

TOOL_REWARDS = {"tool_efficiency": 0.2, "tool_failures": 0.0}
"""Added to :data:`DEFAULT_REWARDS` when the env offers user tools."""

TOOLS_PROTOCOL = "search_tool"
if TOOLS_PROTOCOL not in FORMAT_PROTOCOLS:
    # Search-R1 plus one JSON tool call as an alternative action: T((SI|CR)T)*A.
    FORMAT_PROTOCOLS.register(TOOLS_PROTOCOL, TagProtocol(
        TOOLS_PROTOCOL, {"think": "T", "search": "S", "information": "I", "tool_call": "C",
                         "tool_response": "R", "answer": "A"},
        episode=r"T((SI|CR)T)*A", turn=r"T((SI|CR)T)*(SI?|CR?)",
        env_tags=frozenset({"information", "tool_response"}),
        json_tags=frozenset({"tool_call"})))

PROMPT = (
    "Answer the question. Reason inside <think> and </think> every time before you act. "
    "To look something up, write <search> query </search>: a search engine returns the "
    "{top_k} most relevant passages between <information> and </information>. You may "
    "search at most {budget} times. When you know the answer, write only the answer "
    "inside <answer> and </answer>, for example <answer> Lisbon </answer>.\n"
    "{tools}Question: {question}\n"
)
TOOLS_TEXT = (
    "Instead of a search you may call one of these tools: write <tool_call>{{\"name\": "
    "\"<tool name>\", \"arguments\": {{...}}}}</tool_call> (one action per turn); the result "
    "comes back between <tool_response> and </tool_response>.\nTools (JSON schemas):\n"
    "{schemas}\n"
)


@dataclass(frozen=True)
class SearchQAConfig:
    """Arguments of :class:`SearchQAEnv` (all keyword arguments of ``gym.make``)."""

    num_passages: int = 1200
    """Size of the knowledge world (entities = passages), 100 .. 200,000."""
    world_seed: int = 0
    """Seed of the world (the corpus); episode seeds only pick questions."""
    split: Split = "train"
    """``"train"``, ``"test"`` (held-out start entities) or ``"easy"`` (single-hop, train)."""
    num_questions: int = 10_000
    """Questions per split: ``reset`` draws an index in ``[0, num_questions)``."""
    top_k: int = 3
    """Passages returned per search."""
    max_turns: int = 8
    """Agent turns per episode; truncated after the last one."""
    search_budget: int = 6
    """Searches per episode; a search beyond it is refused with a penalty."""
    invalid_action_penalty: float = -0.2
    """Raw value of ``invalid_action`` per malformed action or over-budget search (<= 0)."""
    reward_weights: Mapping[str, float] = field(default_factory=dict)
    """Overrides of :data:`DEFAULT_REWARDS` weights (0.0 logs a component only)."""
    reward_gates: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    """Gates, e.g. ``{"exact_match": "format"}``: EM counts only for a well-formed episode."""
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    """Encoder, index kind and cache of the retriever (a dict of its fields is accepted)."""
    tools: Sequence[Any] = ()
    """User tools the agent may call with ``<tool_call>`` as an alternative action (registry
    names, Tools, LangChain tools, typed functions). ``<search>`` is the task's own tool and
    stays: here ``tools`` adds, like ``extra_tools``; a tool called ``search`` raises."""
    extra_tools: Sequence[Any] = ()
    """More user tools (same rules as ``tools``)."""
    faults: Mapping[str, FaultConfig] = field(default_factory=dict)
    """User tool name -> injected faults (dicts of FaultConfig fields accepted)."""
    tool_timeout: float | None = 10.0
    """Seconds per call of a user function or LangChain tool wrapped here."""
    max_observation_chars: int = 4096
    """Longest observation (prompt or ``<information>`` block)."""
    max_action_chars: int = 2048
    """Longest action; longer actions are cut."""

    def __post_init__(self) -> None:
        if isinstance(self.retriever, Mapping):
            object.__setattr__(self, "retriever", RetrieverConfig(**self.retriever))
        object.__setattr__(self, "reward_weights", MappingProxyType(dict(self.reward_weights)))
        object.__setattr__(self, "reward_gates", MappingProxyType(dict(self.reward_gates)))
        for name in ("tools", "extra_tools"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ConfigError("must be a list of tools", field=name, got=value,
                                  fix=f"pass e.g. {name}=[my_function]")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "faults", MappingProxyType({
            k: v if isinstance(v, FaultConfig) else FaultConfig(**v)
            for k, v in dict(self.faults).items()}))
        if self.split not in SPLITS:
            raise ConfigError("unknown split", field="split", got=self.split,
                              fix=f"use one of {list(SPLITS)}")
        check_int_fields(self, {"num_questions": 1, "top_k": 1, "max_turns": 1,
                                "search_budget": 0, "max_observation_chars": 1024,
                                "max_action_chars": 64})
        if isinstance(self.invalid_action_penalty, bool) or not isinstance(
                self.invalid_action_penalty, int | float) or self.invalid_action_penalty > 0:
            raise ConfigError("must be a number <= 0", field="invalid_action_penalty",
                              got=self.invalid_action_penalty, fix="pass e.g. -0.2 (0 disables)")
        self.world_config  # noqa: B018  (validates num_passages and world_seed now)

    @property
    def world_config(self) -> WorldConfig:
        """The :class:`WorldConfig` of the corpus."""
        return WorldConfig(num_passages=self.num_passages, seed=self.world_seed)

    def composer(self, *, with_tools: bool = False) -> Composer:
        """EM, F1 (logged), strict format, search cost and the invalid-action penalty; with
        user tools also :data:`TOOL_REWARDS`."""
        penalty = StepReward(valid_bonus=0.0, early_bonus=0.0,
                             invalid_penalty=float(self.invalid_action_penalty),
                             name="invalid_action")
        base = DEFAULT_REWARDS.override(TOOL_REWARDS) if with_tools else DEFAULT_REWARDS
        spec = base.override(self.reward_weights, self.reward_gates)
        return Composer(spec, instances=[penalty, ToolFailures()])


# -- the agent's action -----------------------------------------------------------------
_TAG = re.compile(r"<(/?)(think|search|answer|information)>")
_TAG_TOOLS = re.compile(r"<(/?)(think|search|answer|information|tool_call|tool_response)>")


@dataclass(frozen=True)
class ParsedAction:
    """What one agent turn asks for: a search, an answer, or an error to report."""

    kind: Literal["search", "answer", "tool_call"] | None
    content: str = ""
    error: str | None = None


def parse_action(text: str, *, tool_calls: bool = False) -> ParsedAction:
    """Read one turn: ``<think>...</think>`` (optional here) then one ``<search>`` or ``<answer>``.

    With ``tool_calls`` (an env with user tools), ``<tool_call>`` is a third kind of
    action and an agent-written ``<tool_response>`` is an error like ``<information>``.

    Malformed turns (no action tag, both tags or two actions, an empty action, an
    unclosed, stray or nested tag, an agent-written ``<information>``) give
    ``kind=None`` and an ``error`` saying what was wrong. Text outside the tags is
    tolerated here; the strict ``format`` reward judges it at the end.

    >>> parse_action("<think>look it up</think><search> Veltra </search>")
    ParsedAction(kind='search', content='Veltra', error=None)
    >>> parse_action("<search>a</search><answer>b</answer>").error
    'more than one action in a turn (2)'
    >>> parse_action('<tool_call>{"name": "f"}</tool_call>', tool_calls=True).kind
    'tool_call'
    """
    actions: list[tuple[str, str]] = []
    open_tag, content_at = None, 0
    for m in (_TAG_TOOLS if tool_calls else _TAG).finditer(text):
        closing, tag = m.group(1) == "/", m.group(2)
        if tag in ("information", "tool_response"):
            return ParsedAction(None, error=f"<{tag}> is written by the environment only")
        if open_tag is None and closing:
            return ParsedAction(None, error=f"stray </{tag}> without an opening tag")
        if open_tag is None:
            open_tag, content_at = tag, m.end()
        elif closing and tag == open_tag:
            if tag != "think":
                actions.append((tag, text[content_at:m.start()].strip()))
            open_tag = None
        else:
            return ParsedAction(None, error=f"<{tag}> inside <{open_tag}> (tags cannot nest)")
    if open_tag is not None:
        return ParsedAction(None, error=f"unclosed <{open_tag}> tag")
    if not actions:
        return ParsedAction(None, error="no <search>, <tool_call> or <answer> tag" if tool_calls
                            else "no <search> or <answer> tag")
    if len(actions) > 1:
        return ParsedAction(None, error=f"more than one action in a turn ({len(actions)})")
    kind, content = actions[0]
    if not content:
        return ParsedAction(None, error=f"empty <{kind}>")
    return ParsedAction(kind, content)  # type: ignore[arg-type]


_DOC_LINE = re.compile(r"^Doc \d+ \(id: (?P<id>[^)]*)\): (?P<body>.*)$", re.MULTILINE)
_TITLED = re.compile(r'^"(?P<title>[^"]*)" (?P<text>.*)$')


def read_passages(observation: str) -> list[tuple[str, str, str]]:
    """``(id, title, text)`` of each passage in an ``<information>`` observation, in rank order.

    >>> read_passages('<information>Doc 1 (id: 7): "Veltra" Veltra is a city.</information>')
    [('7', 'Veltra', 'Veltra is a city.')]
    """
    body = observation.split("<information>", 1)[-1].split("</information>", 1)[0]
    out = []
    for m in _DOC_LINE.finditer(body):
        titled = _TITLED.match(m["body"])
        title, text = (titled["title"], titled["text"]) if titled else ("", m["body"])
        out.append((m["id"], title, text))
    return out


def build_prompt(question: str, top_k: int, budget: int, tool_schemas: str | None = None,
                 ) -> str:
    """The task prompt for ``question`` (``tool_schemas``: the user tools' JSON, if any)."""
    tools = TOOLS_TEXT.format(schemas=tool_schemas) if tool_schemas else ""
    return PROMPT.format(question=question, top_k=top_k, budget=budget, tools=tools)


@functools.lru_cache(maxsize=4)
def _retriever(world: WorldConfig, config: RetrieverConfig) -> Retriever:
    # One retriever per (world, settings) per process: vector-env copies share it.
    return Retriever(list(build_world(world).corpus_records()), config)


_CORRECTION = ("\nInvalid action: {error}. Write your reasoning in <think> ... </think>, then "
               "exactly one of <search> query </search> or <answer> answer </answer>.\n")
_CORRECTION_TOOLS = ("\nInvalid action: {error}. Write your reasoning in <think> ... </think>, "
                     "then exactly one of <search> query </search>, <tool_call>{{\"name\": ..., "
                     "\"arguments\": {{...}}}}</tool_call> or <answer> answer </answer>.\n")
_OVER_BUDGET = ("\n<information>\nNo search: all {budget} searches of this episode are used. "
                "Answer now with <answer> ... </answer>.\n</information>\n")


class SearchQAEnv(TextEnv):
    """Answer questions about a fictional world by searching its passages (Search-R1 protocol).

    ## Description
    The corpus is a :class:`~thinkgym.envs.search_qa.knowledge.KnowledgeWorld` of
    ``num_passages`` passages about fictional people, cities, countries,
    organisations and works (names built from syllables, so nothing can be
    recalled from pre-training). Each episode asks one question — single-hop,
    two- or three-hop bridge, or a comparison — whose answer is unguessable
    without retrieval. The agent decides when to search and when to answer;
    every search costs a little, so needless searches are discouraged.

    ## Action Space
    Text of up to ``max_action_chars`` characters: ``<think> ... </think>``, then
    exactly one of ``<search> query </search>`` or ``<answer> text </answer>``.
    Malformed turns — no action tag, two actions (``<search>`` and ``<answer>``,
    or two searches), an empty action, an unclosed, stray or nested tag, or an
    agent-written ``<information>`` — get a corrective observation and the
    ``invalid_action`` penalty, and use up the turn. With user tools (``tools`` /
    ``extra_tools``), ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` is a
    third action; its result (or error) comes back in ``<tool_response>``, and the
    format protocol becomes ``search_tool`` (``T((SI|CR)T)*A``).

    ## Observation Space
    Text of up to ``max_observation_chars`` characters. ``reset`` returns the
    prompt (protocol + question). A search returns
    ``<information>`` with the ``top_k`` passages, one per line
    (``Doc 1 (id: 17): "Title" text``; :func:`read_passages` parses it); a search
    beyond ``search_budget`` returns an ``<information>`` block saying so; a
    malformed turn returns the correction; an answer returns ``""``. Every
    env-written segment is an env span: ``info["env_spans"]`` holds their
    ``(start, end)`` in ``info["transcript"]`` (mask them out of the loss).

    ## Rewards
    Per turn, from the rewards library; ``info["reward_components"]`` gives each
    component's raw value, weight and contribution. Default weights
    (:data:`DEFAULT_REWARDS`, override with ``reward_weights``):

    * ``exact_match`` (1.0, final turn): 1 if the normalised answer equals a gold
      answer or alias (SQuAD normalisation; hedged answers score 0);
    * ``f1`` (0.0: logged only, final turn): token F1 against the best alias;
    * ``lenient_match`` (0.0: logged only, final turn): 1 if the normalised answer
      span contains a gold answer as whole words (substring credit: a diagnostic,
      never a default reward);
    * ``format`` (0.2, final turn): 1 if the whole transcript follows the strict
      tag sequence ``T(SIT)*A`` (think, then search + information + think ...,
      then answer; nothing outside tags, no empty tags); a truncated episode or
      any malformed turn fails it;
    * ``search_cost`` (1.0): -0.1 per executed search;
    * ``invalid_action`` (1.0): ``invalid_action_penalty`` (-0.2) per malformed
      turn or search beyond the budget;
    * with user tools only: ``tool_efficiency`` (0.2: -1.0 per failed call the agent
      caused) and ``tool_failures`` (0.0: failed calls, injected faults included).

    ## Starting State
    The world is fixed by ``num_passages`` and ``world_seed``; ``reset(seed)``
    draws question ``index`` uniformly from ``[0, num_questions)`` of ``split``
    with ``self.np_random`` (``options={"index": i}`` picks one).

    ## Episode End
    Terminated by a well-formed ``<answer>``. Truncated after ``max_turns``
    turns without one (the answer then scores 0). The final ``info`` carries
    ``answer`` (= ``agent_answer``, the agent's answer span or None), ``gold_answers``
    and ``question_type``.

    ## Arguments
    See :class:`SearchQAConfig`; pass its fields to ``gym.make``, e.g.
    ``gym.make("SearchQA-v0", split="test", top_k=5)``; user tools with
    ``extra_tools=[fn]`` (see ``docs/tools.md``). The first ``make`` of a
    world embeds its passages (seconds for the default 1,200; cached on disk
    under ``$THINKGYM_CACHE`` or ``~/.cache/thinkgym`` afterwards).

    ## Version History
    * v0: initial version.

    Example (a two-step episode; ``tests/envs/search_qa/test_search_qa.py`` runs it)::

        >>> import gymnasium as gym
        >>> import thinkgym
        >>> env = gym.make("SearchQA-v0", split="easy")  # doctest: +SKIP
        >>> prompt, info = env.reset(seed=0)  # doctest: +SKIP
        >>> info["question_type"]  # doctest: +SKIP
        'single_hop'
        >>> obs, r, term, trunc, info = env.step(  # doctest: +SKIP
        ...     "<think>I need to look this up.</think><search>Dravonia</search>")
        >>> obs.strip().startswith("<information>"), round(r, 2), term  # doctest: +SKIP
        (True, -0.1, False)
        >>> obs, r, term, trunc, info = env.step(  # doctest: +SKIP
        ...     "<think>Not found.</think><answer>Lisbon</answer>")
        >>> term, info["reward_components"]["exact_match"]["raw"]  # doctest: +SKIP
        (True, 0.0)
    """

    def __init__(self, render_mode: str | None = None, config: SearchQAConfig | None = None,
                 **kwargs: Any) -> None:
        self.config = config_from_kwargs(SearchQAConfig, "SearchQA-v0", kwargs, config)
        super().__init__(max_observation_chars=self.config.max_observation_chars,
                         max_action_chars=self.config.max_action_chars, render_mode=render_mode)
        from thinkgym.tools.resolve import build_tool_set

        self.tools = build_tool_set({}, self.config.tools, self.config.extra_tools,
                                    env="SearchQA-v0", timeout=self.config.tool_timeout,
                                    reserved={"search": "the <search> action"})
        self.faults = check_faults(self.config.faults, list(self.tools))
        self._runner = CallRunner(self.tools, emit=self.emit,
                                  max_observation_chars=self.config.max_observation_chars,
                                  max_calls_per_turn=1)
        self._faults: FaultInjector | None = None
        self.composer = self.config.composer(with_tools=bool(self.tools))
        self.world: KnowledgeWorld = build_world(self.config.world_config)
        self.retriever = _retriever(self.config.world_config, self.config.retriever)
        self.search_tool = make_search_tool(self.retriever, k=self.config.top_k)
        self.question: Question | None = None
        self._options: dict[str, Any] = {}
        self._turn = 0
        self._searches = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        self._options = dict(options or {})
        return super().reset(seed=seed, options=options)

    # -- episode ----------------------------------------------------------------------------
    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        index = self._options.get("index")
        if index is None:
            index = int(self.np_random.integers(self.config.num_questions))
        elif isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError("options['index'] must be a non-negative int", field="index",
                              got=index, fix="pass options={'index': 0}")
        self.question = self.world.question(self.config.split, index)
        self._turn, self._searches, self._prior_calls = 0, 0, 0
        schemas = None
        if self.tools:  # drawn only with user tools: the default episodes stay as they were
            fault_seed = int(self.np_random.integers(2**63))
            self._faults = FaultInjector(self.faults, np.random.default_rng(fault_seed))
            schemas = tool_specs_json(self.tools)
        prompt = build_prompt(self.question.text, self.config.top_k, self.config.search_budget,
                              schemas)
        return prompt, {"question": self.question.text, "question_id": self.question.id,
                        "question_type": self.question.qtype, "split": self.config.split,
                        "index": index, "search_budget": self.config.search_budget,
                        "max_turns": self.config.max_turns}

    def _current_question(self) -> Question:
        if self.question is None:
            raise EnvStateError("no question before reset()", fix="call reset() first")
        return self.question

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        question = self._current_question()
        turn_start = len(self.transcript.text) - len(action)
        self._turn += 1
        parsed = parse_action(action, tool_calls=bool(self.tools))
        searched, invalid, answer, terminated = 0, 0, None, False
        calls: tuple[CallLog, ...] = ()
        if parsed.kind == "tool_call":
            call = parse_tool_call(parsed.content)
            if isinstance(call, CallParseError):
                parsed = ParsedAction(None, error=f"malformed tool call: {call.problem}")
            else:
                log, obs = self._runner.execute(call.name, call.arguments, call.repairs,
                                                self._faults)
                calls = (log,)
        if parsed.kind is None:
            invalid = 1
            template = _CORRECTION_TOOLS if self.tools else _CORRECTION
            obs = self.emit(template.format(error=parsed.error))
        elif parsed.kind == "tool_call":
            pass
        elif parsed.kind == "answer":
            answer, terminated, obs = parsed.content, True, ""
        elif self._searches >= self.config.search_budget:
            invalid = 1
            obs = self.emit(_OVER_BUDGET.format(budget=self.config.search_budget))
        else:
            searched = 1
            self._searches += 1
            obs = self.emit(self._information(parsed.content))
        truncated = not terminated and self._turn >= self.config.max_turns
        done = terminated or truncated
        score = self.composer.score(self._reward_input(
            question, turn_start, answer=answer, searched=searched, invalid=invalid, done=done,
            truncated=truncated, calls=calls), turn=self._turn - 1)
        self._prior_calls += sum(not c.injected for c in calls)
        info: dict[str, Any] = {
            "reward_components": score.components, "turn": self._turn,
            "action": parsed.kind or "invalid", "action_error": parsed.error,
            "searches_used": self._searches, "search_budget": self.config.search_budget}
        if self.tools:
            info["calls"] = [dataclasses.asdict(c) for c in calls]
        if parsed.kind == "search" and not searched:
            info["action_error"] = "search budget exhausted"
        if done:
            info.update(answer=answer, agent_answer=answer, gold_answers=list(question.answers),
                        question_type=question.qtype, question_id=question.id)
        return obs, score.total, terminated, truncated, info

    def _information(self, query: str) -> str:
        try:
            text = self.search_tool(query=query)
        except ToolError as exc:  # rendered for the agent, never a crash
            text = f"Search failed: {exc}"
        head, tail = "\n<information>\n", "\n</information>\n"
        room = self.config.max_observation_chars - len(head) - len(tail)
        return head + text[:room] + tail  # the closing tag always survives clipping

    def _reward_input(self, question: Question, turn_start: int, *, answer: str | None,
                      searched: int, invalid: int, done: bool, truncated: bool,
                      calls: tuple[CallLog, ...] = ()) -> RewardInput:
        # Final turn: the whole transcript (the strict format judges the episode).
        # Mid-episode: this turn's text, with its env spans shifted to match.
        start = 0 if done else turn_start
        spans = tuple((s - start, e - start) for s, e in self.transcript.env_spans if s >= start)
        return RewardInput(
            completion=self.transcript.text[start:], prompt=question.text, answer=answer,
            references=question.answers if done else (),
            protocol=TOOLS_PROTOCOL if self.tools else "search", env_spans=spans,
            invalid_steps=invalid, steps_used=self._turn, step_budget=self.config.max_turns,
            num_searches=searched, prior_searches=self._searches - searched, done=done,
            truncated=truncated, tool_calls=tuple(
                ToolCallRecord(c.name, dict(c.arguments), ok=c.ok, error=c.error)
                for c in calls if not c.injected),
            prior_tool_calls=self._prior_calls,
            metadata={"tool_failures": sum(not c.ok for c in calls)} if self.tools else {})
