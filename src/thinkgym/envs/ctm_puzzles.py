"""Alias of :mod:`thinkgym.envs.tool_use.ctm_puzzles`, the path docs/tools.md gave in 0.1.0."""

from __future__ import annotations

from thinkgym.envs.tool_use.ctm_puzzles import (
    CHECKPOINTS,
    KINDS,
    ctm_puzzles,
    in_split,
    trained_ticks,
)

__all__ = ["CHECKPOINTS", "KINDS", "ctm_puzzles", "in_split", "trained_ticks"]
