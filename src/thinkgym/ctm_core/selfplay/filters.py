"""Which transitions count as "good thinking", and the streaming filter that finds them.

A rollout gives, per sample and tick ``t``, the readout's task loss ``L_t`` and its
certainty ``C_t``. The pair ``(State_t, State_{t+2})`` is accepted when

* ``strict``: thinking improved at both steps, in loss and in certainty:
  ``L_{t+1} < L_t``, ``L_{t+2} < L_{t+1}``, ``C_{t+1} > C_t`` and ``C_{t+2} > C_{t+1}``;
* ``loose``: the two-tick result improved, whatever happened in between:
  ``L_{t+2} < L_t`` and ``C_{t+2} > C_t``.

Every strict pair is a loose pair. Ties count as no improvement.

``StreamingFilter`` sees a long rollout one tick chunk at a time. It keeps only the
last two ticks of the previous chunk (states, losses, certainties), so the window it
compares is ``[carry (2 ticks) + chunk]``: every pair ``(t, t+2)`` of the rollout is
compared exactly once, whether it lies inside a chunk or straddles a boundary, and
memory stays bounded by one chunk. It is vectorised over the batch rows it was given;
the generator splits a chunk along the batch, never along time, so a filter's carry
always belongs to its own rows.

    >>> import torch
    >>> losses = torch.tensor([[3.0, 2.0, 1.0, 1.5, 0.5]])
    >>> certainty = torch.tensor([[0.1, 0.2, 0.3, 0.2, 0.4]])
    >>> accept_pairs(losses, certainty, "strict").tolist()   # pairs t = 0, 1, 2
    [[True, False, False]]
    >>> accept_pairs(losses, certainty, "loose").tolist()
    [[True, False, True]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from thinkgym.ctm_core.selfplay.storage import DataId, Decays, PairBatch
from thinkgym.ctm_core.state import TENSOR_FIELDS
from thinkgym.errors import ConfigError

__all__ = ["RULES", "Chunk", "FilterRule", "StreamingFilter", "accept_pairs"]

FilterRule = Literal["strict", "loose"]
RULES: tuple[str, ...] = get_args(FilterRule)


def accept_pairs(losses: torch.Tensor, certainty: torch.Tensor, rule: FilterRule) -> torch.Tensor:
    """Accepted pairs of a window: ``(B, T)`` losses and certainties -> ``(B, T - 2)`` bool.

    Entry ``[b, t]`` says whether ``(State_t, State_{t+2})`` of row ``b`` passes ``rule``.
    """
    if rule not in RULES:
        raise ConfigError(f"filter rule must be one of {list(RULES)}", field="rule", got=rule,
                          fix="pass rule='strict' or rule='loose'")
    if losses.shape != certainty.shape or losses.dim() != 2:
        raise ConfigError("losses and certainty must both be (B, T)", field="losses",
                          got=(tuple(losses.shape), tuple(certainty.shape)),
                          fix="pass per-tick task losses and certainties of one window")
    if losses.shape[1] < 3:
        return torch.zeros(losses.shape[0], 0, dtype=torch.bool)
    l0, l1, l2 = losses[:, :-2], losses[:, 1:-1], losses[:, 2:]
    c0, c1, c2 = certainty[:, :-2], certainty[:, 1:-1], certainty[:, 2:]
    if rule == "loose":
        return (l2 < l0) & (c2 > c0)
    return (l1 < l0) & (l2 < l1) & (c1 > c0) & (c2 > c1)


@dataclass
class Chunk:
    """Consecutive ticks of some rollout rows, as the producer hands them on.

    ``states`` maps each ``StatePack`` field to ``(B, c, ...)``: row ``b``'s state after
    tick ``first_tick + i`` is ``states[name][b, i]``.
    """

    rollout: int
    """Id of the rollout batch (chunks of one rollout arrive in order)."""
    first_tick: int
    """Tick index of the chunk's first state (0 = the start state)."""
    states: dict[str, torch.Tensor]
    losses: torch.Tensor
    """(B, c) task loss of each state's readout."""
    certainty: torch.Tensor
    """(B, c) certainty of each state's readout."""
    weight_id: str
    """The weights that produced every row."""
    source: str
    """Where the weights came from: ``best`` or ``expert`` (chooses the buffer)."""
    data_ids: list[DataId]
    """Per row: the task item."""
    last: bool = False
    """True for the rollout's final chunk (the filter drops its carry)."""
    decays: Decays | None = None
    """The weights' decays (what the writer stores so ``beta`` can be recomputed)."""

    def __len__(self) -> int:
        return int(self.losses.shape[0])

    @property
    def ticks(self) -> int:
        return int(self.losses.shape[1])

    def rows(self, start: int, stop: int) -> Chunk:
        """Batch rows ``[start, stop)``: all ticks, views (a split along the batch)."""
        return Chunk(self.rollout, self.first_tick,
                     {k: v[start:stop] for k, v in self.states.items()},
                     self.losses[start:stop], self.certainty[start:stop], self.weight_id,
                     self.source, self.data_ids[start:stop], self.last, self.decays)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.states.values())


class StreamingFilter:
    """Apply a rule to a rollout arriving in chunks, carrying the last two ticks across.

    One instance serves one set of rows of one rollout at a time; a chunk of another
    rollout (or a chunk with ``first_tick == 0``) starts afresh.
    """

    def __init__(self, rule: FilterRule = "strict") -> None:
        accept_pairs(torch.zeros(1, 3), torch.zeros(1, 3), rule)  # validates the rule
        self.rule: FilterRule = rule
        self._carry: Chunk | None = None
        self.evaluated = 0
        """Pairs compared so far (each pair of each rollout exactly once)."""
        self.accepted = 0

    def push(self, chunk: Chunk) -> PairBatch | None:
        """Compare every pair completed by ``chunk``; the accepted ones (or None)."""
        carry = self._carry
        if carry is not None and (carry.rollout != chunk.rollout or len(carry) != len(chunk)
                                  or carry.first_tick + carry.ticks != chunk.first_tick):
            carry = None  # a new rollout (the previous one ended without last=True)
        window = chunk if carry is None else _join(carry, chunk)
        accepted = accept_pairs(window.losses, window.certainty, self.rule)
        self.evaluated += accepted.numel()
        self._carry = None if chunk.last else _tail(window, 2)
        rows, steps = accepted.nonzero(as_tuple=True)
        if not len(rows):
            return None
        self.accepted += len(rows)
        pick = rows.tolist()
        return PairBatch(
            {k: v[rows, steps] for k, v in window.states.items()},
            {k: v[rows, steps + 2] for k, v in window.states.items()},
            steps + window.first_tick,
            torch.stack([window.losses[rows, steps + i] for i in range(3)], dim=1),
            torch.stack([window.certainty[rows, steps + i] for i in range(3)], dim=1),
            [chunk.weight_id] * len(pick), [chunk.data_ids[i] for i in pick])


def _join(a: Chunk, b: Chunk) -> Chunk:
    return Chunk(b.rollout, a.first_tick,
                 {k: torch.cat((a.states[k], b.states[k]), dim=1) for k in TENSOR_FIELDS},
                 torch.cat((a.losses, b.losses), dim=1),
                 torch.cat((a.certainty, b.certainty), dim=1), b.weight_id, b.source,
                 b.data_ids, b.last, b.decays)


def _tail(chunk: Chunk, n: int) -> Chunk:
    # Copies: the carry must not pin the whole chunk's memory.
    return Chunk(chunk.rollout, chunk.first_tick + max(0, chunk.ticks - n),
                 {k: v[:, -n:].clone() for k, v in chunk.states.items()},
                 chunk.losses[:, -n:].clone(), chunk.certainty[:, -n:].clone(),
                 chunk.weight_id, chunk.source, chunk.data_ids, chunk.last, chunk.decays)
