"""Supervised CTM training on a registered task: ``train(TrainConfig) -> TrainResult``.

The loop reads top to bottom: build the task and the model, AdamW with linear
warmup then cosine decay, and for every step generate the batch of train items
``[step*B, (step+1)*B)`` (data is a pure function of the step), roll the CTM out for
``iterations`` ticks, apply the task's per-tick loss and the CTM loss (min-loss tick +
most-certain tick), clip gradients and step. ``out_dir/last.pt`` is written every
``checkpoint_every`` steps with the optimiser, scheduler and RNG states, so
``resume=True`` continues bit-for-bit where it stopped; at the end ``out_dir/model.pt``
is the slim file (weights, configs and the final held-out eval) to bundle or share.

    >>> cfg = TrainConfig(task="parity", task_config={"length": 4}, steps=2, batch_size=4,
    ...                   model={"d_model": 16, "d_input": 8, "heads": 2, "n_synch_out": 4,
    ...                          "n_synch_action": 4, "memory_length": 3,
    ...                          "memory_hidden_dims": 2, "iterations": 3},
    ...                   eval_samples=8, progress=False)
    >>> result = train(cfg)
    >>> result.steps, len(result.eval_metrics["accuracy_per_tick"])  # 3 ticks evaluated
    (2, 3)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thinkgym.errors import CheckpointError, ConfigError, NumericalError, check_int_fields

if TYPE_CHECKING:
    import torch

    from thinkgym.ctm_core.model import ContinuousThoughtMachine
    from thinkgym.ctm_core.tasks.base import Task, TaskBatch

__all__ = [
    "DEFAULT_MODEL",
    "VALIDATION_OFFSET",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "build_run",
    "train",
    "train_step",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL: dict[str, Any] = {
    "d_model": 128, "d_input": 64, "heads": 4, "n_synch_out": 32, "n_synch_action": 32,
    "synapse_depth": 1, "memory_length": 8, "deep_nlms": True, "memory_hidden_dims": 8,
    "neuron_select_type": "random-pairing", "dropout": 0.0, "iterations": 24,
}
"""CTM settings used unless ``TrainConfig.model`` overrides them (small: fast on 2 cores)."""

VALIDATION_OFFSET = 1_000_000
"""In-training evals read test items from this index on, so ``thinkgym ctm eval`` (which
starts at 0) measures on items that never steered a training run."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoints)."""

    task: str = "parity"
    """Registered task name: ``parity``, ``sort``, ``maze`` or ``digits``."""
    task_config: Mapping[str, Any] = field(default_factory=dict)
    """Task config fields, e.g. ``{"length": 16}`` (defaults for the rest)."""
    model: Mapping[str, Any] = field(default_factory=dict)
    """CTMConfig overrides on top of :data:`DEFAULT_MODEL`; ``iterations`` = training ticks.
    ``prediction_shape`` and ``backbone_dim`` come from the task."""
    steps: int = 1000
    """Total optimiser steps (a resumed run continues up to this number)."""
    batch_size: int = 64
    """Items per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 200
    """Linear warmup from 0 to ``lr`` over this many steps; cosine decay afterwards."""
    min_lr_ratio: float = 0.05
    """The cosine schedule ends at ``lr * min_lr_ratio``."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    seed: int = 0
    """Seeds model initialisation (torch) and every other RNG of the run."""
    out_dir: str | None = None
    """Where ``last.pt`` (resumable) and ``model.pt`` (slim) go; None: keep in memory only."""
    checkpoint_every: int = 500
    """Write ``last.pt`` every this many steps (and at the end)."""
    eval_every: int = 0
    """Evaluate on held-out items every this many steps; 0: only at the end."""
    eval_samples: int = 1024
    """Held-out items per evaluation."""
    resume: bool = False
    """Continue from ``out_dir/last.pt`` if it exists (model, optimiser, step and RNG)."""
    num_threads: int | None = 2
    """``torch.set_num_threads``; None leaves torch's default."""
    progress: bool = True
    """Show a tqdm progress bar (loss and accuracy at the most certain tick)."""
    log_every: int = 100
    """Log the smoothed training loss and accuracy every this many steps (0: never)."""

    def __post_init__(self) -> None:
        check_int_fields(self, {**dict.fromkeys(("steps", "batch_size", "checkpoint_every",
                                                 "eval_samples"), 1),
                                **dict.fromkeys(("warmup_steps", "eval_every", "seed",
                                                 "log_every"), 0)})
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ConfigError("must be in (0, 1)", field="lr", got=self.lr, fix="pass lr=1e-3")
        if self.weight_decay < 0 or self.grad_clip < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("weight_decay and grad_clip must be >= 0, min_lr_ratio in [0, 1]",
                              field="weight_decay/grad_clip/min_lr_ratio",
                              got=(self.weight_decay, self.grad_clip, self.min_lr_ratio),
                              fix="pass weight_decay=0.0, grad_clip=1.0, min_lr_ratio=0.05")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("must be >= 1 or None", field="num_threads", got=self.num_threads,
                              fix="pass num_threads=2")
        if self.resume and self.out_dir is None:
            raise ConfigError("resume needs out_dir", field="resume", got=True,
                              fix="pass out_dir=<the run directory to resume>")
        object.__setattr__(self, "task_config", dict(self.task_config))
        object.__setattr__(self, "model", dict(self.model))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}", got=dict(data),
                              fix=f"use only {sorted(names)}")
        return cls(**dict(data))


@dataclass
class TrainResult:
    """What a run produced."""

    model: ContinuousThoughtMachine
    """The trained model (train mode off)."""
    task: Task
    """The task it was trained on."""
    steps: int
    """Optimiser steps done in total (including steps before a resume)."""
    history: list[dict[str, float]]
    """Logged training figures: step, loss, accuracy (most certain tick), lr, tick stats."""
    eval_metrics: dict[str, Any]
    """The held-out evaluation at the end (``EvalResult.to_dict()``)."""
    checkpoint: Path | None
    """``out_dir/model.pt`` if an ``out_dir`` was given."""
    seconds: float
    """Wall time of this call."""


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _rng_state() -> dict[str, Any]:
    # Data is a pure function of the step; torch's RNG (dropout) is the only other randomness.
    import torch

    return {"torch": torch.get_rng_state()}


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])


def build_run(cfg: TrainConfig) -> tuple[Task, ContinuousThoughtMachine]:
    """The task and a freshly initialised model for ``cfg`` (seeded by ``cfg.seed``)."""
    import torch

    from thinkgym.ctm_core.checkpoint import build_model
    from thinkgym.ctm_core.config import CTMConfig
    from thinkgym.ctm_core.tasks.base import make_task

    task = make_task(cfg.task, cfg.task_config)
    fixed = {"prediction_shape": task.prediction_shape, "backbone_dim": task.backbone_dim}
    clash = sorted(set(cfg.model) & set(fixed))
    if clash:
        raise ConfigError(f"{clash} are set by the task and cannot be overridden", field="model",
                          got={k: cfg.model[k] for k in clash},
                          fix="change the task config instead (e.g. length, embed_dim)")
    model_cfg = CTMConfig.from_dict({**DEFAULT_MODEL, "seed": cfg.seed, **cfg.model, **fixed})
    torch.manual_seed(cfg.seed)
    return task, build_model(task, model_cfg)


def _resume(path: Path, cfg: TrainConfig, model: ContinuousThoughtMachine,
            optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    from thinkgym.ctm_core.checkpoint import load_state, read_checkpoint

    raw, meta = read_checkpoint(path)
    if raw.get("training") is None:
        raise CheckpointError(f"{path} has no optimiser state to resume from", got=str(path),
                              fix="resume from a last.pt written during training")
    stored = TrainConfig.from_dict(meta.train_config or {})
    for name in ("task", "task_config", "model", "batch_size", "seed"):
        if getattr(stored, name) != getattr(cfg, name):
            raise CheckpointError(f"cannot resume: {name} differs from the run in {path}",
                                  got={"checkpoint": getattr(stored, name),
                                       "requested": getattr(cfg, name)},
                                  fix=f"pass the same {name} as the original run, or a new "
                                  "out_dir")
    load_state(model, raw["model_state"], where=str(path))
    optimizer.load_state_dict(raw["training"]["optimizer"])
    scheduler.load_state_dict(raw["training"]["scheduler"])
    _set_rng_state(raw["training"]["rng"])
    logger.info("resumed %s at step %d", path, meta.step)
    return meta.step


@dataclass(frozen=True)
class StepOutput:
    """Figures of one optimiser step."""

    loss: float
    """The CTM loss of the batch (before the update)."""
    accuracy: float
    """Per-position accuracy at each sample's most certain tick (before the update)."""
    mean_tick: float
    """Mean 0-based most certain tick of the batch."""


def train_step(model: ContinuousThoughtMachine, task: Task, batch: TaskBatch,
               optimizer: torch.optim.Optimizer, *, grad_clip: float = 1.0,
               step: int = 0) -> StepOutput:
    """One update: rollout, per-tick task loss, CTM loss, backward, clip, optimiser step."""
    import torch

    from thinkgym.ctm_core.loss import ctm_loss

    model.train()
    rollout = model.rollout(batch.inputs)  # logits (B, out_dims, T), certainty (B, T)
    out = ctm_loss(task.per_tick_loss(rollout.logits, batch.targets), rollout.certainty)
    if not torch.isfinite(out.loss):
        raise NumericalError(f"training loss became non-finite at step {step}",
                             got=float(out.loss.detach()), fix="lower lr or grad_clip and "
                             "resume from the last checkpoint")
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        rows = torch.arange(len(batch))
        picked = rollout.logits.detach()[rows, :, out.tick_most_certain]  # (B, out_dims)
        acc = float(task.metric_values(picked, batch)["accuracy"].mean())
    return StepOutput(loss=out.loss.item(), accuracy=acc,
                      mean_tick=float(out.tick_most_certain.float().mean()))


def train(cfg: TrainConfig) -> TrainResult:
    """Train a CTM on ``cfg.task``; see the module docstring for the loop."""
    import torch
    from tqdm.auto import tqdm

    from thinkgym.ctm_core.checkpoint import save_checkpoint
    from thinkgym.ctm_core.evaluate import evaluate

    started = time.perf_counter()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    task, model = build_run(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else None
    last = out_dir / "last.pt" if out_dir is not None else None
    start = 0
    if cfg.resume and last is not None and last.is_file():
        start = _resume(last, cfg, model, optimizer, scheduler)

    def save_last(step: int, metrics: Mapping[str, Any]) -> None:
        if last is not None:
            training = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": _rng_state()}
            save_checkpoint(last, model, task, step=step, metrics=metrics,
                            train_config=cfg.to_dict(), training=training)

    history: list[dict[str, float]] = []
    ema_loss = ema_acc = None
    model.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not cfg.progress,
               desc=f"ctm {cfg.task}", dynamic_ncols=True)
    for step in bar:
        batch = task.batch(range(step * cfg.batch_size, (step + 1) * cfg.batch_size), "train")
        out = train_step(model, task, batch, optimizer, grad_clip=cfg.grad_clip, step=step)
        scheduler.step()
        acc = out.accuracy
        loss = out.loss
        ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
        ema_acc = acc if ema_acc is None else 0.98 * ema_acc + 0.02 * acc
        bar.set_postfix(loss=f"{ema_loss:.3f}", acc=f"{ema_acc:.3f}",
                        tick=f"{out.mean_tick + 1:.1f}")
        done = step + 1
        if done % 10 == 0 or done == cfg.steps:
            history.append({"step": done, "loss": loss, "accuracy": acc,
                            "lr": optimizer.param_groups[0]["lr"],
                            "tick_most_certain": out.mean_tick + 1})
        if cfg.log_every and done % cfg.log_every == 0:
            logger.info("step %d/%d loss %.4f accuracy %.4f lr %.2e most-certain tick %.1f",
                        done, cfg.steps, ema_loss, ema_acc, optimizer.param_groups[0]["lr"],
                        out.mean_tick + 1)
        if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
            result = evaluate(model, task, samples=cfg.eval_samples, start_index=VALIDATION_OFFSET,
                              progress=False)
            logger.info("step %d: held-out accuracy %.4f at the most certain tick (ticks: %s)",
                        done, result.accuracy_most_certain, result.summary_ticks())
            model.train()
        if done % cfg.checkpoint_every == 0 and done != cfg.steps:
            save_last(done, {"train_loss_ema": ema_loss, "train_accuracy_ema": ema_acc})
    bar.close()

    final = evaluate(model, task, samples=cfg.eval_samples, start_index=VALIDATION_OFFSET,
                     progress=False)
    logger.info("final held-out accuracy %.4f at the most certain tick (%d samples)",
                final.accuracy_most_certain, final.samples)
    metrics = final.to_dict()
    checkpoint = None
    if out_dir is not None:
        save_last(cfg.steps, metrics)
        checkpoint = save_checkpoint(out_dir / "model.pt", model, task, step=cfg.steps,
                                     metrics=metrics, train_config=cfg.to_dict())
    model.eval()
    return TrainResult(model=model, task=task, steps=cfg.steps, history=history,
                       eval_metrics=metrics, checkpoint=checkpoint,
                       seconds=time.perf_counter() - started)
