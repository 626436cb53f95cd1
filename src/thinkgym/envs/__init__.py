"""thinkgym environments, registered with Gymnasium on ``import thinkgym``.

Entry points are strings, so registration imports no environment module: the
cost of an env (torch, FAISS, ...) is paid only by ``gym.make`` of that env.

One sub-package per environment: ``<env>/env.py`` holds the env class and its config,
beside its world, tasks and scoring; ``common/`` holds what several text envs share.
To add an environment, add its sub-package and append an :class:`EnvEntry` to ``ENVS``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

__all__ = ["ENVS", "EnvEntry", "register_envs"]


@dataclass(frozen=True)
class EnvEntry:
    """One registered environment."""

    id: str
    """Gymnasium id, ``Name-vN``."""
    entry_point: str
    """``module:Class``."""
    description: str
    """One line for ``thinkgym envs``."""
    text_observations: bool = False
    """Observations are strings: async vector envs need ``shared_memory=False``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Default constructor arguments."""
    max_episode_steps: int | None = None
    """TimeLimit, if any (most envs end by their own budgets instead)."""


ENVS: tuple[EnvEntry, ...] = ()

ENVS += (
    EnvEntry("CTMThink-v0", "thinkgym.envs.ctm_think.env:CTMThinkEnv",
             "thinking as an action: let a Continuous Thought Machine think 1/2/8 more ticks "
             "or answer, under a tick budget"),
    EnvEntry("ToolCall-v0", "thinkgym.envs.tool_call.env:ToolCallEnv",
             "store tools (search, inventory, orders, calculator) as JSON calls; faults to "
             "recover from", text_observations=True),
    EnvEntry("Reasoning-v0", "thinkgym.envs.reasoning.env:ReasoningEnv",
             "generated arithmetic/algebra/word problems (difficulty 1-5), answer in \\boxed{}",
             text_observations=True),
    EnvEntry("SearchQA-v0", "thinkgym.envs.search_qa.env:SearchQAEnv",
             "search-or-answer QA over a procedural fictional world (Search-R1 protocol, "
             "offline FAISS retrieval)", text_observations=True),
    EnvEntry("ToolUse-v0", "thinkgym.envs.tool_use.env:ToolUseEnv",
             "your tools (names, FunctionTools, LangChain tools, typed functions), your tasks "
             "and verifier, JSON tool calls over turns", text_observations=True),
)

# Optional extra: listed only when reasoning-gym is installed (find_spec imports nothing).
if importlib.util.find_spec("reasoning_gym") is not None:
    ENVS += (
        EnvEntry("ReasoningGym-v0", "thinkgym.envs.reasoning.reasoning_gym_adapter:ReasoningGymEnv",
                 "any reasoning-gym dataset by name, scored by its own scorer",
                 text_observations=True),
    )


def register_envs() -> None:
    """Register every entry in ``ENVS`` with Gymnasium (idempotent)."""
    for entry in ENVS:
        if entry.id in gym.registry:
            continue
        gym.register(
            id=entry.id,
            entry_point=entry.entry_point,
            kwargs=dict(entry.kwargs),
            max_episode_steps=entry.max_episode_steps,
        )


def entry_for(env_id: str) -> EnvEntry | None:
    """The thinkgym entry of ``env_id``, or None for an env that is not ours."""
    return next((e for e in ENVS if e.id == env_id), None)
