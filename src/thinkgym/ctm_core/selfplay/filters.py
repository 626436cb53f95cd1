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
        # Losses and certainties are joined (small); states are not: a pair's State_t or
        # State_{t+2} is read from the carry or the chunk where it lies, so the window
        # never costs a copy of the chunk's states.
        first = chunk.first_tick if carry is None else carry.first_tick
        losses, certainty = chunk.losses, chunk.certainty
        if carry is not None:
            losses = torch.cat((carry.losses, losses), dim=1)
            certainty = torch.cat((carry.certainty, certainty), dim=1)
        accepted = accept_pairs(losses, certainty, self.rule)
        self.evaluated += accepted.numel()
        self._carry = None if chunk.last else _tail(carry, chunk, 2)
        rows, steps = accepted.nonzero(as_tuple=True)
        if not len(rows):
            return None
        self.accepted += len(rows)
        pick = rows.tolist()
        return PairBatch(
            _take(carry, chunk, rows, steps), _take(carry, chunk, rows, steps + 2),
            steps + first,
            torch.stack([losses[rows, steps + i] for i in range(3)], dim=1),
            torch.stack([certainty[rows, steps + i] for i in range(3)], dim=1),
            [chunk.weight_id] * len(pick), [chunk.data_ids[i] for i in pick])


def _take(carry: Chunk | None, chunk: Chunk, rows: torch.Tensor, pos: torch.Tensor
          ) -> dict[str, torch.Tensor]:
    """States at window positions ``pos`` of ``rows`` (window = carry ticks, then chunk)."""
    n_carry = 0 if carry is None else carry.ticks
    in_carry = pos < n_carry
    out = {}
    for name, states in chunk.states.items():
        picked = states.new_empty((len(rows), *states.shape[2:]))
        picked[~in_carry] = states[rows[~in_carry], pos[~in_carry] - n_carry]
        if carry is not None and bool(in_carry.any()):
            picked[in_carry] = carry.states[name][rows[in_carry], pos[in_carry]]
        out[name] = picked
    return out


def _tail(carry: Chunk | None, chunk: Chunk, n: int) -> Chunk:
    """The window's last ``n`` ticks, copied (the carry must not pin the chunk's memory)."""
    if carry is not None and chunk.ticks < n:  # a short chunk: keep some carry ticks too
        keep = n - chunk.ticks
        states = {k: torch.cat((carry.states[k][:, -keep:], v), dim=1)
                  for k, v in chunk.states.items()}
        losses = torch.cat((carry.losses[:, -keep:], chunk.losses), dim=1)
        certainty = torch.cat((carry.certainty[:, -keep:], chunk.certainty), dim=1)
    else:
        states = {k: v[:, -n:].clone() for k, v in chunk.states.items()}
        losses, certainty = chunk.losses[:, -n:].clone(), chunk.certainty[:, -n:].clone()
    return Chunk(chunk.rollout, chunk.first_tick + chunk.ticks - losses.shape[1], states, losses,
                 certainty, chunk.weight_id, chunk.source, chunk.data_ids, chunk.last,
                 chunk.decays)
