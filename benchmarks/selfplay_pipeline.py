"""Self-play data generation: does the three-stage pipeline pay, and does streaming save memory?

Claims (issue 15), measured side by side in one process on parity16 (the bundled
checkpoint, one torch thread per stage), 250-tick rollouts in 10-tick chunks:

* ``pipeline_speedup``: pairs evaluated per second of ``mode="pipeline"`` with its
  defaults (the producer in this process; one forked worker process that filters and,
  in a writer thread, writes; chunks travel through shared-memory slots) over
  ``mode="serial"`` (the same work, chunk by chunk, in one thread with one torch
  thread). Target >= 1.3 on this 2-core machine. Also reported: the same pipeline with
  thread stages (``pipeline_threads``: they share the producer's GIL) and the serial run
  with two torch threads (``serial_2threads``), the other honest way to use both cores.
  ``producer_share`` is the producer's part of the serial run's time; no schedule of
  the other stages can beat ``amdahl_bound = 1 / producer_share``.
* ``streaming_peak_mem_ratio``: peak RSS of a process streaming chunk by chunk
  (``mode="serial"``: one process, so its RSS is exact) over a process running
  ``mode="all_at_once"`` (all 250 ticks, then the filter), one 1024-item rollout batch
  each, fresh processes. Target <= 0.25. The RSS includes the interpreter and torch
  (~0.25 GB), which streaming cannot save. The process pipeline's figure (its peak plus
  its worker's, double-counting the pages they share after the fork) is reported as
  ``pipeline_peak_mem_ratio_upper_bound``.
* ``pairs_lost``: over every run, pairs the filters accepted minus pairs the buffer
  confirmed written, plus written minus readable (the buffer's count). Target 0.

Modes are interleaved (serial, pipeline, pipeline with threads, serial x2 threads,
repeat) so machine load hits them alike; min and median over repeats are reported.

    python benchmarks/selfplay_pipeline.py --repeats 3 \
        --json benchmarks/results/selfplay_pipeline.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from thinkgym.ctm_core.checkpoint import load_checkpoint
from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer
from thinkgym.ctm_core.selfplay.generator import DataGenerator, GeneratorConfig
from thinkgym.ctm_core.selfplay.weights import WeightManager


def setup(root: Path) -> tuple[WeightManager, DiskReplayBuffer]:
    model, task, _ = load_checkpoint("parity16")
    weights = WeightManager.create(root / "weights", model, task, n_random_experts=2, seed=0,
                                   overwrite=True)
    return weights, DiskReplayBuffer(root / "replay", capacity=10_000_000)


def run(weights: WeightManager, buffer: DiskReplayBuffer, cfg: GeneratorConfig,
        threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    before = buffer.count()
    report = DataGenerator(weights, buffer).run(cfg)
    readable = buffer.count() - before
    return {"pairs_evaluated_per_s": report.pairs_evaluated_per_s,
            "pairs_written_per_s": report.pairs_written_per_s,
            "pairs_evaluated": report.pairs_evaluated, "pairs_accepted": report.pairs_accepted,
            "pairs_written": report.pairs_written, "readable": readable,
            "seconds": report.seconds, "stage_seconds": report.stage_seconds,
            "lost": (report.pairs_accepted - report.pairs_written)
            + (report.pairs_written - readable)}


def _experiments() -> Any:
    """examples/selfplay_experiments.py, whose ``schedule`` runs a generation in a fresh
    process and reports its peak RSS (one implementation for the benchmark and the A/B)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "selfplay_experiments.py"
    spec = importlib.util.spec_from_file_location("selfplay_experiments", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4, help="rollout batches per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ticks", type=int, default=250)
    parser.add_argument("--rule", default="strict", choices=("strict", "loose"))
    parser.add_argument("--memory-batch", type=int, default=1024)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"serial": [], "pipeline": [],
                                               "pipeline_threads": [], "serial_2threads": []}
    with tempfile.TemporaryDirectory() as tmp:
        weights, buffer = setup(Path(tmp))
        base = GeneratorConfig(batches=args.batches, batch_size=args.batch_size,
                               ticks=args.ticks, chunk_ticks=10, rule=args.rule, p_best=0.5)
        run(weights, buffer, base, 1)  # warm-up: caches, allocator, first shard files
        for r in range(args.repeats):
            for name, mode, stages, threads in (
                    ("serial", "serial", "threads", 1), ("pipeline", "pipeline", "processes", 1),
                    ("pipeline_threads", "pipeline", "threads", 1),
                    ("serial_2threads", "serial", "threads", 2)):
                cfg = GeneratorConfig(**{**base.__dict__, "mode": mode, "seed": r,
                                         "stages": stages})
                runs[name].append(run(weights, buffer, cfg, threads))
                print(f"repeat {r + 1}/{args.repeats} {name:<16} "
                      f"{runs[name][-1]['pairs_evaluated_per_s']:>9.0f} pairs evaluated/s "
                      f"{runs[name][-1]['pairs_written_per_s']:>8.0f} written/s", flush=True)
    rate = {k: [x["pairs_evaluated_per_s"] for x in v] for k, v in runs.items()}
    med = {k: statistics.median(v) for k, v in rate.items()}
    speedups = [p / s for p, s in zip(rate["pipeline"], rate["serial"], strict=True)]
    print("peak RSS: pipeline (streaming) vs all-at-once, fresh processes ...", flush=True)
    stages = {k: statistics.median(x["stage_seconds"][k] for x in runs["serial"])
              for k in ("produce", "filter", "write")}
    producer_share = stages["produce"] / sum(stages.values())
    experiments = _experiments()
    mem = {mode: experiments.schedule(mode, args.memory_batch, args.ticks, "parity16")
           for mode in ("serial", "pipeline", "all_at_once")}
    lost = sum(x["lost"] for v in runs.values() for x in v) + sum(
        (m["accepted"] - m["written"]) + (m["written"] - m["readable"]) for m in mem.values())
    result = {
        "config": {"checkpoint": "parity16", "batches": args.batches,
                   "batch_size": args.batch_size, "ticks": args.ticks, "chunk_ticks": 10,
                   "rule": args.rule, "filter_workers": base.filter_workers,
                   "writers": base.writers, "stages": base.stages,
                   "repeats": args.repeats, "memory_batch": args.memory_batch,
                   "cpu_count": os.cpu_count()},
        "pairs_evaluated_per_s": {k: {"min": min(v), "median": med[k]} for k, v in rate.items()},
        "pairs_written_per_s": {k: statistics.median(x["pairs_written_per_s"] for x in v)
                                for k, v in runs.items()},
        "pipeline_speedup": statistics.median(speedups),
        "pipeline_speedup_min": min(speedups),
        "pipeline_vs_serial_2threads": med["pipeline"] / med["serial_2threads"],
        "pipeline_threads_speedup": med["pipeline_threads"] / med["serial"],
        "serial_stage_seconds": stages,
        "producer_share": producer_share,
        "amdahl_bound": 1 / producer_share,
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in mem.items()},
        "streaming_peak_mem_ratio": mem["serial"]["peak_rss_mb"]
        / mem["all_at_once"]["peak_rss_mb"],
        "pipeline_peak_mem_ratio_upper_bound": mem["pipeline"]["peak_rss_mb"]
        / mem["all_at_once"]["peak_rss_mb"],
        "pairs_lost": lost,
        "runs": runs,
    }
    print(f"\n{'mode':<18}{'pairs evaluated/s (min / median)':>34}{'written/s':>12}")
    for k in rate:
        print(f"{k:<18}{min(rate[k]):>16.0f} / {med[k]:<15.0f}"
              f"{result['pairs_written_per_s'][k]:>12.0f}")
    print(f"pipeline_speedup {result['pipeline_speedup']:.2f} (min "
          f"{result['pipeline_speedup_min']:.2f}; target >= 1.3); vs serial with 2 threads "
          f"{result['pipeline_vs_serial_2threads']:.2f}")
    print(f"serial run by stage (median s): {', '.join(f'{k} {v:.3f}' for k, v in stages.items())}"
          f" -> the producer is {producer_share:.0%} of the work: overlapping the other stages "
          f"can give at most {1 / producer_share:.2f}x")
    print(f"peak RSS MB: streaming {mem['serial']['peak_rss_mb']:.0f} (pipeline + its worker "
          f"<= {mem['pipeline']['peak_rss_mb']:.0f}), all-at-once "
          f"{mem['all_at_once']['peak_rss_mb']:.0f} -> ratio "
          f"{result['streaming_peak_mem_ratio']:.3f} (target <= 0.25)")
    print(f"pairs_lost {lost} (target 0)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
