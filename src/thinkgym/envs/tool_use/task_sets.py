"""Named task sets for ToolUse-v0: ``gym.make("ToolUse-v0", tasks="ctm_puzzles")``.

A :class:`TaskSet` bundles what a task set needs to be played as intended: a builder of
its tasks per split (held out by content), the tools it is about, its verifier and the
reward weights it adds over ToolUse-v0's defaults. ToolUse-v0 resolves ``tasks=NAME`` here
before it treats a string as a JSONL path; explicit ``tools``, ``verifier`` and
``rewards`` arguments still win.

    >>> TASK_SETS.get("ctm_puzzles").tools
    ('ctm_think',)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from thinkgym.registry import Registry

__all__ = ["TASK_SETS", "Split", "TaskSet"]

Split = Literal["train", "test"]


@dataclass(frozen=True)
class TaskSet:
    """A bundled task set and how ToolUse-v0 plays it."""

    name: str
    build: Callable[..., list[dict[str, Any]]] | str
    """``(split, seed) -> tasks``, or ``"module:function"`` imported on first use."""
    tools: tuple[str, ...]
    """Default tools (when ``tools`` is not passed)."""
    verifier: str = "answer_match"
    """Default verifier (when ``verifier`` is not passed)."""
    rewards: Mapping[str, float] = field(default_factory=dict)
    """Reward weights over ToolUse-v0's defaults (``rewards`` overrides them)."""

    def tasks(self, split: Split = "train", seed: int = 0) -> list[dict[str, Any]]:
        """The tasks of ``split`` (deterministic in ``seed``)."""
        build = self.build
        if isinstance(build, str):
            module, _, attr = build.partition(":")
            build = getattr(importlib.import_module(module), attr)
        return build(split=split, seed=seed)


TASK_SETS: Registry[TaskSet] = Registry("task set")
"""Task sets by name."""

TASK_SETS.register("ctm_puzzles", TaskSet(
    "ctm_puzzles", "thinkgym.envs.tool_use.ctm_puzzles:ctm_puzzles", tools=("ctm_think",),
    verifier="exact_match", rewards={"ctm_tick_cost": 1.0}))
