"""ToolUse-v0: your tools, your tasks, your verifier, over the multi-turn JSON tool-call protocol.

* :mod:`~thinkgym.envs.tool_use.env` — ``ToolUseEnv`` and its config, task loading;
* :mod:`~thinkgym.envs.tool_use.verifiers` — ``VERIFIERS`` (answer checkers by name);
* :mod:`~thinkgym.envs.tool_use.task_sets` — ``TASK_SETS`` (named task sets, e.g.
  ``tasks="ctm_puzzles"``) and :mod:`~thinkgym.envs.tool_use.ctm_puzzles` (questions a
  bundled CTM answers through the ``ctm_think`` tool).
"""

from __future__ import annotations

from thinkgym.envs.tool_use.env import (
    DEFAULT_REWARDS,
    ToolUseConfig,
    ToolUseCorrectness,
    ToolUseEnv,
    demo_tasks,
    load_tasks,
)
from thinkgym.envs.tool_use.task_sets import TASK_SETS, TaskSet
from thinkgym.envs.tool_use.verifiers import VERIFIERS, Verifier

__all__ = ["DEFAULT_REWARDS", "TASK_SETS", "VERIFIERS", "TaskSet", "ToolUseConfig",
           "ToolUseCorrectness", "ToolUseEnv", "Verifier", "demo_tasks", "load_tasks"]
