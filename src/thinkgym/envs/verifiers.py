"""Alias of :mod:`thinkgym.envs.tool_use.verifiers`, the path docs/tools.md gave in 0.1.0."""

from __future__ import annotations

from thinkgym.envs.tool_use.verifiers import VERIFIERS, Verifier, VerifierLike, resolve_verifier

__all__ = ["VERIFIERS", "Verifier", "VerifierLike", "resolve_verifier"]
