"""The detection channel: a value head, its TD targets and the dynamic stop threshold.

The generation channel is the causal LM's own head (the next token). The detection
channel reads the MAG block's output at the position where a reasoning step ends
and estimates two values of that state ``s_k`` (after ``k + 1`` steps):

* ``U(s_k)`` — the value of stopping now: the outcome reward ``R * 1[the answer
  held at s_k is right]`` (what stopping, or handing over to a verifier, yields);
* ``V(s_k)`` — the value of the state, ``V(s) = r(s) + gamma * max V(s')``, where the
  successors of ``s_k`` are the terminal "stop" state (value ``U(s_k)``) and
  ``s_{k+1}`` reached by one more step, which costs ``r(s) = -lambda`` (the episode's
  accumulated reward is ``-lambda * (reasoning steps)``)::

      V(s_k) = max(U(s_k), -lambda + gamma * V(s_{k+1})),   V(s_last) = U(s_last)

:func:`td_targets` builds these targets from a logged episode, bootstrapping
``V(s_{k+1})`` from the head's own (detached) estimate — fitted value iteration on
logged data, not a Monte-Carlo max over the logged future.

The stop rule (:func:`stop_decision`): continuing is worth ``V - U`` more than
stopping (``>= 0`` for an exact ``V``); stop when that advantage is below the
dynamic threshold ``tau = base_threshold * (1 + H)``, ``H`` the entropy of the
generation channel's current next-token distribution, normalised by ``log |vocab|``
to [0, 1]. An uncertain generation channel therefore demands a larger expected gain
before it is allowed to keep reasoning: its state is handed to the stop / verify
step sooner.

    >>> dynamic_threshold(0.1, torch.tensor([0.0, 0.5])).tolist()
    [0.10000000149011612, 0.15000000596046448]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DetectionHead", "dynamic_threshold", "normalized_entropy", "stop_decision",
           "td_targets"]


class DetectionHead(nn.Module):
    """MLP from a state feature ``(…, d_in)`` to ``(V(s), U(s))``, each ``(…)``.

    It predicts ``U`` and the gain of continuing ``A = V - U = softplus(·) >= 0`` (so
    ``V >= U`` always holds, as it does for the true values) and returns ``V = U + A``.
    The stop rule reads ``A`` directly; training fits ``A`` to its own target
    (:func:`td_targets`' ``V - U``), so the errors of two separate heads do not add up
    in the difference the decision thresholds.
    """

    def __init__(self, d_in: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(features)
        stop_value = out[..., 1]
        return stop_value + F.softplus(out[..., 0]), stop_value


def normalized_entropy(logits: Tensor) -> Tensor:
    """``H(softmax(logits)) / log |vocab|`` over the last axis, in [0, 1]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    h = -(logp.exp() * logp).sum(-1)
    return h / math.log(logits.shape[-1])


def dynamic_threshold(base_threshold: float, entropy: Tensor) -> Tensor:
    """``tau = base_threshold * (1 + entropy)``."""
    return base_threshold * (1.0 + entropy)


def stop_decision(value: Tensor, stop_value: Tensor, entropy: Tensor,
                  base_threshold: float) -> Tensor:
    """True where ``V(s) - U(s) < base_threshold * (1 + H)``: stop (or verify) now.

    >>> stop_decision(torch.tensor([1.0, 1.0]), torch.tensor([0.95, 0.5]),
    ...               torch.tensor([0.0, 0.0]), 0.1).tolist()
    [True, False]
    """
    return (value - stop_value) < dynamic_threshold(base_threshold, entropy)


def td_targets(stop_returns: Tensor, valid: Tensor, next_values: Tensor, *,
               gamma: float, step_cost: float) -> tuple[Tensor, Tensor]:
    """``(target V, target U)`` ``(B, K)`` for logged steps.

    Args:
        stop_returns: ``(B, K)`` observed ``U(s_k) = R * 1[answer at step k right]``.
        valid: ``(B, K)`` 1 where step ``k`` exists (episodes have different lengths).
        next_values: ``(B, K)`` the head's estimate ``V(s_k)`` (detached); position
            ``k + 1`` bootstraps step ``k``.
        gamma: discount ``gamma``.
        step_cost: ``lambda`` in ``r(s) = -lambda`` per reasoning step.

    >>> v, u = td_targets(torch.tensor([[0.0, 1.0]]), torch.ones(1, 2),
    ...                   torch.tensor([[0.5, 0.9]]), gamma=1.0, step_cost=0.1)
    >>> [round(t, 3) for t in v[0].tolist()], u[0].tolist()
    ([0.8, 1.0], [0.0, 1.0])
    """
    valid = valid.to(stop_returns.dtype)
    nxt = torch.cat([next_values[:, 1:], torch.zeros_like(next_values[:, :1])], dim=1)
    has_next = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    cont = -step_cost + gamma * nxt.detach()
    target_v = torch.where(has_next > 0, torch.maximum(stop_returns, cont), stop_returns)
    return target_v * valid, stop_returns * valid
