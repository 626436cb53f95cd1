"""Does the self-play loop improve a supervised CTM? (issue 15, "Learning")

Runs ``MasterTrainer`` with the library defaults (``SelfPlayConfig()``: 4 rollout batches
of 64 items x 60 ticks per cycle, strict filter, weight noise 0.02, 2 challengers + an
averaged merge, 40 unit steps each) for ``--cycles`` cycles from each bundled supervised
checkpoint, ``parity16`` and ``digits16``, and reports per config:

* ``score_per_cycle``: the best model's state-improvement score on the fixed validation
  sample (train-split items the generator never reads) after each cycle; index 0 is the
  starting checkpoint. ``holdout_score_per_cycle``: the same on a second sample never used
  for a decision (the tournament's max over noisy scores flatters the validation score).
* ``challenger_scores``: every challenger's validation score per cycle (what the
  tournament saw).
* ``accuracy_start`` / ``accuracy_end``: test-split accuracy at the most certain tick;
  ``ticks_to_confidence_start`` / ``_end``: mean first tick with certainty >= 0.9 on the
  test split (T + 1 when never reached).
* ``targets``: score rises from cycle 0 to the last; accuracy falls by <= 1 point;
  ticks-to-confidence falls.

Nothing here was tuned on the test split; the defaults were set before this run.

    python benchmarks/selfplay_learning.py --cycles 3 \
        --json benchmarks/results/selfplay_learning.json \
        --png benchmarks/results/selfplay_learning.png
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from thinkgym.ctm_core.selfplay.master import MasterTrainer, SelfPlayConfig


def run(checkpoint: str, cycles: int, onm: bool, root: Path) -> dict[str, Any]:
    cfg = SelfPlayConfig(checkpoint=checkpoint, root=str(root), cycles=cycles, onm=onm)
    started = time.perf_counter()
    logs = MasterTrainer(cfg).run()
    first, last = logs[0], logs[-1]
    out: dict[str, Any] = {
        "checkpoint": checkpoint, "onm": onm,
        "score_per_cycle": [r.score for r in logs],
        "holdout_score_per_cycle": [r.holdout_score for r in logs],
        "challenger_scores": [json.loads(r.challenger_scores) for r in logs[1:]],
        "promoted": [r.winner for r in logs[1:] if r.promoted],
        "accuracy_start": first.accuracy, "accuracy_end": last.accuracy,
        "ticks_to_confidence_start": first.ticks_to_confidence,
        "ticks_to_confidence_end": last.ticks_to_confidence,
        "pairs_written": [r.pairs_written for r in logs[1:]],
        "yield": [r.yield_rate for r in logs[1:]],
        "unit_loss": [r.unit_loss for r in logs[1:]],
        "seconds": time.perf_counter() - started,
    }
    out["targets"] = {
        "score_rises": out["score_per_cycle"][-1] > out["score_per_cycle"][0],
        "holdout_score_rises": out["holdout_score_per_cycle"][-1]
        > out["holdout_score_per_cycle"][0],
        "accuracy_within_1pt": out["accuracy_end"] >= out["accuracy_start"] - 0.01,
        "ticks_to_confidence_falls": out["ticks_to_confidence_end"]
        < out["ticks_to_confidence_start"],
    }
    return out


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        cycles = list(range(len(r["score_per_cycle"])))
        ax.plot(cycles, r["score_per_cycle"], marker="o", label="best: validation")
        ax.plot(cycles, r["holdout_score_per_cycle"], marker="s", label="best: hold-out")
        for c, scores in enumerate(r["challenger_scores"], 1):
            others = [v for k, v in scores.items() if k != "best"]
            ax.scatter([c] * len(others), others, color="tab:red", s=14,
                       label="challengers" if c == 1 else None)
        ax.set_xticks(cycles)
        ax.set_xlabel("cycle")
        ax.set_ylabel("state-improvement score")
        ax.set_title(f"{name}: accuracy {r['accuracy_start']:.3f} -> {r['accuracy_end']:.3f}, "
                     f"ticks to 0.9 {r['ticks_to_confidence_start']:.1f} -> "
                     f"{r['ticks_to_confidence_end']:.1f}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--checkpoints", nargs="+", default=["parity16", "digits16"])
    parser.add_argument("--onm", action="store_true", help="train and start from the ONM")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    results = {}
    for name in args.checkpoints:
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run(name, args.cycles, args.onm, Path(tmp) / "run")
    print(f"\n{'checkpoint':<11}{'score per cycle (validation)':<36}{'hold-out':<28}"
          f"{'accuracy':>16}{'ticks->0.9':>14}")
    for name, r in results.items():
        scores = " ".join(f"{s:.3f}" for s in r["score_per_cycle"])
        hold = " ".join(f"{s:.3f}" for s in r["holdout_score_per_cycle"])
        print(f"{name:<11}{scores:<36}{hold:<28}{r['accuracy_start']:>7.4f}->"
              f"{r['accuracy_end']:.4f}{r['ticks_to_confidence_start']:>7.2f}->"
              f"{r['ticks_to_confidence_end']:.2f}")
        print(f"{'':<11}targets: {r['targets']}; promoted: {r['promoted'] or 'none'}")
    if args.png:
        plot(results, args.png)
        print(f"wrote {args.png}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cycles": args.cycles, "onm": args.onm,
                                         "config": SelfPlayConfig().to_dict(),
                                         "runs": results}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
