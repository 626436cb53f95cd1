"""CTMThink-v0: thinking as an action (:mod:`~thinkgym.envs.ctm_think.env`)."""

from __future__ import annotations

from thinkgym.envs.ctm_think.env import (
    ACTIONS,
    DEFAULT_CHECKPOINTS,
    FEATURES,
    CTMThinkConfig,
    CTMThinkEnv,
    TaskAccuracy,
)

__all__ = ["ACTIONS", "DEFAULT_CHECKPOINTS", "FEATURES", "CTMThinkConfig", "CTMThinkEnv",
           "TaskAccuracy"]
