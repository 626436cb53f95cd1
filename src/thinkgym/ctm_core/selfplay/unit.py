"""Training the Two-Tick Unit on replayed pairs: the loss, the mixing sampler, the loop.

The unit ``f(State_t, KV) -> State_{t+2}`` (``TwoTickUnit``) is the CTM's own tick run
twice with shared weights. A replayed pair gives ``State_t``, the target ``State_{t+2}``
and (via ``data_id``) the input, whose K/V the model being trained recomputes, so the
backbone and key/value projections learn too.

Loss (``pair_loss``): a weighted sum over state fields of the mean squared error, each
divided by the variance of its target over the batch (``normalize=True``). Without the
normalisation the synchronisation sums dominate: ``alpha`` grows to ~1/(1-r) times a
neuron product and reached hundreds in the bundled checkpoints, while ``z`` stays near
unit scale. Default weights (``DEFAULT_FIELD_WEIGHTS``):

* ``z``, ``o``, ``alpha_action``, ``alpha_out``: 1 - they are the new information of a
  tick (activations, what attention read, and the sums the query and the output read);
* ``A``: 1, on the two newest history columns only - the other ``M - 2`` columns are
  ``State_t``'s shifted, which the unit copies exactly (their error is always 0 and would
  only dilute the mean);
* ``beta_action``, ``beta_out``: 0 - ``beta`` is a fixed function of the decays and the
  tick; matching it would only drag the decays toward the generating weights'.

``MixingSampler`` draws a fraction ``q`` of every batch from ``expert_replay_buffer/`` and
``1 - q`` from ``self_play_replay_buffer/`` (stochastic rounding keeps the expected
fraction exactly ``q``; if one sub-buffer is empty the other fills the batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from thinkgym.ctm_core.selfplay.storage import PairBatch, regenerate
from thinkgym.ctm_core.state import TENSOR_FIELDS, StatePack
from thinkgym.errors import ConfigError, NumericalError

if TYPE_CHECKING:
    from thinkgym.ctm_core.model import ContinuousThoughtMachine
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer

__all__ = ["DEFAULT_FIELD_WEIGHTS", "MixingSampler", "UnitTrainResult", "pair_loss",
           "train_unit"]

logger = logging.getLogger(__name__)

DEFAULT_FIELD_WEIGHTS: dict[str, float] = {
    "z": 1.0, "A": 1.0, "alpha_action": 1.0, "beta_action": 0.0, "alpha_out": 1.0,
    "beta_out": 0.0, "o": 1.0,
}


def pair_loss(pred: StatePack, target: StatePack,
              field_weights: Mapping[str, float] | None = None,
              normalize: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted per-field MSE between predicted and target ``State_{t+2}``.

    Returns the scalar loss and the unweighted per-field figures (for logs).
    """
    weights = {**DEFAULT_FIELD_WEIGHTS, **dict(field_weights or {})}
    unknown = sorted(set(weights) - set(TENSOR_FIELDS))
    if unknown:
        raise ConfigError("unknown state field in field_weights", field="field_weights",
                          got=unknown, fix=f"use names from {list(TENSOR_FIELDS)}")
    total = pred.z.new_zeros(())
    parts: dict[str, float] = {}
    for name in TENSOR_FIELDS:
        a, b = getattr(pred, name), getattr(target, name).to(pred.dtype)
        if name == "A":
            keep = min(2, a.shape[-1])
            a, b = a[..., -keep:], b[..., -keep:]
        mse = torch.mean((a - b) ** 2)
        if normalize:
            mse = mse / (b.detach().var() + 1e-6)
        parts[name] = float(mse.detach())
        if weights[name]:
            total = total + weights[name] * mse
    return total, parts


class MixingSampler:
    """Batches with a fraction ``q`` from the expert buffer, ``1 - q`` from self-play."""

    def __init__(self, buffer: DiskReplayBuffer, q: float, batch_size: int,
                 rng: np.random.Generator | None = None) -> None:
        if not 0.0 <= q <= 1.0:
            raise ConfigError("expert sampling ratio q must be in [0, 1]", field="q", got=q,
                              fix="pass q=0.5 (anneal it down across cycles)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("must be an int >= 1", field="batch_size", got=batch_size,
                              fix="pass batch_size=64")
        self.buffer, self.q, self.batch_size = buffer, q, batch_size
        self.rng = rng if rng is not None else np.random.default_rng()
        self.drawn = {"expert": 0, "self_play": 0}
        """Records drawn so far from each sub-buffer."""

    def split(self) -> tuple[int, int]:
        """How many rows of the next batch come from (expert, self_play)."""
        counts = self.buffer.counts()
        if counts["expert"] + counts["self_play"] == 0:
            raise ConfigError("both replay buffers are empty", field="buffer", got=counts,
                              fix="generate pairs first (DataGenerator.run)")
        exact = self.q * self.batch_size
        n_expert = int(exact) + int(self.rng.random() < exact - int(exact))
        if counts["expert"] == 0:
            n_expert = 0
        elif counts["self_play"] == 0:
            n_expert = self.batch_size
        return n_expert, self.batch_size - n_expert

    def sample(self) -> PairBatch:
        """One mixed batch (expert rows first)."""
        parts = []
        for name, n in zip(("expert", "self_play"), self.split(), strict=True):
            if n:
                parts.append(self.buffer.load_batch(n, buffer=name, rng=self.rng))
                self.drawn[name] += n
        return PairBatch.cat(parts)


@dataclass
class UnitTrainResult:
    """What ``train_unit`` did."""

    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    """Per step: loss and the per-field MSEs."""
    seconds: float = 0.0
    drawn: dict[str, int] = field(default_factory=dict)


def unit_step(model: ContinuousThoughtMachine, batch: PairBatch,
              field_weights: Mapping[str, float] | None = None, normalize: bool = True
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch: K/V recomputed by ``model``, two ticks from ``State_t``."""
    from thinkgym.ctm_core.model import TwoTickUnit

    inputs = regenerate(batch.data_ids).inputs
    kv = model.compute_kv(inputs)
    before = batch.before().to(dtype=model.start_z.dtype)
    pred, _, _ = TwoTickUnit(model)(before, kv)
    return pair_loss(pred, batch.after(), field_weights, normalize)


def train_unit(model: ContinuousThoughtMachine, sampler: MixingSampler, *, steps: int,
               lr: float = 1e-4, grad_clip: float = 1.0, seed: int = 0,
               field_weights: Mapping[str, float] | None = None, normalize: bool = True,
               progress: bool = False) -> UnitTrainResult:
    """AdamW on ``pair_loss`` for ``steps`` batches from ``sampler``; ``model`` is updated."""
    from tqdm.auto import tqdm

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError("must be an int >= 1", field="steps", got=steps, fix="pass steps=50")
    torch.manual_seed(seed)
    started = time.perf_counter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    result = UnitTrainResult(steps=steps)
    model.train()
    bar = tqdm(range(steps), disable=not progress, desc="unit", dynamic_ncols=True, leave=False)
    for step in bar:
        loss, parts = unit_step(model, sampler.sample(), field_weights, normalize)
        if not torch.isfinite(loss):
            raise NumericalError(f"unit loss became non-finite at step {step}",
                                 got=float(loss.detach()),
                                 fix="lower lr or check the replayed pairs")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        value = float(loss.detach())
        result.history.append({"step": step + 1, "loss": value, **parts})
        bar.set_postfix(loss=f"{value:.4f}")
    model.eval()
    result.seconds = time.perf_counter() - started
    result.drawn = dict(sampler.drawn)
    return result
