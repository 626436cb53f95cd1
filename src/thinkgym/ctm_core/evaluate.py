"""Held-out evaluation of a CTM: accuracy and certainty at every tick and at the most
certain tick, plus the accuracy/certainty-vs-ticks plot.

``evaluate(model, task, samples=N)`` rolls the model out on test items
``start_index .. start_index+N-1`` and returns an :class:`EvalResult`; its
``to_dict()`` is the JSON that ``thinkgym ctm eval --json`` writes, with the keys
``accuracy_most_certain``, ``accuracy_per_tick`` and ``certainty_per_tick`` (plus every
task metric per tick and at the most certain tick). ``plot_eval`` draws the PNG.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thinkgym.errors import ConfigError

if TYPE_CHECKING:
    from thinkgym.ctm_core.model import ContinuousThoughtMachine
    from thinkgym.ctm_core.tasks.base import Split, Task

__all__ = ["EvalResult", "evaluate", "evaluate_checkpoint", "format_report", "plot_eval"]


@dataclass
class EvalResult:
    """Figures of one evaluation (all averages over ``samples`` items)."""

    task: str
    """Task name."""
    task_config: dict[str, Any]
    """Task config the items were drawn from."""
    split: str
    """``"test"`` (held out) unless asked otherwise."""
    samples: int
    """Number of items evaluated."""
    start_index: int
    """First item index of the split used."""
    ticks: int
    """Ticks rolled out."""
    accuracy_most_certain: float
    """Per-position accuracy, each sample read at its own most certain tick."""
    accuracy_per_tick: list[float]
    """Per-position accuracy at tick 1..T (index 0 is tick 1)."""
    certainty_per_tick: list[float]
    """Mean certainty (1 - normalised entropy) at tick 1..T."""
    metrics_most_certain: dict[str, float]
    """Every task metric at the most certain tick (``accuracy``, ``route_accuracy``, ...)."""
    metrics_per_tick: dict[str, list[float]]
    """Every task metric at tick 1..T."""
    most_certain_tick_counts: list[int]
    """How many samples were most certain at tick 1..T."""
    checkpoint: str | None = None
    """The checkpoint evaluated, if any."""
    seconds: float = 0.0
    """Wall time of the evaluation."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything a caller adds (e.g. the training step)."""

    @property
    def accuracy_final_tick(self) -> float:
        return self.accuracy_per_tick[-1]

    @property
    def mean_most_certain_tick(self) -> float:
        """Average (1-based) tick at which samples were most certain."""
        total = sum(self.most_certain_tick_counts)
        return sum((t + 1) * n for t, n in enumerate(self.most_certain_tick_counts)) / total

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["accuracy_final_tick"] = self.accuracy_final_tick
        out["mean_most_certain_tick"] = self.mean_most_certain_tick
        return out

    def summary_ticks(self, count: int = 5) -> str:
        """``"t1 0.51, t6 0.80, ..."``: accuracy at a few evenly spaced ticks."""
        n = len(self.accuracy_per_tick)
        picks = sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(count)})
        return ", ".join(f"t{i + 1} {self.accuracy_per_tick[i]:.3f}" for i in picks)


def evaluate(model: ContinuousThoughtMachine, task: Task, *, samples: int = 1024,
             ticks: int | None = None, batch_size: int = 256, split: Split = "test",
             start_index: int = 0, progress: bool = True) -> EvalResult:
    """Roll ``model`` out on ``samples`` items of ``split`` and measure every tick."""
    import torch
    from tqdm.auto import tqdm

    if samples < 1 or batch_size < 1 or start_index < 0:
        raise ConfigError("samples and batch_size must be >= 1, start_index >= 0",
                          field="samples", got=(samples, batch_size, start_index),
                          fix="pass samples=1000, batch_size=256, start_index=0")
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    best_sums: dict[str, float] = {}
    certainty_sum: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    with torch.no_grad(), tqdm(total=samples, disable=not progress, desc="eval",
                               dynamic_ncols=True) as bar:
        for lo in range(start_index, start_index + samples, batch_size):
            hi = min(lo + batch_size, start_index + samples)
            batch = task.batch(range(lo, hi), split)
            rollout = model.rollout(batch.inputs, ticks=ticks)
            values = task.metric_values(rollout.logits, batch)  # {name: (B, T)}
            best = rollout.certainty.argmax(-1)  # (B,)
            rows = torch.arange(len(batch))
            for name, v in values.items():
                sums[name] = sums.get(name, 0) + v.sum(0)
                best_sums[name] = best_sums.get(name, 0.0) + float(v[rows, best].sum())
            certainty = rollout.certainty.sum(0)
            certainty_sum = certainty if certainty_sum is None else certainty_sum + certainty
            hist = torch.bincount(best, minlength=rollout.ticks)
            counts = hist if counts is None else counts + hist
            bar.update(hi - lo)
    if was_training:
        model.train()
    # samples >= 1 (checked above), so the loop ran at least once
    assert certainty_sum is not None
    assert counts is not None
    per_tick = {name: (s / samples).tolist() for name, s in sums.items()}
    most_certain = {name: s / samples for name, s in best_sums.items()}
    return EvalResult(
        task=task.name, task_config=task.config.to_dict(), split=split, samples=samples,
        start_index=start_index, ticks=len(per_tick["accuracy"]),
        accuracy_most_certain=most_certain["accuracy"],
        accuracy_per_tick=per_tick["accuracy"],
        certainty_per_tick=(certainty_sum / samples).tolist(),
        metrics_most_certain=most_certain, metrics_per_tick=per_tick,
        most_certain_tick_counts=[int(c) for c in counts.tolist()],
        seconds=time.perf_counter() - started)


def evaluate_checkpoint(name_or_path: str, *, samples: int = 1024, ticks: int | None = None,
                        batch_size: int = 256, start_index: int = 0,
                        progress: bool = True, dtype: str | None = None) -> EvalResult:
    """Load a checkpoint (bundled name or path) and :func:`evaluate` it on held-out items.

    ``dtype="bfloat16"`` evaluates the low-precision inference path
    (``ContinuousThoughtMachine.set_inference_dtype``).
    """
    from thinkgym.ctm_core.checkpoint import load_checkpoint

    model, task, meta = load_checkpoint(name_or_path)
    model.set_inference_dtype(dtype)
    result = evaluate(model, task, samples=samples, ticks=ticks, batch_size=batch_size,
                      start_index=start_index, progress=progress)
    result.checkpoint = str(name_or_path)
    result.extra["step"] = meta.step
    result.extra["dtype"] = str(model.inference_dtype).removeprefix("torch.")
    return result


def format_report(result: EvalResult) -> str:
    """A plain-text table: metrics and certainty at every tick, then the most certain tick."""
    names = list(result.metrics_per_tick)
    header = "tick  " + "  ".join(f"{n:>17}" for n in names) + "  certainty  most-certain"
    lines = [f"{result.task} {result.task_config}  split={result.split}  "
             f"samples={result.samples}  ticks={result.ticks}", header]
    for t in range(result.ticks):
        row = "  ".join(f"{result.metrics_per_tick[n][t]:>17.4f}" for n in names)
        lines.append(f"{t + 1:>4}  {row}  {result.certainty_per_tick[t]:>9.4f}  "
                     f"{result.most_certain_tick_counts[t]:>12d}")
    best = "  ".join(f"{n} {v:.4f}" for n, v in result.metrics_most_certain.items())
    lines.append(f"most certain tick (mean {result.mean_most_certain_tick:.1f}): {best}")
    lines.append(f"accuracy_most_certain = {result.accuracy_most_certain:.4f}")
    return "\n".join(lines)


def plot_eval(result: EvalResult, path: str | Path) -> Path:
    """Write a PNG: every metric and the certainty against ticks (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = list(range(1, result.ticks + 1))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, values in result.metrics_per_tick.items():
        ax.plot(ticks, values, label=name.replace("_", " "))
    ax.plot(ticks, result.certainty_per_tick, "k--", label="certainty")
    ax.axhline(result.accuracy_most_certain, color="grey", linestyle=":",
               label=f"accuracy at most certain tick ({result.accuracy_most_certain:.3f})")
    ax.set_xlabel("internal tick")
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1.02)
    title = result.checkpoint or result.task
    ax.set_title(f"{title}: {result.samples} held-out samples")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
