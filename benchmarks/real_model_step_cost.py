"""Claim: full fine-tuning and LoRA both run GRPO on a real model on CPU; what a step costs.

SmolLM2-135M-Instruct (``smollm2-135m-instruct``) on Reasoning-v0 difficulty 1, the
settings of ``benchmarks/grpo_real_model.py`` (one group of G=8 episodes per step,
200 tokens per reply, T=0.9): seconds per GRPO step (min and median over the steps
after the first, which pays for warm-up) and the process's peak resident memory,
for full fine-tuning in fp32 and bf16 autocast and for LoRA (r=16 on every linear
layer of a block) in bf16. Each configuration runs in its own subprocess so its
peak memory is its own; they run one after another on the same threads.

    python benchmarks/real_model_step_cost.py --json benchmarks/results/real_model_step_cost.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS = {"full_fp32": (False, False), "full_bf16": (False, True), "lora_bf16": (True, True)}
"""name -> (LoRA, bf16)."""


def one(name: str, steps: int, threads: int, out: str) -> dict[str, Any]:
    """Run ``steps`` GRPO steps of configuration ``name`` in this process."""
    import torch
    from transformers import TrainerCallback

    from thinkgym.agents.llm import resolve_model_dir
    from thinkgym.training.grpo import GRPOTrainConfig, build_trainer
    from thinkgym.training.scaleout import build_lora_trainer
    from thinkgym.training.sft import quiet_trainer

    torch.set_num_threads(threads)
    lora, bf16 = CONFIGS[name]
    config = GRPOTrainConfig(
        env_id="Reasoning-v0", env_kwargs={"difficulty": 1}, num_prompts=64,
        num_generations=8, prompts_per_step=1, max_steps=steps, learning_rate=1e-4 if lora
        else 3e-6, temperature=0.9, max_new_tokens=200, max_completion_tokens=200, bf16=bf16,
        num_threads=threads, output_dir=out, curves_every=0, seed=0)
    model = str(resolve_model_dir("smollm2-135m-instruct"))
    trainer = build_lora_trainer(config, model) if lora else build_trainer(config, model)
    quiet_trainer(trainer)
    marks: list[float] = []

    class _Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            marks.append(time.perf_counter())

    trainer.add_callback(_Clock())
    start = time.perf_counter()
    trainer.train()
    times = [b - a for a, b in zip([start, *marks[:-1]], marks, strict=True)]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    tokens = [h.get("completions/mean_length") for h in trainer.state.log_history
              if "completions/mean_length" in h]
    return {"seconds_per_step": times, "trainable_params": trainable,
            "mean_completion_tokens": statistics.fmean(tokens) if tokens else None,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # the subprocess entry
    p.add_argument("--out-dir", default="runs/bench_step_cost")
    args = p.parse_args()
    if args.only:
        print(json.dumps(one(args.only, args.steps, args.threads,
                             str(Path(args.out_dir) / args.only))))
        return
    result: dict[str, Any] = {"model": "smollm2-135m-instruct", "steps": args.steps,
                              "threads": args.threads, "configs": {}}
    print(f"{'config':<11} {'s/step min':>10} {'median':>8} {'peak RSS GB':>12} {'trainable':>12}")
    for name in CONFIGS:
        proc = subprocess.run([sys.executable, __file__, "--only", name, "--steps",
                               str(args.steps), "--threads", str(args.threads), "--out-dir",
                               args.out_dir], capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        after_first = r["seconds_per_step"][1:] or r["seconds_per_step"]
        r["min"], r["median"] = min(after_first), statistics.median(after_first)
        result["configs"][name] = r
        print(f"{name:<11} {r['min']:>10.1f} {r['median']:>8.1f} {r['peak_rss_gb']:>12.2f} "
              f"{r['trainable_params']:>12,}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
