"""ToolCall-v0: JSON tool use in a generated store, with injected faults to recover from.

* :mod:`~thinkgym.envs.tool_call.env` — ``ToolCallEnv`` and its config;
* :mod:`~thinkgym.envs.tool_call.store` — the store world (products, stock, customers,
  orders), :mod:`~thinkgym.envs.tool_call.store_tasks` (tasks and their minimal plans) and
  :mod:`~thinkgym.envs.tool_call.store_tools` (the store's tools and prompt);
* :mod:`~thinkgym.envs.tool_call.scoring` — call matching, state verification and the
  episode metrics.
"""

from __future__ import annotations

from thinkgym.envs.tool_call.env import DEFAULT_FAULTS, FaultConfig, ToolCallConfig, ToolCallEnv

__all__ = ["DEFAULT_FAULTS", "FaultConfig", "ToolCallConfig", "ToolCallEnv"]
