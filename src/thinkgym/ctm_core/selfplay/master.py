"""``MasterTrainer``: the self-play loop, its score, its tournament and its logs.

One cycle::

    generate   DataGenerator: rollouts with best (prob p) or expert weights -> buffers
    ONM        train the Optic Nerve Model on buffer samples (if enabled)
    cohort     k challengers, each best + train_unit with its own seed (MixingSampler q)
    merge      one more challenger: a weight-space merge of the cohort (merge.py)
    tournament best and every challenger scored on one fixed validation sample
    promote    the top scorer becomes best if it beats best; the old best joins the
               expert pool; challengers are cleared; p rises, q falls

**State-improvement score** of a model on items (``state_improvement_score``): roll out
``T`` ticks from the start state (tick 0, included), read loss ``L_t`` and certainty
``C_t`` at every tick, and sum over ``t = 0 .. T-2``::

    sum_t (C_{t+2} - C_t) + sum_t (L_t - L_{t+2})

averaged over items. The sums telescope: the score is
``(C_T + C_{T-1}) - (C_0 + C_1) + (L_0 + L_1) - (L_{T-1} + L_T)``, i.e. how much more
certain and how much less wrong the model ends than it starts. The validation items are
train-split items from ``VALIDATION_START`` on (generation starts at 0 and never gets
there), so the tournament never reads the test split; task accuracy is reported on the
test split and steers nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from thinkgym.ctm_core.selfplay.generator import GenerationReport, GeneratorConfig
from thinkgym.errors import ConfigError, check_int_fields

if TYPE_CHECKING:
    from thinkgym.ctm_core.model import ContinuousThoughtMachine
    from thinkgym.ctm_core.selfplay.onm import OpticNerveModel
    from thinkgym.ctm_core.tasks.base import Task, TaskBatch

__all__ = [
    "VALIDATION_START",
    "CycleLog",
    "MasterTrainer",
    "Measurement",
    "SelfPlayConfig",
    "measure",
    "plot_cycles",
    "state_improvement_score",
]

logger = logging.getLogger(__name__)

VALIDATION_START = 5_000_000
"""First train-split item index of the tournament's fixed validation sample."""
HOLDOUT_START = 6_000_000
"""First train-split item of a second sample, scored but never used to choose: the
tournament picks the maximum of noisy scores, so the winner's validation score is biased
upward; ``holdout_score`` is not."""


@dataclass(frozen=True)
class SelfPlayConfig:
    """Everything one self-play run depends on (saved as ``config.json`` in the run)."""

    checkpoint: str = "parity16"
    """Where self-play starts: a bundled checkpoint name or a path (the supervised model)."""
    root: str = "runs/selfplay"
    """Run directory: weights/, replay/, onm.pt, cycles.csv, curves.png, tb/."""
    cycles: int = 3
    """Generate -> train -> tournament cycles."""
    generator: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(
        batches=4, batch_size=64, ticks=60, chunk_ticks=10, rule="strict",
        weight_noise=0.02))
    """Generation per cycle (``p_best`` and ``start_index`` are set by the loop)."""
    p_best: float = 0.5
    """Probability of generating with the best weights in cycle 1."""
    p_step: float = 0.15
    """Added to p after every cycle (annealing toward self-play), capped at ``p_max``."""
    p_max: float = 0.9
    q_expert: float = 0.5
    """Share of expert-buffer pairs in unit-training batches in cycle 1."""
    q_decay: float = 0.5
    """q is multiplied by this after every cycle."""
    n_random_experts: int = 2
    """Randomly initialised models put into the expert pool at the start."""
    capacity: int = 50_000
    """Pairs per replay sub-buffer (FIFO)."""
    storage_dtype: str = "float16"
    """``float16`` or ``float32`` for stored states."""
    cohort: int = 2
    """Challengers trained from best per cycle (different seeds)."""
    unit_steps: int = 40
    unit_batch: int = 64
    unit_lr: float = 1e-4
    merge: str | None = "average"
    """Merge method for the extra challenger (None: no merge): see merge.MERGE_METHODS."""
    onm: bool = False
    """Train an Optic Nerve Model each cycle and start every rollout from its proposal."""
    onm_steps: int = 60
    val_samples: int = 256
    """Items in the fixed validation sample of the tournament."""
    score_ticks: int | None = None
    """Ticks per scored rollout; None: the checkpoint's trained ``iterations``."""
    confidence: float = 0.9
    """Certainty threshold for ticks-to-confidence."""
    eval_samples: int = 512
    """Test-split items for the reported task accuracy (never used for decisions)."""
    seed: int = 0
    progress: bool = True
    """Log a progress line per stage (and bars for long stages)."""

    def __post_init__(self) -> None:
        check_int_fields(self, {**dict.fromkeys(("cycles", "cohort", "unit_steps", "unit_batch",
                                                 "val_samples", "eval_samples", "capacity",
                                                 "onm_steps"), 1),
                                **dict.fromkeys(("n_random_experts", "seed"), 0)})
        for name in ("p_best", "p_max", "q_expert", "q_decay", "confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError("must be in [0, 1]", field=name, got=value,
                                  fix=f"pass {name} between 0 and 1")
        from thinkgym.ctm_core.selfplay.merge import MERGE_METHODS

        if self.merge is not None and self.merge not in MERGE_METHODS:
            raise ConfigError(f"unknown merge method; one of {list(MERGE_METHODS)} or None",
                              field="merge", got=self.merge, fix="pass merge='average'")
        if self.storage_dtype not in ("float16", "float32"):
            raise ConfigError("must be 'float16' or 'float32'", field="storage_dtype",
                              got=self.storage_dtype, fix="pass storage_dtype='float16'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Measurement:
    """A model's figures on a set of items."""

    score: float
    """Mean state-improvement score (see the module docstring)."""
    accuracy: float
    """Per-position accuracy at each item's most certain tick."""
    ticks_to_confidence: float
    """Mean first tick with certainty >= the threshold (T + 1 if never reached)."""
    reached: float
    """Share of items that reached the threshold within T ticks."""


def state_improvement_score(losses: torch.Tensor, certainty: torch.Tensor) -> torch.Tensor:
    """Per item ``sum_t (C_{t+2} - C_t) + (L_t - L_{t+2})``: ``(B, T+1)`` -> ``(B,)``.

    >>> state_improvement_score(torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[0.1, 0.5, 0.6]]))
    tensor([2.5000])
    """
    if losses.shape != certainty.shape or losses.dim() != 2 or losses.shape[1] < 3:
        raise ConfigError("losses and certainty must be (B, T+1) with T >= 2", field="losses",
                          got=(tuple(losses.shape), tuple(certainty.shape)),
                          fix="pass per-tick figures including the start state")
    return ((certainty[:, 2:] - certainty[:, :-2]).sum(1)
            + (losses[:, :-2] - losses[:, 2:]).sum(1))


def measure(model: ContinuousThoughtMachine, task: Task, items: TaskBatch, ticks: int, *,
            onm: OpticNerveModel | None = None, threshold: float = 0.9,
            batch_size: int = 256) -> Measurement:
    """Score, accuracy and ticks-to-confidence of ``model`` on ``items`` (no grad)."""
    from thinkgym.ctm_core.selfplay.onm import generate_initial_state

    model.eval()
    scores, accs, first_hits, reached = [], [], [], []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            x = items.inputs[start:start + batch_size]
            y = items.targets[start:start + batch_size]
            kv = model.compute_kv(x)
            state = generate_initial_state(model, kv, onm)
            logits0, cert0 = model.readout(state)
            out = model.rollout_from(state, kv, ticks)
            logits = torch.cat((logits0.unsqueeze(-1), out.logits), dim=-1)  # (B, O, T+1)
            certainty = torch.cat((cert0.unsqueeze(-1), out.certainty), dim=-1)
            losses = task.per_tick_loss(logits, y)
            scores.append(state_improvement_score(losses, certainty))
            rows = torch.arange(len(y))
            best = out.certainty.argmax(1)
            picked = out.logits[rows, :, best]
            batch = type(items)(inputs=x, targets=y)
            accs.append(task.metric_values(picked, batch)["accuracy"].reshape(-1))
            hit = out.certainty >= threshold  # (B, T) ticks 1..T
            first = torch.where(hit.any(1), hit.float().argmax(1) + 1,
                                torch.full((len(y),), ticks + 1))
            first_hits.append(first.float())
            reached.append(hit.any(1).float())
    return Measurement(score=float(torch.cat(scores).mean()),
                       accuracy=float(torch.cat(accs).mean()),
                       ticks_to_confidence=float(torch.cat(first_hits).mean()),
                       reached=float(torch.cat(reached).mean()))


@dataclass
class CycleLog:
    """One row of ``cycles.csv`` (cycle 0 = the starting checkpoint, before self-play)."""

    cycle: int
    best_id: str
    score: float
    """The best model's validation score after this cycle's promotion."""
    holdout_score: float
    """The same score on the hold-out sample (never used for a decision)."""
    accuracy: float
    """Test-split accuracy of the best model (most certain tick)."""
    ticks_to_confidence: float
    reached: float
    promoted: bool = False
    winner: str = ""
    """Which challenger won (``seed<k>``, ``merge:<method>``) or ``best`` (kept)."""
    challenger_scores: str = ""
    """JSON {name: score} of the tournament."""
    pairs_evaluated: int = 0
    pairs_written: int = 0
    yield_rate: float = 0.0
    pairs_per_s: float = 0.0
    p_best: float = 0.0
    q_expert: float = 0.0
    unit_loss: float = math.nan
    onm_val_loss: float = math.nan
    seconds: float = 0.0


class MasterTrainer:
    """Runs :class:`SelfPlayConfig`'s cycles; see the module docstring."""

    def __init__(self, cfg: SelfPlayConfig, *, overwrite: bool = False) -> None:
        self.cfg = cfg
        self.root = Path(cfg.root)
        self.overwrite = overwrite
        self.logs: list[CycleLog] = []

    def _say(self, text: str) -> None:
        if self.cfg.progress:
            logger.info("selfplay: %s", text)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        from thinkgym.ctm_core.checkpoint import load_checkpoint
        from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer
        from thinkgym.ctm_core.selfplay.weights import WeightManager

        cfg = self.cfg
        if self.root.exists() and any(self.root.iterdir()) and not self.overwrite:
            raise ConfigError("the self-play run directory is not empty", field="root",
                              got=str(self.root), fix="pass a new root or overwrite=True "
                              "(--overwrite) to start afresh")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        model, task, _ = load_checkpoint(cfg.checkpoint)
        self.task = task
        self.weights = WeightManager.create(self.root / "weights", model, task,
                                            n_random_experts=cfg.n_random_experts,
                                            seed=cfg.seed, overwrite=True)
        dtype = torch.float16 if cfg.storage_dtype == "float16" else torch.float32
        self.buffer = DiskReplayBuffer(self.root / "replay", capacity=cfg.capacity, dtype=dtype)
        self.buffer.clear()
        self.ticks = cfg.score_ticks or model.config.iterations
        self.val = task.batch(range(VALIDATION_START, VALIDATION_START + cfg.val_samples),
                              "train")
        self.holdout = task.batch(range(HOLDOUT_START, HOLDOUT_START + cfg.val_samples),
                                  "train")
        self.test = task.batch(range(cfg.eval_samples), "test")
        self.onm: OpticNerveModel | None = None

    def _measure(self, model: ContinuousThoughtMachine, items: TaskBatch) -> Measurement:
        return measure(model, self.task, items, self.ticks, onm=self.onm,
                       threshold=self.cfg.confidence)

    def _row(self, cycle: int, **extra: Any) -> CycleLog:
        model, _ = self.weights.resolve(self.weights.best_id)
        val, test = self._measure(model, self.val), self._measure(model, self.test)
        return CycleLog(cycle=cycle, best_id=self.weights.best_id, score=val.score,
                        holdout_score=self._measure(model, self.holdout).score,
                        accuracy=test.accuracy, ticks_to_confidence=test.ticks_to_confidence,
                        reached=test.reached, **extra)

    # ------------------------------------------------------------------ one cycle
    def generate(self, cycle: int, p: float) -> GenerationReport:
        from thinkgym.ctm_core.selfplay.generator import DataGenerator

        g = self.cfg.generator
        gen_cfg = dataclasses.replace(g, p_best=p, seed=self.cfg.seed * 1000 + cycle,
                                      start_index=(cycle - 1) * g.batches * g.batch_size)
        report = DataGenerator(self.weights, self.buffer, self.onm).run(gen_cfg)
        self._say(f"cycle {cycle}: generated {report.pairs_written} pairs of "
                  f"{report.pairs_evaluated} evaluated (yield {report.yield_rate:.3f}, "
                  f"{report.pairs_evaluated_per_s:.0f} pairs/s) buffers {self.buffer.counts()}")
        return report

    def train_onm(self, cycle: int, q: float) -> float:
        from thinkgym.ctm_core.selfplay.onm import OpticNerveModel, train_onm
        from thinkgym.ctm_core.selfplay.unit import MixingSampler

        if self.onm is None:
            self.onm = OpticNerveModel.for_model(self.weights.resolve(self.weights.best_id)[0])
        rng = np.random.default_rng([self.cfg.seed, cycle, 2])
        sampler = MixingSampler(self.buffer, q, self.cfg.unit_batch, rng)
        val_batch = sampler.sample()
        result = train_onm(self.onm, (sampler.sample() for _ in range(self.cfg.onm_steps)),
                           lambda w: self.weights.resolve(w)[0], steps=self.cfg.onm_steps,
                           val_batch=val_batch, progress=False)
        loss = math.nan if result.final_val_loss is None else float(result.final_val_loss)
        self._say(f"cycle {cycle}: ONM validation loss {loss:.4f}")
        return loss

    def train_cohort(self, cycle: int, q: float) -> tuple[dict[str, str], float]:
        """Challengers by name -> weight id, and their mean final unit loss."""
        from thinkgym.ctm_core.selfplay.merge import merge
        from thinkgym.ctm_core.selfplay.unit import MixingSampler, train_unit

        cfg = self.cfg
        best, _ = self.weights.resolve(self.weights.best_id)
        names: dict[str, str] = {}
        losses, states = [], []
        for k in range(cfg.cohort):
            seed = cfg.seed * 1000 + cycle * 10 + k
            model = self.weights.model_for(self.weights.best_id)
            sampler = MixingSampler(self.buffer, q, cfg.unit_batch,
                                    np.random.default_rng([seed, 3]))
            result = train_unit(model, sampler, steps=cfg.unit_steps, lr=cfg.unit_lr, seed=seed,
                                progress=False)
            losses.append(float(np.mean([h["loss"] for h in result.history[-5:]])))
            states.append(model.state_dict())
            names[f"seed{k}"] = self.weights.add_challenger(model, f"c{cycle}_seed{k}")
        if cfg.merge and cfg.cohort > 1:
            merged = self.weights.model_for(self.weights.best_id)
            merged.load_state_dict(merge(cfg.merge, best.state_dict(), states))  # type: ignore[arg-type]
            names[f"merge:{cfg.merge}"] = self.weights.add_challenger(merged,
                                                                      f"c{cycle}_merge")
        self._say(f"cycle {cycle}: trained {cfg.cohort} challengers (unit loss "
                  f"{np.mean(losses):.4f}){' + merge' if cfg.merge and cfg.cohort > 1 else ''}")
        return names, float(np.mean(losses))

    def tournament(self, challengers: dict[str, str]) -> tuple[str, dict[str, float]]:
        """The winner's name (``best`` if nobody beats it) and every score."""
        scores = {"best": self._measure(self.weights.resolve(self.weights.best_id)[0],
                                        self.val).score}
        for name, weight_id in challengers.items():
            scores[name] = self._measure(self.weights.resolve(weight_id)[0], self.val).score
        winner = max(scores, key=lambda n: (scores[n], n == "best"))
        return winner, scores

    # ------------------------------------------------------------------ the loop
    def run(self) -> list[CycleLog]:
        cfg = self.cfg
        self.setup()
        torch.manual_seed(cfg.seed)
        self.logs = [self._row(0, p_best=cfg.p_best, q_expert=cfg.q_expert)]
        self._say(f"cycle 0 (start {cfg.checkpoint}): score {self.logs[0].score:.4f}, test "
                  f"accuracy {self.logs[0].accuracy:.4f}, ticks to confidence "
                  f"{self.logs[0].ticks_to_confidence:.2f}")
        self._write_logs()
        p, q = cfg.p_best, cfg.q_expert
        for cycle in range(1, cfg.cycles + 1):
            started = time.perf_counter()
            report = self.generate(cycle, p)
            onm_loss = self.train_onm(cycle, q) if cfg.onm else math.nan
            challengers, unit_loss = self.train_cohort(cycle, q)
            winner, scores = self.tournament(challengers)
            promoted = winner != "best"
            if promoted:
                self.weights.promote(challengers[winner])
            self.weights.clear_challengers()
            row = self._row(cycle, promoted=promoted, winner=winner,
                            challenger_scores=json.dumps({k: round(v, 5)
                                                          for k, v in scores.items()}),
                            pairs_evaluated=report.pairs_evaluated,
                            pairs_written=report.pairs_written, yield_rate=report.yield_rate,
                            pairs_per_s=report.pairs_evaluated_per_s, p_best=p, q_expert=q,
                            unit_loss=unit_loss, onm_val_loss=onm_loss,
                            seconds=time.perf_counter() - started)
            self.logs.append(row)
            self._say(f"cycle {cycle}: tournament {json.dumps({k: round(v, 4) for k, v in scores.items()})} "  # noqa: E501
                      f"-> {'promoted ' + winner if promoted else 'best kept'}; score "
                      f"{row.score:.4f}, test accuracy {row.accuracy:.4f}, ticks to confidence "
                      f"{row.ticks_to_confidence:.2f} ({row.seconds:.0f}s)")
            self._write_logs()
            p, q = min(cfg.p_max, p + cfg.p_step), q * cfg.q_decay
        if self.onm is not None:
            from thinkgym.ctm_core.selfplay.onm import save_onm

            save_onm(self.root / "onm.pt", self.onm)
        return self.logs

    def _write_logs(self) -> None:
        rows = [dataclasses.asdict(r) for r in self.logs]
        with (self.root / "cycles.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        _tensorboard(self.root / "tb", self.logs[-1])
        plot_cycles(self.logs, self.root / "curves.png")


def _tensorboard(path: Path, row: CycleLog) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; the CSV has everything
        return
    with SummaryWriter(str(path)) as writer:
        for name in ("score", "accuracy", "ticks_to_confidence", "yield_rate", "pairs_per_s",
                     "unit_loss", "onm_val_loss"):
            value = getattr(row, name)
            if not math.isnan(value):
                writer.add_scalar(f"selfplay/{name}", value, row.cycle)
        writer.add_scalar("selfplay/promoted", float(row.promoted), row.cycle)


def plot_cycles(logs: list[CycleLog], path: str | Path) -> Path:
    """Score, accuracy, ticks-to-confidence and yield per cycle, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cycles = [r.cycle for r in logs]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    panels = (("score", "validation state-improvement score"), ("accuracy", "test accuracy"),
              ("ticks_to_confidence", "ticks to confidence (test)"), ("yield_rate", "filter yield"))
    for ax, (name, title) in zip(axes, panels, strict=True):
        ax.plot(cycles, [getattr(r, name) for r in logs], marker="o")
        for r in logs:
            if r.promoted:
                ax.axvline(r.cycle, color="tab:green", alpha=0.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("cycle")
        ax.set_xticks(cycles)
    fig.suptitle("CTM self-play (green: a challenger was promoted)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
