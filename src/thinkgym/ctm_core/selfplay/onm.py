"""The Optic Nerve Model (ONM): where the CTM starts thinking.

``f_ONM(y_base, C_base, K, V, theta_unit) -> State^0``: from the backbone's first
impression of an input (a prediction ``y_base``, its certainty ``C_base``, the static
keys/values ``K, V``) and a summary of the thinking unit's weights ``theta_unit``, the
ONM proposes a whole ``StatePack`` to start the rollout from, instead of the one
learned start state every input shares.

Training samples come from the replay buffer: for a pair ``(State_t, State_{t+2})`` the
input is ``(y_{t+2}, C_{t+2})`` = readout of ``State_{t+2}`` under the record's weights,
K/V recomputed from the record's ``data_id`` with those weights, ``theta_unit`` of the
record's ``weight_id``; the target is ``State_{t+2}`` (MSE per field). ``beta`` is not
predicted: it is fixed by the weights' decays and the tick the proposal claims
(``start_tick``), exactly as the engine would have counted it.

    >>> from thinkgym.ctm_core.train import TrainConfig, build_run
    >>> task, model = build_run(TrainConfig(task="parity", task_config={"length": 4},
    ...     model={"d_model": 16, "d_input": 8, "heads": 2, "n_synch_out": 4,
    ...            "n_synch_action": 4, "memory_length": 3, "memory_hidden_dims": 2}))
    >>> onm = OpticNerveModel.for_model(model, hidden=32)
    >>> kv = model.compute_kv(task.batch(range(3)).inputs)
    >>> state = generate_initial_state(model, kv, onm)
    >>> state.tick, tuple(state.A.shape)
    (2, (3, 16, 3))
    >>> model.rollout_from(state, kv, 4).logits.shape[-1]
    4
"""

from __future__ import annotations

import logging
import math
import os
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from thinkgym.ctm_core.checkpoint import replace_atomically
from thinkgym.ctm_core.config import CTMConfig
from thinkgym.ctm_core.selfplay.storage import (
    Decays,
    PairBatch,
    beta_for_ticks,
    decays_of,
    regenerate,
)
from thinkgym.ctm_core.state import KV, StatePack
from thinkgym.errors import CheckpointError, ConfigError, NumericalError, check_int_fields

if TYPE_CHECKING:
    from thinkgym.ctm_core.model import ContinuousThoughtMachine

__all__ = [
    "ONM_FORMAT",
    "PREDICTED_FIELDS",
    "SKETCH_DIM",
    "OnmTrainResult",
    "OpticNerveModel",
    "first_impression",
    "generate_initial_state",
    "load_onm",
    "pool_kv",
    "save_onm",
    "theta_features",
    "train_onm",
]

logger = logging.getLogger(__name__)

ONM_FORMAT = "thinkgym.selfplay.onm"
_ONM_VERSION = 1
PREDICTED_FIELDS: tuple[str, ...] = ("z", "A", "alpha_action", "alpha_out", "o")
"""The state fields the ONM predicts (``beta_*`` follow from the decays and the tick)."""
SKETCH_DIM = 32
"""Default length of the count sketch in :func:`theta_features`."""
_SKETCH_CHUNK = 1 << 20  # elements hashed at a time: bounded memory for any model size


# ---------------------------------------------------------------------- features
def theta_features(model: ContinuousThoughtMachine, sketch_dim: int = SKETCH_DIM,
                   seed: int = 0) -> torch.Tensor:
    """``theta_unit``: a fixed-size float32 summary ``(F,)`` of a CTM's thinking-unit weights.

    Per parameter tensor (sorted by name; the task backbone is left out, its effect
    reaches the ONM through K/V) four statistics: mean, std, RMS and mean ``|w|``;
    then a seeded count sketch of all those weights (each element is hashed to one of
    ``sketch_dim`` buckets with a random sign; each tensor's sketch is scaled to about
    its RMS per bucket, so small tensors count as much as large ones). So
    ``F = 4 * n_tensors + sketch_dim``: fixed for a given ``CTMConfig``, deterministic,
    one pass over the weights (in chunks), no matrix the size of the model.

    Why: the full weight vector is far too large to feed to a network. The statistics
    capture per-layer scale and offset (how training or noise moved each layer); the
    sketch is a random linear map, so weights that differ in any direction get
    different sketches with high probability and nearby weights get nearby sketches.
    What it cannot capture: the function the weights compute. Permuting neurons changes
    the sketch but not the function; two sets of weights with equal moments but
    different structure share the statistics; and a ``sketch_dim``-dimensional
    projection keeps only coarse distances (tiny perturbations barely move it).
    """
    check_int_fields(SimpleNamespace(sketch_dim=sketch_dim, seed=seed),
                     {"sketch_dim": 0, "seed": 0})
    params = sorted(((n, p) for n, p in model.named_parameters()
                     if not n.startswith("backbone.")), key=lambda item: item[0])
    stats: list[torch.Tensor] = []
    sketch = torch.zeros(sketch_dim, dtype=torch.float64)
    with torch.no_grad():
        for name, p in params:
            w = p.detach().reshape(-1).to("cpu", torch.float64)
            stats.append(torch.stack((w.mean(), w.std(correction=0), w.square().mean().sqrt(),
                                      w.abs().mean())))
            if sketch_dim:
                sketch += _count_sketch(w, sketch_dim, (seed << 32) | zlib.crc32(name.encode()))
    parts = [torch.cat(stats)] if stats else []
    if sketch_dim:
        parts.append(sketch / math.sqrt(max(1, len(params))))
    return torch.cat(parts).float() if parts else torch.zeros(0)


def _count_sketch(w: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    out = torch.zeros(dim, dtype=torch.float64)
    for start in range(0, w.numel(), _SKETCH_CHUNK):
        part = w[start:start + _SKETCH_CHUNK]
        bucket = torch.randint(dim, (part.numel(),), generator=generator)
        sign = torch.randint(2, (part.numel(),), generator=generator).double() * 2 - 1
        out.index_add_(0, bucket, part * sign)
    return out * math.sqrt(dim / max(1, w.numel()))


def first_impression(model: ContinuousThoughtMachine, kv: KV) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y_base (B, out_dims), C_base (B,))``: the readout after one tick from the start state.

    The start state's own readout is the same for every input (it never saw K/V); one
    tick attends to ``K, V`` once, which is the cheapest input-dependent impression the
    model has. Runs with the caller's grad mode (wrap it in ``torch.no_grad()``).
    """
    _, logits, certainty = model.tick(model.init_state(kv), kv)
    return logits, certainty


def pool_kv(kv: KV) -> torch.Tensor:
    """``(B, 2 * d_input)``: the mean over tokens of ``K`` and of ``V``, heads concatenated."""
    batch = kv.batch_size
    return torch.cat((kv.k.mean(dim=2).reshape(batch, -1),
                      kv.v.mean(dim=2).reshape(batch, -1)), dim=-1)


# ---------------------------------------------------------------------- the model
class OpticNerveModel(nn.Module):
    """``f_ONM(y_base, C_base, K, V, theta_unit) -> State^0`` for CTMs of one ``CTMConfig``.

    ``[y_base; C_base; mean K; mean V; theta_unit]`` -> LayerNorm -> 2-layer GELU MLP ->
    a flat offset for every predicted field, added to a learned mean state:
    ``state = mean_state + state_scale * head(h)``. The head starts near zero, so an
    untrained ONM proposes about ``mean_state``; :meth:`calibrate` sets ``mean_state`` to
    the mean of some target states and ``state_scale`` to each field's spread (so the
    head predicts offsets of order one). ``beta`` of the proposal is
    ``beta_for_ticks(decays, start_tick)``, never learned.

    Args:
        config: the CTM config whose states it proposes (shapes only).
        theta_dim: length F of ``theta_unit`` (``theta_features(model).numel()``).
        hidden: width of the hidden layers.
        start_tick: the tick the proposed state claims to be at (``State^0.tick``).
    """

    mean_state: nn.Parameter
    state_scale: torch.Tensor
    calibrated: torch.Tensor

    def __init__(self, config: CTMConfig, theta_dim: int, hidden: int = 256,
                 start_tick: int = 2) -> None:
        super().__init__()
        if not isinstance(config, CTMConfig):
            raise ConfigError("config must be a CTMConfig", field="config", got=type(config),
                              fix="pass model.config or CTMConfig.from_dict(d)")
        self.config, self.theta_dim = config, theta_dim
        self.hidden, self.start_tick = hidden, start_tick
        check_int_fields(self, {"theta_dim": 0, "hidden": 1, "start_tick": 0})
        shapes = self.expected_state_shapes()
        self._sizes = [math.prod(shapes[name]) for name in PREDICTED_FIELDS]
        in_dim = config.out_dims + 1 + 2 * config.d_input + theta_dim
        self.in_norm = nn.LayerNorm(in_dim)
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(),
                                   nn.Linear(hidden, hidden), nn.GELU())
        self.head = nn.Linear(hidden, sum(self._sizes))
        with torch.no_grad():  # near zero, not zero: the trunk gets gradient from step 1
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()
        self.mean_state = nn.Parameter(torch.zeros(sum(self._sizes)))
        self.register_buffer("state_scale", torch.ones(sum(self._sizes)))
        self.register_buffer("calibrated", torch.tensor(False))

    @classmethod
    def for_model(cls, model: ContinuousThoughtMachine, hidden: int = 256,
                  start_tick: int = 2) -> OpticNerveModel:
        """An ONM for ``model``'s config, ``theta_dim`` from :func:`theta_features`."""
        return cls(model.config, int(theta_features(model).numel()), hidden, start_tick)

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments as a plain dict (what :func:`save_onm` stores)."""
        return {"config": self.config.to_dict(), "theta_dim": self.theta_dim,
                "hidden": self.hidden, "start_tick": self.start_tick}

    def expected_state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-field shapes of the proposed ``StatePack`` (as the model's method)."""
        return self.config.state_shapes()

    def _flatten(self, state: StatePack) -> torch.Tensor:
        ref = self.mean_state
        return torch.cat([getattr(state, n).reshape(state.batch_size, -1).to(ref)
                          for n in PREDICTED_FIELDS], dim=-1)

    @torch.no_grad()
    def calibrate(self, targets: StatePack) -> None:
        """Set ``mean_state`` to the targets' mean and ``state_scale`` to each field's spread.

        The spread of a field is the RMS over its elements of the per-element std (floor
        1e-3, so a field that never varied can still move).
        """
        self.check_state_shapes(targets, "calibration targets")
        flat = self._flatten(targets)  # (N, out)
        self.mean_state.copy_(flat.mean(dim=0))
        std = flat.std(dim=0, correction=0)
        for part, piece in zip(self.state_scale.split(self._sizes), std.split(self._sizes),
                               strict=True):
            part.fill_(float(piece.square().mean().sqrt().clamp_min(1e-3)))
        self.calibrated.fill_(True)

    def check_state_shapes(self, state: StatePack, what: str) -> None:
        """``ConfigError`` naming expected vs received shapes when ``state`` does not fit."""
        want = self.expected_state_shapes()
        got = {n: tuple(t.shape[1:]) for n, t in state.items()}
        if got != want:
            bad = {n: {"expected": want[n], "received": got[n]} for n in want if want[n] != got[n]}
            raise ConfigError(f"{what} do not fit this ONM's CTM config", field="config",
                              got=bad, fix="train one ONM per CTM shape "
                                           "(OpticNerveModel.for_model(model))")

    def forward(self, y_base: torch.Tensor, c_base: torch.Tensor, kv: KV, theta: torch.Tensor,
                decays: Decays) -> StatePack:
        """``State^0`` at ``start_tick``: tensors on the ONM's device and dtype.

        Args:
            y_base: ``(B, out_dims)`` logits of the first impression.
            c_base: ``(B,)`` its certainty ``C_base``.
            kv: the static keys/values ``K, V``, each ``(B, heads, N, head_dim)``.
            theta: ``theta_unit``, ``(F,)`` (shared by the batch) or ``(B, F)``.
            decays: ``(r_action, r_out)`` of the weights (:func:`decays_of`): fix ``beta``.
        """
        self._check_inputs(y_base, c_base, kv, theta, decays)
        ref, batch = self.mean_state, y_base.shape[0]
        x = torch.cat((y_base.to(ref), c_base.reshape(batch, 1).to(ref), pool_kv(kv).to(ref),
                       theta.to(ref).expand(batch, -1)), dim=-1)
        flat = self.mean_state + self.state_scale * self.head(self.trunk(self.in_norm(x)))
        shapes = self.expected_state_shapes()
        fields = {n: part.reshape(batch, *shapes[n])
                  for n, part in zip(PREDICTED_FIELDS, flat.split(self._sizes, dim=-1),
                                     strict=True)}
        tick = torch.tensor([self.start_tick])
        for kind, r in zip(("action", "out"), decays, strict=True):
            beta = beta_for_ticks(r.detach().to("cpu", torch.float32), tick)  # (1, S)
            fields[f"beta_{kind}"] = beta.to(ref).expand(batch, -1)
        return StatePack.from_tensors(fields, self.start_tick)

    def _check_inputs(self, y_base: torch.Tensor, c_base: torch.Tensor, kv: KV,
                      theta: torch.Tensor, decays: Decays) -> None:
        c, batch = self.config, int(y_base.shape[0])
        checks = (("y_base", tuple(y_base.shape), (batch, c.out_dims)),
                  ("c_base", tuple(c_base.shape), (batch,)),
                  ("kv.k", tuple(kv.k.shape[:2]) + tuple(kv.k.shape[3:]),
                   (batch, c.heads, c.head_dim)),
                  ("kv.v", tuple(kv.v.shape), tuple(kv.k.shape)),
                  ("theta", tuple(theta.shape[-1:]), (self.theta_dim,)),
                  ("decays[0]", tuple(decays[0].shape), (c.synch_size_action,)),
                  ("decays[1]", tuple(decays[1].shape), (c.synch_size_out,)))
        for name, got, want in checks:
            if got != want:
                raise ConfigError(f"{name} does not fit this ONM: expected shape {want}",
                                  field=name, got=got,
                                  fix="pass inputs from a CTM with the ONM's config and "
                                      "theta_features(model) with default arguments")
        if theta.dim() == 2 and theta.shape[0] not in (1, batch):
            raise ConfigError(f"theta must be (F,) or (B={batch}, F)", field="theta",
                              got=tuple(theta.shape), fix="pass one theta per batch or per row")

    def loss(self, pred: StatePack, target: StatePack,
             field_weights: Mapping[str, float] | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted mean over the predicted fields of the per-field MSE, and each field's MSE.

        ``beta`` is excluded (fixed, not predicted). ``field_weights`` maps names of
        :data:`PREDICTED_FIELDS` to weights ``>= 0``; fields not named weigh 1.
        """
        weights = dict.fromkeys(PREDICTED_FIELDS, 1.0)
        for name, w in (field_weights or {}).items():
            if name not in weights or not isinstance(w, (int, float)) or w < 0:
                raise ConfigError("field_weights must map predicted fields to weights >= 0",
                                  field="field_weights", got={name: w},
                                  fix=f"use names from {list(PREDICTED_FIELDS)}")
            weights[name] = float(w)
        if sum(weights.values()) <= 0:
            raise ConfigError("field_weights must not all be 0", field="field_weights",
                              got=weights, fix="give at least one field a positive weight")
        parts = {n: F.mse_loss(getattr(pred, n), getattr(target, n).to(getattr(pred, n)))
                 for n in PREDICTED_FIELDS}
        total = torch.stack([weights[n] * parts[n] for n in PREDICTED_FIELDS]).sum()
        return total / sum(weights.values()), {n: float(v.detach()) for n, v in parts.items()}


# ---------------------------------------------------------------------- training
@dataclass
class OnmTrainResult:
    """What :func:`train_onm` did."""

    train_loss: list[float] = field(default_factory=list)
    """Training loss of every step, in order."""
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    """``(step, validation loss)``; step 0 is before the first update (after calibration)."""
    final_val_loss: float | None = None
    """The last validation loss (None without a ``val_batch``)."""
    steps: int = 0
    """Optimiser steps taken (fewer than asked if ``batches`` ran out)."""
    seconds: float = 0.0
    """Wall time of the call."""


class _Group(NamedTuple):
    """The ONM inputs and target of the rows of one (weight id, task) in a batch."""

    y: torch.Tensor
    c: torch.Tensor
    kv: KV
    theta: torch.Tensor
    decays: Decays
    target: StatePack


def _check_model(onm: OpticNerveModel, model: ContinuousThoughtMachine, what: str) -> None:
    want = {**onm.expected_state_shapes(), "out_dims": onm.config.out_dims,
            "heads": onm.config.heads}
    got = {**model.expected_state_shapes(), "out_dims": model.config.out_dims,
           "heads": model.config.heads}
    if want != got:
        bad = {k: {"expected": want[k], "received": got.get(k)} for k in want
               if want[k] != got.get(k)}
        raise ConfigError(f"{what} does not fit the ONM's CTM config", field="config", got=bad,
                          fix="train one ONM per CTM shape (OpticNerveModel.for_model(model))")


def _prepare(onm: OpticNerveModel, batch: PairBatch,
             resolve: Callable[[str], ContinuousThoughtMachine],
             cache: dict[str, tuple[torch.Tensor, Decays]]) -> list[_Group]:
    """Recompute the ONM inputs of ``batch``: K/V, readout of State_{t+2}, theta, decays."""
    if not len(batch):
        raise ConfigError("a PairBatch for the ONM has no rows", field="batches", got=0,
                          fix="drop empty batches before train_onm")
    onm.check_state_shapes(batch.after(), "the batch's states")
    rows_of: dict[tuple[str, str], list[int]] = {}
    for i, (weight_id, data_id) in enumerate(zip(batch.weight_ids, batch.data_ids, strict=True)):
        rows_of.setdefault((weight_id, data_id.task_key()), []).append(i)
    groups = []
    for (weight_id, _), rows in rows_of.items():
        model = resolve(weight_id)
        _check_model(onm, model, f"weight id {weight_id!r}")
        was_training = model.training
        if was_training:
            model.eval()
        try:
            with torch.no_grad():
                ref = model.start_z
                inputs = regenerate([batch.data_ids[i] for i in rows]).inputs.to(ref.device)
                kv = model.compute_kv(inputs)
                after = StatePack.from_tensors(
                    {k: v[rows] for k, v in batch.state_t2.items()}, 0).to(ref.device, ref.dtype)
                y, c = model.readout(after)
                if weight_id not in cache:
                    cache[weight_id] = (theta_features(model), decays_of(model))
        finally:
            if was_training:
                model.train()
        groups.append(_Group(y, c, kv, *cache[weight_id], after))
    return groups


def _groups_loss(onm: OpticNerveModel, groups: list[_Group],
                 field_weights: Mapping[str, float] | None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    pred = StatePack.cat([onm(g.y, g.c, g.kv, g.theta, g.decays) for g in groups])
    target = StatePack.cat([g.target for g in groups])
    return onm.loss(pred, target, field_weights)


def _validate(onm: OpticNerveModel, groups: list[_Group],
              field_weights: Mapping[str, float] | None) -> float:
    with torch.no_grad():
        return float(_groups_loss(onm, groups, field_weights)[0])


def train_onm(onm: OpticNerveModel, batches: Iterable[PairBatch],
              resolve: Callable[[str], ContinuousThoughtMachine], *, steps: int,
              lr: float = 1e-3, val_batch: PairBatch | None = None, val_every: int | None = None,
              field_weights: Mapping[str, float] | None = None, grad_clip: float = 1.0,
              progress: bool = True) -> OnmTrainResult:
    """Train ``onm`` on replay pairs: one AdamW step per batch, ``steps`` batches at most.

    For every batch the rows are grouped by weight id (and task); each group's weights
    come from ``resolve(weight_id)`` (called once per group and batch: cache inside it
    if loading is slow) and, in eval mode without grad, give ``K, V`` of the regenerated
    inputs, ``(y_{t+2}, C_{t+2})`` = readout of ``State_{t+2}``, ``theta_unit`` and the
    decays (both cached per weight id for this call). The target is ``State_{t+2}``.

    An uncalibrated ONM is first calibrated on the first batch's targets
    (:meth:`OpticNerveModel.calibrate`), so ``val_loss[0]`` is the loss of predicting
    the mean state. ``val_batch`` is evaluated at step 0, every ``val_every`` steps
    (default ``steps // 10``) and after the last step. ``batches`` may end early (a
    warning is logged); pass ``itertools.cycle(list_of_batches)`` to reuse a fixed set.

    Raises:
        ConfigError: a record's weights or states do not fit the ONM's config.
        NumericalError: the loss became NaN/Inf.
    """
    from tqdm.auto import tqdm

    check_int_fields(SimpleNamespace(steps=steps, val_every=1 if val_every is None else val_every),
                     {"steps": 1, "val_every": 1})
    if not (isinstance(lr, (int, float)) and 0 < lr < 1):
        raise ConfigError("must be in (0, 1)", field="lr", got=lr, fix="pass lr=1e-3")
    started = time.perf_counter()
    every = val_every or max(1, steps // 10)
    cache: dict[str, tuple[torch.Tensor, Decays]] = {}
    result = OnmTrainResult()
    stream = iter(batches)
    first = next(stream, None)
    if first is None:
        raise ConfigError("batches is empty", field="batches", got=0,
                          fix="pass at least one PairBatch (e.g. buffer.load_batch(n))")
    groups = _prepare(onm, first, resolve, cache)
    if not bool(onm.calibrated):
        onm.calibrate(StatePack.cat([g.target for g in groups]))
    val_groups = _prepare(onm, val_batch, resolve, cache) if val_batch is not None else None
    if val_groups is not None:
        result.val_loss.append((0, _validate(onm, val_groups, field_weights)))
    optimizer = torch.optim.AdamW(onm.parameters(), lr=lr, weight_decay=0.0)
    was_training = onm.training
    onm.train()
    with tqdm(total=steps, disable=not progress, desc="onm", unit="step") as bar:
        for step in range(1, steps + 1):
            if step > 1:
                batch = next(stream, None)
                if batch is None:
                    logger.warning("train_onm: batches ran out after %d of %d steps",
                                   step - 1, steps)
                    break
                groups = _prepare(onm, batch, resolve, cache)
            loss, _ = _groups_loss(onm, groups, field_weights)
            if not bool(torch.isfinite(loss)):
                raise NumericalError(f"non-finite ONM loss at step {step}",
                                     got=float(loss.detach()),
                                     fix="lower lr or check the replay records for NaN")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(onm.parameters(), grad_clip)
            optimizer.step()
            result.train_loss.append(float(loss.detach()))
            result.steps = step
            if val_groups is not None and (step % every == 0 or step == steps):
                result.val_loss.append((step, _validate(onm, val_groups, field_weights)))
            bar.set_postfix(loss=f"{result.train_loss[-1]:.4g}",
                            val=f"{result.val_loss[-1][1]:.4g}" if result.val_loss else "-")
            bar.update()
    if val_groups is not None and result.val_loss[-1][0] != result.steps:
        result.val_loss.append((result.steps, _validate(onm, val_groups, field_weights)))
    onm.train(was_training)
    result.final_val_loss = result.val_loss[-1][1] if result.val_loss else None
    result.seconds = time.perf_counter() - started
    logger.info("train_onm: %d steps in %.1f s, val loss %s -> %s", result.steps,
                result.seconds, result.val_loss[0][1] if result.val_loss else None,
                result.final_val_loss)
    return result


# ---------------------------------------------------------------------- inference
def generate_initial_state(model: ContinuousThoughtMachine, kv: KV,
                           onm: OpticNerveModel | None = None,
                           theta: torch.Tensor | None = None) -> StatePack:
    """``State^0`` for a rollout of ``model`` on ``kv``.

    Without ``onm``: ``model.init_state(kv)``, the learned start state (tick 0). With
    it: the ONM's proposal from :func:`first_impression` (``y_base, C_base``), ``K, V``,
    ``theta`` (``theta_unit``; computed by :func:`theta_features` when None: pass it
    to save that pass over the weights) and the model's decays, at tick
    ``onm.start_tick``, without grad, on the model's device and dtype.
    """
    if onm is None:
        return model.init_state(kv)
    _check_model(onm, model, "the model")
    with torch.no_grad():
        y_base, c_base = first_impression(model, kv)
        theta = theta_features(model) if theta is None else theta
        state = onm(y_base, c_base, kv, theta, decays_of(model))
    ref = model.start_z
    state = state.to(ref.device, ref.dtype)
    model.check_inputs(state, kv)
    return state


# ---------------------------------------------------------------------- files
def save_onm(path: str | os.PathLike[str], onm: OpticNerveModel) -> Path:
    """Write ``onm`` (constructor arguments + state dict) atomically; returns the path.

    The file holds only tensors and plain containers: ``torch.load(weights_only=True)``.
    """
    payload = {"format": ONM_FORMAT, "version": _ONM_VERSION, "init": onm.init_args(),
               "state_dict": {k: v.detach().cpu() for k, v in onm.state_dict().items()}}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(out, lambda tmp: torch.save(payload, tmp))
    return out


def load_onm(path: str | os.PathLike[str]) -> OpticNerveModel:
    """Inverse of :func:`save_onm` (on CPU); ``CheckpointError`` for any bad file."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError("no ONM file", got=str(source), fix="pass a path save_onm wrote")
    try:
        raw = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for unreadable files
        raise CheckpointError("not a readable torch file", got=str(source),
                              fix="pass a path save_onm wrote") from err
    if not isinstance(raw, dict) or raw.get("format") != ONM_FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"not an ONM file ({ONM_FORMAT})", got=got,
                              fix="pass a path save_onm wrote")
    if raw.get("version") != _ONM_VERSION:
        raise CheckpointError(f"unsupported ONM file version (this code reads {_ONM_VERSION})",
                              got=raw.get("version"), fix="re-save it with this thinkgym")
    try:
        init = dict(raw["init"])
        onm = OpticNerveModel(CTMConfig.from_dict(dict(init.pop("config"))), **init)
        onm.load_state_dict(raw["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError("the ONM file's config or weights are invalid", got=str(err),
                              fix="re-save it with save_onm") from err
    return onm
