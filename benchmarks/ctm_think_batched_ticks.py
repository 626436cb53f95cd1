"""Would batching CTM ticks inside a CTMThink-v0 vector env pay off? (issue 4, item 5)

Measures, at the default config (parity16, one torch thread), for ``num_envs`` envs:
the time of one tick per env run one env at a time (what the sync vector env does now),
the time of one batched tick over all envs, and the sync vector env's steps/s with
``think_1`` actions. The best case for batching replaces the per-env ticks inside a
vector step by one batched tick; the rest of the step (readout features, rewards,
bookkeeping) stays, so the projected speed-up is bounded by Amdahl's law:

    projected = step_time / (step_time - per_env_ticks + batched_tick)

    python benchmarks/ctm_think_batched_ticks.py --repeats 5 \
        --json benchmarks/results/ctm_think_batched_ticks.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import thinkgym
from thinkgym.ctm_core.checkpoint import load_checkpoint


def tick_ms(model, task, num_envs: int, batched: bool, ticks: int = 50) -> float:
    """Milliseconds for one tick of every env, batched or one env at a time."""
    batch = task.batch(range(num_envs), "test")
    with torch.no_grad():
        if batched:
            kv = model.compute_kv(batch.inputs)
            state = model.init_state(kv)
            t0 = time.perf_counter()
            for _ in range(ticks):
                state, _, _ = model.tick(state, kv)
        else:
            kvs = [model.compute_kv(batch.inputs[i:i + 1]) for i in range(num_envs)]
            states = [model.init_state(kv) for kv in kvs]
            t0 = time.perf_counter()
            for _ in range(ticks):
                for i in range(num_envs):
                    states[i], _, _ = model.tick(states[i], kvs[i])
    return (time.perf_counter() - t0) / ticks * 1e3


def vector_step_ms(num_envs: int, steps: int = 200) -> float:
    """Milliseconds per step of the sync vector env (all envs think one tick)."""
    envs = thinkgym.make_vec("CTMThink-v0", num_envs=num_envs, vectorization_mode="sync")
    envs.reset(seed=0)
    actions = np.zeros(num_envs, dtype=np.int64)
    t0 = time.perf_counter()
    for _ in range(steps):
        envs.step(actions)
    out = (time.perf_counter() - t0) / steps * 1e3
    envs.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(1)
    model, task, _ = load_checkpoint("parity16")
    model.requires_grad_(False)
    runs = []
    for _ in range(args.repeats):
        runs.append({"per_env_ticks_ms": tick_ms(model, task, args.num_envs, batched=False),
                     "batched_tick_ms": tick_ms(model, task, args.num_envs, batched=True),
                     "vector_step_ms": vector_step_ms(args.num_envs)})
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    step, per_env, batched = med["vector_step_ms"], med["per_env_ticks_ms"], med["batched_tick_ms"]
    projected = step / (step - per_env + batched)
    print(f"{args.num_envs} envs (median of {args.repeats}): ticks one env at a time "
          f"{per_env:.2f} ms, one batched tick {batched:.2f} ms ({per_env / batched:.1f}x); "
          f"sync vector step {step:.2f} ms = {args.num_envs * 1e3 / step:,.0f} env steps/s; "
          f"batching ticks would give at most {projected:.2f}x")
    result = {"num_envs": args.num_envs, "runs": runs, "median": med,
              "sync_env_steps_per_s": args.num_envs * 1e3 / step,
              "tick_speedup": per_env / batched, "projected_vector_speedup": projected,
              "load_average": os.getloadavg()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
