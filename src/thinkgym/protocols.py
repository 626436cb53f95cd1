"""The shared contracts that rewards, tools, environments and trainers implement.

* :class:`RewardInput` — everything a reward component may look at for one turn or
  one episode (frozen, so a component cannot change what the next one sees).
* :class:`RewardComponent` — ``name`` plus ``__call__(RewardInput) -> float | None``;
  ``None`` means "not applicable here" (e.g. a tool-efficiency reward in an episode
  without tools) and is kept apart from a real 0.0.
* :class:`Tool` — ``name``, ``description``, JSON-schema ``parameters`` and
  ``__call__(**kwargs) -> str``; failures raise :class:`thinkgym.errors.ToolError`.
* :class:`ToolCallRecord` — one tool call as an environment saw it, for the
  tool-cost rewards and the ledger.

Environments fill what they know and leave the rest at the defaults; components
that need a field that is absent return ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

__all__ = ["RewardComponent", "RewardInput", "Tool", "ToolCallRecord"]


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call made by the agent, as the environment executed it."""

    name: str
    """Tool name the agent asked for (may be unknown to the env)."""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    """Arguments after parsing (and repair, if the env repaired them)."""
    ok: bool = True
    """False if the call raised a ToolError (unknown tool, bad args, timeout, fault)."""
    error: str | None = None
    """The error message rendered to the agent when ``ok`` is False."""
    expected: bool | None = None
    """Env's verdict: was this the right tool for the task? None if the env cannot say."""
    output: str | None = None
    """What the tool returned (text), when the env passes it on; None otherwise."""


@dataclass(frozen=True)
class RewardInput:
    """The data of one turn or one finished episode that reward components score.

    Field groups: text (``prompt``, ``completion``), answers (``answer``,
    ``references``), steps (``valid_steps``, ``invalid_steps``, ``goal_reached``,
    ``steps_used``, ``step_budget``), tokens (``num_tokens``, ``reference_tokens``),
    tools and search (``tool_calls``, ``min_tool_calls``, ``num_searches``,
    ``prior_searches``, ``prior_tool_calls``), and
    episode end (``done``, ``truncated``). ``protocol`` names the tag protocol the
    completion should follow (``"search"``, ``"tool"``, ``"boxed"``, ``"ctm"``).
    ``metadata`` carries anything else an env or a user component wants to pass.
    """

    completion: str = ""
    """Agent-written text of the turn (or the whole episode, env segments included)."""
    prompt: str = ""
    """The task prompt or question."""
    answer: str | None = None
    """The answer the agent gave, already extracted from its tags; None if none given."""
    references: tuple[str, ...] = ()
    """Gold answers and their aliases."""
    protocol: str | None = None
    """Tag protocol the completion must follow; None if no format applies."""
    env_spans: tuple[tuple[int, int], ...] = ()
    """Character spans of env-inserted text inside ``completion`` (retrieved passages etc.)."""
    valid_steps: int = 0
    """Number of reasoning steps the env judged valid."""
    invalid_steps: int = 0
    """Number of reasoning steps the env judged invalid."""
    goal_reached: bool = False
    """The task was solved."""
    steps_used: int = 0
    """Steps (turns, ticks) used so far."""
    step_budget: int | None = None
    """Maximum steps allowed; used to decide whether completion was *early*."""
    num_tokens: int | None = None
    """Tokens (or ticks) the agent spent."""
    reference_tokens: int | None = None
    """Reference length the token reward compares against."""
    tool_calls: tuple[ToolCallRecord, ...] = ()
    """Tool calls made, in order."""
    min_tool_calls: int | None = None
    """Fewest calls that solve the task (0 when no tool is needed)."""
    num_searches: int = 0
    """Search calls made."""
    prior_searches: int = 0
    """Search calls made in earlier turns of this episode (0 when scoring a whole episode)."""
    prior_tool_calls: int = 0
    """Tool calls made in earlier turns of this episode (0 when scoring a whole episode);
    per-turn scoring uses it to tell which calls exceed ``min_tool_calls``."""
    done: bool = True
    """The episode ended (terminated or truncated); False for a mid-episode turn."""
    truncated: bool = False
    """The episode was cut off by a budget or a length limit."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Free-form extras; frozen into a read-only mapping."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))
        object.__setattr__(self, "references", tuple(self.references))
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        object.__setattr__(self, "env_spans", tuple(tuple(s) for s in self.env_spans))


@runtime_checkable
class RewardComponent(Protocol):
    """A named reward term. Return ``None`` when the term does not apply.

    Errors propagate (the composer re-raises them with the component's name); a
    component must never turn its own failure into 0.0.
    """

    @property
    def name(self) -> str:
        """Component name (also its metric name)."""
        ...

    def __call__(self, inp: RewardInput) -> float | None: ...


@runtime_checkable
class Tool(Protocol):
    """A callable tool with a JSON-schema signature.

    ``parameters`` is a JSON schema object (``{"type": "object", "properties": ...,
    "required": [...]}``). ``__call__`` returns text for the agent and raises
    :class:`thinkgym.errors.ToolError` on failure.
    """

    @property
    def name(self) -> str:
        """Tool name the agent calls."""
        ...

    @property
    def description(self) -> str:
        """What the tool does (shown to the agent)."""
        ...

    @property
    def parameters(self) -> Mapping[str, Any]:
        """JSON schema of the arguments."""
        ...

    def __call__(self, **kwargs: Any) -> str: ...
