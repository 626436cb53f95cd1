"""ToolUse-v0: any tool set, any task set, any verifier: the multi-turn JSON tool-call protocol.

Tools come from :func:`thinkgym.tools.resolve_tools` (registry names, Tools, LangChain
tools, typed functions), tasks from :func:`load_tasks` (a list of dicts, a JSONL path, any
iterable such as a ``datasets.Dataset``) or a named task set
(:mod:`thinkgym.envs.tool_use.task_sets`, e.g. ``tasks="ctm_puzzles"``), verifiers from
:mod:`thinkgym.envs.tool_use.verifiers`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from thinkgym.envs.common.text_env import TextEnv
from thinkgym.envs.common.tool_turns import (
    FORMAT_PROTOCOL,
    PROTOCOL_TEXT,
    ActionPenalty,
    CallRunner,
    FaultConfig,
    FaultInjector,
    Penalties,
    ToolFailures,
    check_faults,
    tool_specs_json,
)
from thinkgym.envs.tool_use.task_sets import TASK_SETS, TaskSet
from thinkgym.envs.tool_use.verifiers import Verifier, VerifierLike, resolve_verifier
from thinkgym.errors import ConfigError, EnvStateError, check_int_fields, config_from_kwargs
from thinkgym.protocols import RewardInput, ToolCallRecord
from thinkgym.rewards import Composer, RewardSpec

__all__ = ["DEFAULT_REWARDS", "ToolUseConfig", "ToolUseCorrectness", "ToolUseEnv", "demo_tasks",
           "load_tasks"]

DEFAULT_REWARDS = RewardSpec(weights={"correctness": 1.0, "format": 0.1, "tool_efficiency": 0.2,
                                      "action_penalty": 1.0, "tool_failures": 0.0})
"""Component weights; override any of them (or add registered components) with ``rewards``."""

INSTRUCTIONS = "Solve the task. Use the tools when they help."


def demo_tasks(n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Arithmetic a calculator settles (the default task set): ``{"prompt", "answer"}``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b, c = (int(v) for v in rng.integers(100, 999, size=3))
        out.append({"prompt": f"What is {a} * {b} - {c}?", "answer": str(a * b - c)})
    return out


def _read_jsonl(path: Path) -> list[Any]:
    if not path.is_file():
        raise ConfigError("no such task file", field="tasks", got=str(path),
                          fix="pass a JSONL file with one task object per line")
    rows: list[Any] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ConfigError(f"{path}:{n} is not JSON: {exc}", field="tasks",
                                  got=line[:80], fix="write one JSON object per line") from exc
    return rows


def load_tasks(tasks: Any, *, required: Sequence[str] = ()) -> tuple[dict[str, Any], ...]:
    """Tasks as dicts: from a list of dicts, a JSONL path or any iterable of mappings.

    Every task needs a non-empty ``prompt`` string and the ``required`` fields; a miss
    raises :class:`~thinkgym.errors.ConfigError` naming the task index and the field.
    """
    if isinstance(tasks, str | os.PathLike):
        rows = _read_jsonl(Path(tasks))
    elif isinstance(tasks, Mapping) or not isinstance(tasks, Iterable):
        raise ConfigError("tasks must be a list of dicts, a JSONL path or an iterable of dicts",
                          field="tasks", got=type(tasks).__name__,
                          fix="pass e.g. tasks=[{'prompt': 'What is 2+2?', 'answer': '4'}]")
    else:
        rows = list(tasks)
    if not rows:
        raise ConfigError("no tasks", field="tasks", got=tasks, fix="pass at least one task")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ConfigError(f"tasks[{i}] is not a dict", field="tasks", got=row,
                              fix="give each task as {'prompt': ..., ...}")
        for name in ("prompt", *required):
            if name not in row:
                raise ConfigError(f"tasks[{i}] has no field {name!r}", field="tasks",
                                  got=sorted(map(str, row)),
                                  fix=f"add {name!r} to every task (the verifier reads it)"
                                  if name != "prompt" else "add the task text as 'prompt'")
        if not isinstance(row["prompt"], str) or not row["prompt"].strip():
            raise ConfigError(f"tasks[{i}]['prompt'] must be a non-empty string", field="tasks",
                              got=row["prompt"], fix="write the task text there")
        out.append(dict(row))
    return tuple(out)


@dataclass(frozen=True)
class ToolUseCorrectness:
    """The verifier's score of the final answer (0.0 without an answer); None mid-episode.

    Reads the task from ``inp.metadata["task"]``; a failing verifier raises
    :class:`~thinkgym.errors.VerifierError`, never a silent 0.
    """

    verifier: Verifier
    name: str = "correctness"

    def __call__(self, inp: RewardInput) -> float | None:
        if not inp.done:
            return None
        if inp.answer is None:
            return 0.0
        return self.verifier(inp.answer, inp.metadata["task"])


@dataclass(frozen=True)
class ToolUseConfig:
    """Arguments of :class:`ToolUseEnv` (all keyword arguments of ``gym.make``)."""

    tools: Sequence[Any] | None = None
    """The tool set: registry names, Tools (FunctionTool, FallbackTool, ...), LangChain
    ``BaseTool`` s and typed functions, mixed (see :mod:`thinkgym.tools.resolve`). None:
    a named task set's tools, else ``("calculator",)``."""
    extra_tools: Sequence[Any] = ()
    """More tools, added to ``tools`` (a name clash raises, naming both)."""
    tasks: Any = None
    """A list of task dicts, a JSONL path or any iterable of mappings (a ``datasets.Dataset``
    works as is); each has a ``prompt`` and the fields the verifier reads. None: 64
    generated arithmetic tasks (:func:`demo_tasks`). A registered task-set name
    (:data:`~thinkgym.envs.tool_use.task_sets.TASK_SETS`, e.g. ``"ctm_puzzles"``) brings its own
    tasks, default tools, verifier and reward weights."""
    task_split: Literal["train", "test"] | None = None
    """The split of a named task set (None: ``"train"``); only with a task-set name."""
    verifier: VerifierLike | Verifier | None = None
    """A registered name (``exact_match``, ``numeric``, ``answer_match``, ``boxed``,
    ``contains_all``) or a callable ``(answer, task) -> bool | float``. None: a named task
    set's verifier, else ``"answer_match"``."""
    task_fields: tuple[str, ...] = ()
    """Fields every task must have besides ``prompt`` and the verifier's own."""
    rewards: Mapping[str, float] = field(default_factory=dict)
    """Component name -> weight, over :data:`DEFAULT_REWARDS` (registered names allowed)."""
    reward_gates: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    """Gates, e.g. ``{"correctness": "format"}``."""
    faults: Mapping[str, FaultConfig] = field(default_factory=dict)
    """Tool name -> injected faults (dicts of FaultConfig fields accepted)."""
    tool_timeout: float | None = 10.0
    """Seconds per call of a function or LangChain tool wrapped here (Tools keep theirs)."""
    instructions: str = INSTRUCTIONS
    """The first paragraph of the prompt."""
    max_turns: int = 6
    """Agent turns per episode; truncated after the last one."""
    max_calls_per_turn: int = 4
    """Calls run per turn; further ``<tool_call>`` blocks are refused with a penalty each."""
    malformed_penalty: float = -0.2
    """Per ``<tool_call>`` whose JSON cannot be repaired or lacks name/arguments."""
    no_action_penalty: float = -0.2
    """Per turn with neither a ``<tool_call>`` nor an ``<answer>`` (or an unclosed tag)."""
    excess_call_penalty: float = -0.1
    """Per call beyond ``max_calls_per_turn`` (not run)."""
    max_observation_chars: int = 8192
    """Longest observation (the prompt is usually the longest one)."""
    max_action_chars: int = 4096
    """Longest action; longer actions are cut."""

    def __post_init__(self) -> None:
        if self.task_set is None and self.task_split is not None:
            raise ConfigError("task_split applies to a named task set only", field="task_split",
                              got=self.task_split,
                              fix=f"pass tasks=NAME (one of {TASK_SETS.names()}) or drop it")
        if self.task_split not in (None, "train", "test"):
            raise ConfigError("unknown split", field="task_split", got=self.task_split,
                              fix="use 'train' or 'test'")
        if self.tools is None:
            object.__setattr__(self, "tools", self.task_set.tools if self.task_set is not None
                               else ("calculator",))
        for name in ("tools", "extra_tools"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ConfigError("must be a list of tools", field=name, got=value,
                                  fix=f"pass e.g. {name}=['calculator', my_function]")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "task_fields", tuple(self.task_fields))
        object.__setattr__(self, "rewards", MappingProxyType(dict(self.rewards)))
        object.__setattr__(self, "reward_gates", MappingProxyType(dict(self.reward_gates)))
        object.__setattr__(self, "faults", {
            k: v if isinstance(v, FaultConfig) else FaultConfig(**v)
            for k, v in dict(self.faults).items()})
        check_int_fields(self, {"max_turns": 1, "max_calls_per_turn": 1,
                                "max_observation_chars": 1024, "max_action_chars": 64})
        for name in ("malformed_penalty", "no_action_penalty", "excess_call_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v > 0:
                raise ConfigError("penalties must be numbers <= 0", field=name, got=v,
                                  fix=f"pass {name}=-0.2 (or 0 to disable)")
        if self.tool_timeout is not None and not (isinstance(self.tool_timeout, int | float)
                                                  and self.tool_timeout > 0):
            raise ConfigError("must be > 0 seconds or None", field="tool_timeout",
                              got=self.tool_timeout, fix="pass tool_timeout=10.0")

    @property
    def task_set(self) -> TaskSet | None:
        """The named task set ``tasks`` refers to, if it is one."""
        if isinstance(self.tasks, str) and self.tasks in TASK_SETS.names():
            return TASK_SETS.get(self.tasks)
        return None

    @property
    def verifier_spec(self) -> VerifierLike | Verifier:
        """``verifier``, or the task set's, or ``"answer_match"``."""
        if self.verifier is not None:
            return self.verifier
        return self.task_set.verifier if self.task_set is not None else "answer_match"

    def raw_tasks(self) -> Any:
        """The task source: the named set's split, ``tasks``, or :func:`demo_tasks`."""
        if self.task_set is not None:
            return self.task_set.tasks(self.task_split or "train")
        return demo_tasks() if self.tasks is None else self.tasks

    def composer(self, verifier: Verifier) -> Composer:
        """Correctness, format, tool efficiency, penalties; tool failures logged at weight 0."""
        weights = {**(self.task_set.rewards if self.task_set is not None else {}), **self.rewards}
        spec = DEFAULT_REWARDS.override(weights, self.reward_gates)
        return Composer(spec, instances=[ToolUseCorrectness(verifier), ActionPenalty(),
                                         ToolFailures()])


class ToolUseEnv(TextEnv):
    """Solve tasks with your own tools: any tool set, any task set, any verifier.

    ## Description
    Each episode draws one task from ``tasks``. The prompt lists the tools' JSON
    schemas (from type hints and docstrings, or a LangChain tool's pydantic schema)
    and the protocol. The agent calls tools over several turns and finishes with an
    answer, which the ``verifier`` scores against the task. Tools are yours: they may
    fail, hang, return odd types or huge strings; all of that comes back to the
    agent as an observation, and none of it ends the episode.

    ## Action Space
    Text (``max_action_chars``), the ToolCall-v0 protocol: per turn any number of
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (up to
    ``max_calls_per_turn`` run, in order; common JSON slips are repaired) and/or
    ``<answer>...</answer>``, optionally after ``<think>...</think>``.

    ## Observation Space
    Text (``max_observation_chars``). ``reset``: the prompt. ``step``: one
    ``<tool_response>{"name": ..., "content": ...}</tool_response>`` per call, or
    ``{"name": ..., "error": ...}`` when it failed (a raise, a timeout, an injected
    fault, an unknown tool, arguments that fail the schema: the message says how to
    fix it); corrective messages use the same tag. A response longer than its share
    of the budget is cut inside the JSON string. Each is an env span in
    ``info["env_spans"]``.

    ## Rewards
    Per turn, through the rewards library (``info["reward_components"]``; weights in
    :data:`DEFAULT_REWARDS`, override or extend with ``rewards``): ``correctness``
    (1.0, final turn: the verifier's score, 0 without an answer), ``format`` (0.1,
    final turn: the ``tool_multi`` tag protocol, strictly valid JSON), ``tool_efficiency``
    (0.2: -1.0 per failed call the agent caused, i.e. all failures but injected
    faults), ``action_penalty`` (1.0: ``malformed_penalty`` -0.2 per unrepairable
    call, ``no_action_penalty`` -0.2 per turn without a call or answer,
    ``excess_call_penalty`` -0.1 per call over the limit) and ``tool_failures``
    (0.0, a metric: failed calls of the turn, injected faults included).

    ## Starting State
    Task index drawn uniformly with ``self.np_random`` (``options={"index": i}``
    picks one); the fault stream is seeded from it too.

    ## Episode End
    Terminated by an ``<answer>`` (calls in the same turn run first). Truncated after
    ``max_turns`` turns. The final ``info`` has ``answer``, ``correct`` (the
    verifier's score) and ``task`` (the task dict: privileged, never shown to the agent
    beyond its prompt).

    ## Arguments
    See :class:`ToolUseConfig`: ``tools``, ``extra_tools``, ``tasks`` (or a task-set name
    such as ``"ctm_puzzles"`` with ``task_split``), ``verifier``,
    ``rewards``, ``faults``, ``tool_timeout``, ``max_turns``, ...

    ## Version History
    * v0: initial version.

    Example::

        >>> import gymnasium as gym
        >>> import thinkgym
        >>> def add(a: int, b: int) -> int:
        ...     '''Add two integers.'''
        ...     return a + b
        >>> env = gym.make("ToolUse-v0", tools=[add],
        ...                tasks=[{"prompt": "What is 2 + 40?", "answer": "42"}])
        >>> prompt, info = env.reset(seed=0)
        >>> call = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 40}}</tool_call>'
        >>> env.step(call)[0]
        '<tool_response>{"name": "add", "content": 42}</tool_response>'
        >>> obs, reward, terminated, truncated, info = env.step("<answer>42</answer>")
        >>> terminated, info["correct"], round(reward, 2)
        (True, 1.0, 1.1)
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        from thinkgym.tools.resolve import build_tool_set

        self.config = config_from_kwargs(ToolUseConfig, "ToolUse-v0", kwargs)
        super().__init__(max_observation_chars=self.config.max_observation_chars,
                         max_action_chars=self.config.max_action_chars, render_mode=render_mode)
        self.tools = build_tool_set({}, self.config.tools, self.config.extra_tools,
                                    env="ToolUse-v0", timeout=self.config.tool_timeout)
        self.faults = check_faults(self.config.faults, list(self.tools))
        self.verifier = resolve_verifier(self.config.verifier_spec)
        self.tasks = load_tasks(self.config.raw_tasks(),
                                required=(*self.verifier.fields, *self.config.task_fields))
        self.composer = self.config.composer(self.verifier)
        self._runner = CallRunner(self.tools, emit=self.emit,
                                  max_observation_chars=self.config.max_observation_chars,
                                  max_calls_per_turn=self.config.max_calls_per_turn)
        self._penalties = Penalties(self.config.malformed_penalty, self.config.no_action_penalty,
                                    self.config.excess_call_penalty)
        self._tools_json = tool_specs_json(self.tools)
        self._options: dict[str, Any] = {}
        self.task_index: int | None = None
        self._turn = 0
        self._prior_calls = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        self._options = dict(options or {})
        return super().reset(seed=seed, options=options)

    # -- episode ----------------------------------------------------------------------------
    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        index = self._options.get("index")
        if index is None:
            index = int(self.np_random.integers(len(self.tasks)))
        elif isinstance(index, bool) or not isinstance(index, int) or not \
                0 <= index < len(self.tasks):
            raise ConfigError(f"options['index'] must be an int in [0, {len(self.tasks)})",
                              field="index", got=index, fix="pass options={'index': 0}")
        fault_seed = int(self.np_random.integers(2**63))
        self._faults = FaultInjector(self.faults, np.random.default_rng(fault_seed))
        self.task_index, self._turn, self._prior_calls = index, 0, 0
        task = self.tasks[index]
        prompt = (f"{self.config.instructions}\n\nTools (JSON schemas):\n{self._tools_json}\n\n"
                  f"{PROTOCOL_TEXT}\n\nTask: {task['prompt']}\n")
        return prompt, {"task_index": index, "task": dict(task), "max_turns": self.config.max_turns}

    def _current_task(self) -> dict[str, Any]:
        if self.task_index is None:
            raise EnvStateError("no task before reset()", fix="call reset() first")
        return self.tasks[self.task_index]

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        task = self._current_task()
        self._turn += 1
        turn = self._runner.run_turn(action, self._faults, self._penalties)
        terminated = turn.answer is not None
        truncated = not terminated and self._turn >= self.config.max_turns
        done = terminated or truncated
        caused = [c for c in turn.calls if not c.injected]
        inp = RewardInput(
            completion=self.transcript.text, prompt=self._prompt, answer=turn.answer,
            protocol=FORMAT_PROTOCOL, env_spans=tuple(self.transcript.env_spans),
            tool_calls=tuple(ToolCallRecord(c.name, dict(c.arguments), ok=c.ok, error=c.error,
                                            output=c.output) for c in caused),
            prior_tool_calls=self._prior_calls, steps_used=self._turn,
            step_budget=self.config.max_turns, done=done, truncated=truncated,
            metadata={"penalty": turn.penalty, "task": task,
                      "tool_failures": sum(not c.ok for c in turn.calls)})
        self._prior_calls += len(caused)
        score = self.composer.score(inp, turn=self._turn - 1)
        info: dict[str, Any] = {"turn": self._turn, "reward_components": score.components,
                                "calls": [dataclasses.asdict(c) for c in turn.calls]}
        if done:
            info.update(answer=turn.answer, agent_answer=turn.answer, task=dict(task),
                        task_index=self.task_index,
                        correct=score.components["correctness"]["raw"]
                        if "correctness" in score.components else None)
        return turn.observation, score.total, terminated, truncated, info
