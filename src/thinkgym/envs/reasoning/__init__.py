r"""Reasoning-v0 (generated problems answered in ``\boxed{}``) and ReasoningGym-v0.

* :mod:`~thinkgym.envs.reasoning.env` — ``ReasoningEnv`` and its config, the symbolic
  answer check, multi-turn with ``tools=``;
* :mod:`~thinkgym.envs.reasoning.problems` — the procedural problem generators
  (difficulty 1-5, reproducible by index);
* :mod:`~thinkgym.envs.reasoning.reasoning_gym_adapter` — ReasoningGym-v0, any
  ``reasoning-gym`` dataset scored by its own scorer (registered only when that package is
  installed; not imported here).
"""

from __future__ import annotations

from thinkgym.envs.reasoning.env import (
    DETECTORS,
    ReasoningConfig,
    ReasoningCorrectness,
    ReasoningEnv,
    ReasoningLenient,
    expressions_equal,
)

__all__ = ["DETECTORS", "ReasoningConfig", "ReasoningCorrectness", "ReasoningEnv",
           "ReasoningLenient", "expressions_equal"]
