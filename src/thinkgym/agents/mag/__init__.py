"""MAG memory-gated reasoning: a Titans Memory-as-a-Gate block and a detection channel.

* :mod:`~thinkgym.agents.mag.block` — :class:`MAGBlock` (persistent tokens, sliding-window
  attention, gated neural long-term memory written at test time) and its state.
* :mod:`~thinkgym.agents.mag.detection` — the value head ``(V(s), U(s))``, its TD
  targets and the dynamic threshold ``tau = base_threshold * (1 + H)``.
* :mod:`~thinkgym.agents.mag.policy` — :class:`MAGPolicy`: block + head on a causal
  LM's hidden states, offline and online (KV cache + persistent memory).
* :mod:`~thinkgym.agents.mag.search_qa` — logged SearchQA-v0 episodes where stopping
  at step k has a defined outcome, and :class:`MAGSearchAgent` that stops by the
  detection channel.

Training (three stages) is :mod:`thinkgym.training.mag`; the design is in ``docs/mag.md``.
Importing this package imports torch (``import thinkgym`` does not import it).
"""

from __future__ import annotations

from thinkgym.agents.mag.block import MAGBlock, MAGConfig, MAGState, MemoryState, NeuralMemory
from thinkgym.agents.mag.detection import (
    DetectionHead,
    dynamic_threshold,
    normalized_entropy,
    stop_decision,
    td_targets,
)
from thinkgym.agents.mag.policy import (
    Detection,
    HaltDecision,
    MAGPolicy,
    MAGPolicyConfig,
    episode_tokens,
)

__all__ = ["Detection", "DetectionHead", "HaltDecision", "MAGBlock", "MAGConfig", "MAGPolicy",
           "MAGPolicyConfig", "MAGState", "MemoryState", "NeuralMemory", "dynamic_threshold",
           "episode_tokens", "normalized_entropy", "stop_decision", "td_targets"]
