"""ToolCall-v0: JSON tool use in a generated store, with injected faults to recover from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thinkgym.envs.common.text_env import TextEnv
from thinkgym.envs.common.tool_turns import (
    FORMAT_PROTOCOL,
    CallLog,
    CallRunner,
    FaultConfig,
    FaultInjector,
    Penalties,
    check_faults,
)
from thinkgym.envs.tool_call.scoring import (
    EPISODE_METRICS,
    WorldSnapshot,
    episode_metrics,
    reward_components,
    verify,
)
from thinkgym.envs.tool_call.store import StoreConfig, StoreWorld, generate_world
from thinkgym.envs.tool_call.store_tasks import TASK_KINDS, StoreTask, generate_task
from thinkgym.envs.tool_call.store_tools import build_prompt, make_store_tools
from thinkgym.errors import ConfigError, EnvStateError, config_from_kwargs
from thinkgym.protocols import RewardInput, ToolCallRecord
from thinkgym.rewards import Composer, RewardSpec
from thinkgym.tools.resolve import build_tool_set

__all__ = ["DEFAULT_FAULTS", "FaultConfig", "ToolCallConfig", "ToolCallEnv"]

DEFAULT_FAULTS: dict[str, FaultConfig] = {
    "search_product": FaultConfig(error_rate=0.1, timeout_rate=0.05),
    "check_inventory": FaultConfig(error_rate=0.1, timeout_rate=0.05),
    "create_order": FaultConfig(error_rate=0.1, timeout_rate=0.05),
    "calculator": FaultConfig(error_rate=0.1, timeout_rate=0.05, outage_rate=0.1),
}
"""Default fault injection: transient faults on every tool, outages only for the calculator
(whose fallback, doing the arithmetic yourself, always exists)."""

TOOL_NAMES = ("search_product", "check_inventory", "create_order", "calculator")


@dataclass(frozen=True)
class ToolCallConfig:
    """Arguments of :class:`ToolCallEnv` (all keyword arguments of ``gym.make``)."""

    store: StoreConfig = field(default_factory=StoreConfig)
    """Size of the generated store (a dict of StoreConfig fields is accepted)."""
    task_kinds: tuple[str, ...] = TASK_KINDS
    """Task kinds an episode is drawn from (uniformly); see ``store_tasks``."""
    faults: Mapping[str, FaultConfig] = field(default_factory=lambda: dict(DEFAULT_FAULTS))
    """Tool name -> injected faults (dicts of FaultConfig fields accepted; ``{}``: none); user
    tools may be named too. The defaults apply to whichever store tools are offered."""
    tools: Sequence[Any] | None = None
    """Replaces the tool set: store tool names pick built-ins, other entries are user tools
    (registry names, Tools, LangChain tools, typed functions; see
    :mod:`thinkgym.tools.resolve`). None: the four store tools."""
    extra_tools: Sequence[Any] = ()
    """User tools added to the set; a name clash with a store tool raises, naming both."""
    tool_timeout: float | None = 10.0
    """Seconds per call of a user function or LangChain tool wrapped here (Tools keep their
    own)."""
    max_turns: int = 8
    """Agent turns per episode; the episode is truncated after the last one."""
    max_calls_per_turn: int = 4
    """Calls executed per turn; further ``<tool_call>`` blocks are refused (one message) with a
    penalty each."""
    malformed_penalty: float = -0.2
    """Per ``<tool_call>`` whose JSON cannot be repaired or lacks name/arguments."""
    no_action_penalty: float = -0.2
    """Per turn with neither a ``<tool_call>`` nor an ``<answer>`` (or an unclosed tag)."""
    excess_call_penalty: float = -0.1
    """Per call beyond ``max_calls_per_turn`` (not executed)."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    """Overrides of the component weights (see the env docstring's Rewards section)."""
    max_observation_chars: int = 8192
    """Longest observation (the prompt is the longest one)."""
    max_action_chars: int = 4096
    """Longest action; longer actions are cut."""

    def __post_init__(self) -> None:
        if isinstance(self.store, Mapping):
            object.__setattr__(self, "store", StoreConfig(**self.store))
        faults = {k: v if isinstance(v, FaultConfig) else FaultConfig(**v)
                  for k, v in dict(self.faults).items()}
        if self.tools is None and not self.extra_tools:  # else checked against the tool set
            check_faults(faults, list(TOOL_NAMES))
        object.__setattr__(self, "faults", faults)
        object.__setattr__(self, "extra_tools", tuple(self.extra_tools))
        if self.tools is not None:
            object.__setattr__(self, "tools", tuple(self.tools) if not isinstance(
                self.tools, str) else self.tools)
        object.__setattr__(self, "task_kinds", tuple(self.task_kinds))
        bad = [k for k in self.task_kinds if k not in TASK_KINDS]
        if bad or not self.task_kinds:
            raise ConfigError("unknown or empty task kinds", field="task_kinds", got=bad,
                              fix=f"choose from {list(TASK_KINDS)}")
        for name, lo in (("max_turns", 1), ("max_calls_per_turn", 1),
                         ("max_observation_chars", 2048), ("max_action_chars", 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"must be an int >= {lo}", field=name, got=v,
                                  fix=f"pass {name}={getattr(ToolCallConfig, name, lo)}")
        for name in ("malformed_penalty", "no_action_penalty", "excess_call_penalty"):
            if getattr(self, name) > 0:
                raise ConfigError("penalties must be <= 0", field=name, got=getattr(self, name),
                                  fix=f"pass {name}=-0.2 (or 0 to disable)")

    def composer(self) -> Composer:
        """Completion, format, tool efficiency and penalties; evaluation metrics at weight 0."""
        weights = {"task_completion": 1.0, "format": 0.1, "tool_efficiency": 0.5,
                   "action_penalty": 1.0, **dict.fromkeys(EPISODE_METRICS, 0.0)}
        return Composer(RewardSpec(weights=weights).override(self.reward_weights),
                        instances=reward_components())


class ToolCallEnv(TextEnv):
    """Pick the right tool, fill its JSON arguments, chain calls, recover from failures.

    ## Description
    Each episode draws a store (products with categories and prices, stock per
    location, customers, orders) and a task needing 0, 1, 2 or 3 tool calls: look
    up a price, check stock, compute a total, place an order (possibly only if
    enough stock exists), or answer from the prompt alone. The prompt lists the
    store facts, the tools' JSON schemas and the protocol. Tools fail now and then
    (injected errors, timeouts, calculator outages, drawn from the episode seed):
    retrying or falling back is part of the task.

    ## Action Space
    Text (``max_action_chars``). Per turn the agent writes any number of
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (up to
    ``max_calls_per_turn`` are run, in order) and/or ``<answer>...</answer>``,
    optionally after ``<think>...</think>``. Malformed JSON is repaired when the
    slip is common (trailing commas, single quotes, unquoted keys, code fences,
    Python literals, ...; see :mod:`thinkgym.envs.common.call_repair`).

    ## Observation Space
    Text (``max_observation_chars``). ``reset``: the prompt. ``step``: one
    ``<tool_response>{"name": ..., "content": ...}</tool_response>`` (or
    ``{"name": ..., "error": ...}``) per call, each an env span in
    ``info["env_spans"]``; corrective messages use the same tag.

    ## Rewards
    Per turn, through the rewards library (``info["reward_components"]``):
    ``task_completion`` (1.0, at the end: see ``scoring.verify``; orders are
    checked in the world state), ``format`` (0.1, at the end: the ``tool_multi``
    tag protocol with strictly valid JSON, so a repaired call loses it),
    ``tool_efficiency`` (0.5: +0.2 per needed tool within the minimum, -0.5 per
    unneeded tool, -0.1 per call beyond the minimum, -1.0 per failed call the agent
    caused; injected faults are not counted), ``action_penalty`` (1.0: the documented
    penalties below), and at weight 0 the metrics ``tool_name_accuracy``,
    ``arg_exact_match``, ``arg_partial_match``, ``calls_over_min``,
    ``failures_recovered``. Penalties: ``malformed_penalty`` (-0.2) per unrepairable
    call, ``no_action_penalty`` (-0.2) per turn without a call or answer,
    ``excess_call_penalty`` (-0.1) per call over ``max_calls_per_turn``.

    ## Starting State
    World, task and fault stream drawn from ``self.np_random`` (the world and task
    do not depend on the fault settings).

    ## Episode End
    Terminated by an ``<answer>`` (calls in the same turn run first). Truncated
    after ``max_turns`` turns. ``info["metrics"]`` then holds the evaluation.
    ``info["task"]`` (at reset and at the end) holds the task's plan and expected
    answer: privileged, for evaluation and the scripted baselines, never shown to
    the agent.

    ## Arguments
    See :class:`ToolCallConfig`. User tools: ``extra_tools=[...]`` adds to the store
    tools (a name clash raises, naming both); ``tools=[...]`` replaces the set, where
    store tool names pick the built-ins. A user tool the task does not need counts as
    a wrong tool in ``tool_efficiency``.

    ## Version History
    * v0: initial version.

    Example::

        >>> import json
        >>> import gymnasium as gym
        >>> import thinkgym
        >>> env = gym.make("ToolCall-v0", faults={}, task_kinds=("price_lookup",))
        >>> prompt, info = env.reset(seed=0)
        >>> name = info["task"]["question"].removeprefix("What is the price of the ")[:-1]
        >>> call = {"name": "search_product", "arguments": {"query": name}}
        >>> obs, r, term, trunc, info = env.step(f"<tool_call>{json.dumps(call)}</tool_call>")
        >>> price = json.loads(obs[len("<tool_response>"):-len("</tool_response>")])
        >>> price = price["content"][0]["price"]
        >>> obs, r, term, trunc, info = env.step(f"<answer>{price}</answer>")
        >>> term, info["metrics"]["task_completed"], info["metrics"]["arg_exact_match"]
        (True, 1.0, 1.0)
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.config = config_from_kwargs(ToolCallConfig, "ToolCall-v0", kwargs)
        super().__init__(max_observation_chars=self.config.max_observation_chars,
                         max_action_chars=self.config.max_action_chars, render_mode=render_mode)
        self.composer = self.config.composer()
        self.world: StoreWorld = generate_world(np.random.default_rng(0), self.config.store)
        self.tools = build_tool_set(make_store_tools(lambda: self.world), self.config.tools,
                                    self.config.extra_tools, env="ToolCall-v0",
                                    timeout=self.config.tool_timeout)
        faults = dict(self.config.faults)
        if faults == DEFAULT_FAULTS:  # the defaults follow the offered store tools
            faults = {k: v for k, v in faults.items() if k in self.tools}
        self.faults = check_faults(faults, list(self.tools))
        self._runner = CallRunner(self.tools, emit=self.emit,
                                  max_observation_chars=self.config.max_observation_chars,
                                  max_calls_per_turn=self.config.max_calls_per_turn)
        self._penalties = Penalties(self.config.malformed_penalty,
                                    self.config.no_action_penalty,
                                    self.config.excess_call_penalty)
        self.task: StoreTask | None = None

    # -- episode ----------------------------------------------------------------------------
    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        world_seed, fault_seed = (int(s) for s in self.np_random.integers(2**63, size=2))
        world_rng = np.random.default_rng(world_seed)
        self.world = generate_world(world_rng, self.config.store)
        self.task = generate_task(self.world, world_rng, kinds=self.config.task_kinds)
        self._start = WorldSnapshot.of(self.world)
        self._faults = FaultInjector(self.faults, np.random.default_rng(fault_seed))
        self._calls: list[CallLog] = []
        self._turn = 0
        prompt = build_prompt(self.world, self.tools, self.task.question)
        return prompt, {"task": self._task_info()}

    def _current_task(self) -> StoreTask:
        if self.task is None:
            raise EnvStateError("no task before reset()", fix="call reset() first")
        return self.task

    def _task_info(self) -> dict[str, Any]:
        task = self._current_task()
        return {"kind": task.kind, "question": task.question, "min_calls": task.min_calls,
                "answer": task.answer,
                "calls": [{"name": c.name, "arguments": dict(c.arguments)} for c in task.calls]}

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self._turn += 1
        turn = self._runner.run_turn(action, self._faults, self._penalties)
        self._calls.extend(turn.calls)
        terminated = turn.answer is not None
        truncated = not terminated and self._turn >= self.config.max_turns
        return self._finish(turn.observation, list(turn.calls), turn.answer, turn.penalty,
                            terminated, truncated)

    def _finish(self, obs: str, new_logs: list[CallLog], answer: str | None, penalty: float,
                terminated: bool, truncated: bool) -> tuple[str, float, bool, bool, dict]:
        task = self._current_task()
        done = terminated or truncated
        info: dict[str, Any] = {"turn": self._turn, "calls": [dataclasses.asdict(c)
                                                               for c in new_logs]}
        metadata: dict[str, Any] = {"penalty": penalty}
        if done:
            completed = verify(task, self.world, self._start, answer)
            metrics = episode_metrics(task, self._calls, completed)
            info["metrics"] = metrics
            info["task"] = self._task_info()
            metadata.update(metrics)
        needed = {c.name for c in task.calls}
        caused = [c for c in new_logs if not c.injected]
        prior = sum(not c.injected for c in self._calls) - len(caused)
        records = tuple(ToolCallRecord(c.name, dict(c.arguments), ok=c.ok, error=c.error,
                                       expected=c.name in needed) for c in caused)
        inp = RewardInput(
            completion=self.transcript.text, prompt=self._prompt, answer=answer,
            references=(task.answer,) if task.answer else (),
            protocol=FORMAT_PROTOCOL, env_spans=tuple(self.transcript.env_spans),
            tool_calls=records, prior_tool_calls=prior, min_tool_calls=task.min_calls,
            steps_used=self._turn, step_budget=self.config.max_turns, done=done,
            truncated=truncated, metadata=metadata)
        result = self.composer.score(inp, turn=self._turn - 1)
        info["reward_components"] = result.components
        return obs, result.total, terminated, truncated, info
