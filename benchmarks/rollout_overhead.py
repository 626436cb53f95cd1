"""Claim: a multi-turn SearchQA-v0 rollout costs at most 1.2x the same KV-cache sampler
generating the same tokens with no environment in the loop (``rollout_overhead`` <= 1.2).

Result (``results/rollout_overhead.json``, GRPO arm, 32 episodes x 5 rounds, 1 thread):
1.28x (min 1.279, median 1.282): target not met. An episode averages 49 agent tokens of
120 completion tokens; the other 71 are env text, tokenised and prefilled.

What is compared, per episode, on one model at batch 1:

* ``rollout``: :func:`thinkgym.training.rollout.play_episode` — the agent samples a turn,
  the env steps (parse, search, reward), its text is tokenised and fed into the cache,
  and so on until the episode ends;
* ``sampler only``: the same sampler (:class:`thinkgym.agents.llm.DecodeSession` over the
  same prompt, same temperature / top-p, same per-token stop-string check) sampling the
  episode's number of agent tokens in one go, with no env steps and no env tokens.

``rollout_overhead`` = rollout time / sampler-only time, summed over ``--episodes``
episodes, min (and median) over ``--rounds`` rounds. It counts everything an env adds to
generation: env steps, tokenising env text, prefilling it into the cache, per-turn set-up.
The model is the GRPO arm of ``benchmarks/grpo_learning.py`` when present (the env,
prompt cut and seeds are that benchmark's), else the default tiny model; weights only
change how long episodes are, and the token counts are reported.

This replaces the comparison with ``model.generate`` that ``grpo_learning.py`` used to
make: a different decoder, so its ratio (0.35x) mixed decoder speed into env overhead.

    OMP_NUM_THREADS=1 python benchmarks/rollout_overhead.py \\
        --json benchmarks/results/rollout_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

GRPO_MODEL = Path("runs/bench_grpo_learning/arm_grpo")
EVAL_SEED_BASE = 1_000_000  # grpo_learning.py's held-out seeds start here


def measure(model_dir: Path, episodes: int, rounds: int, max_prompt_tokens: int,
            threads: int) -> dict[str, Any]:
    import torch

    from thinkgym.agents.llm import (
        LLMPolicy,
        LLMPolicyConfig,
        generation_threads,
        load_model_and_tokenizer,
    )
    from thinkgym.training.grpo import GRPOTrainConfig, make_env
    from thinkgym.training.rollout import play_episode

    torch.set_num_threads(threads)
    env = make_env(GRPOTrainConfig(env_id="SearchQA-v0",
                                   env_kwargs={"split": "easy", "top_k": 1}))
    model, tok = load_model_and_tokenizer(str(model_dir))
    model.eval()
    config = LLMPolicyConfig(model=str(model_dir), temperature=1.0, top_p=1.0,
                             max_new_tokens=64, max_context_tokens=2560)
    policy = LLMPolicy(model, tok, config)
    # Stop strings that never occur, as long as the real ones: each sampled token pays the
    # same tail decode as in the rollout, but the sampler runs to the token count.
    never = tuple("\x00" * len(s) for s in config.stop_strings)
    seeds = [EVAL_SEED_BASE + i for i in range(episodes)]
    ratios, rollout_s, sampler_s, tokens = [], [], [], []
    for r in range(rounds):
        t_roll = t_plain = 0.0
        for i, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(r * 1000 + i)
            t = time.perf_counter()
            ep = play_episode(env, policy, seed=seed, generator=gen, max_completion_tokens=512,
                              max_prompt_tokens=max_prompt_tokens, max_new_tokens=64)
            t_roll += time.perf_counter() - t
            session = policy.start(ep.prompt_ids)
            gen = torch.Generator().manual_seed(r * 1000 + i)
            t = time.perf_counter()
            with generation_threads(model, None):
                turn = session.sample(tok, ep.agent_tokens, temperature=1.0, top_p=1.0,
                                      stop_strings=never, eos_ids=(), generator=gen)
            t_plain += time.perf_counter() - t
            if len(turn.ids) != ep.agent_tokens:
                raise RuntimeError(f"sampler made {len(turn.ids)} tokens, wanted "
                                   f"{ep.agent_tokens}")
            if r == 0:
                tokens.append((len(ep.prompt_ids), len(ep.completion_ids), ep.agent_tokens))
        ratios.append(t_roll / t_plain)
        rollout_s.append(t_roll)
        sampler_s.append(t_plain)
        print(f"round {r}: rollout {t_roll:.2f}s, sampler only {t_plain:.2f}s, "
              f"ratio {ratios[-1]:.3f}")
    return {
        "rollout_overhead": min(ratios), "rollout_overhead_median": statistics.median(ratios),
        "rollout_overhead_rounds": ratios, "rollout_seconds_rounds": rollout_s,
        "sampler_only_seconds_rounds": sampler_s, "target_overhead": 1.2,
        "target_overhead_met": min(ratios) <= 1.2,
        "mean_prompt_tokens": statistics.mean(p for p, _, _ in tokens),
        "mean_completion_tokens": statistics.mean(c for _, c, _ in tokens),
        "mean_agent_tokens": statistics.mean(a for _, _, a in tokens),
        "episodes": episodes, "rounds": rounds, "batch": 1, "threads": threads,
        "model": str(model_dir), "env": {"id": "SearchQA-v0", "split": "easy", "top_k": 1},
        "max_prompt_tokens": max_prompt_tokens, "load_avg_end": os.getloadavg(),
        "comparison": "play_episode vs DecodeSession.sample of the episode's agent-token "
                      "count from the same prompt, same model, batch 1, no env steps",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help=f"model dir (default: {GRPO_MODEL} if present, else the tiny "
                             "model)")
    parser.add_argument("--episodes", type=int, default=16, help="episodes per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (min / median)")
    parser.add_argument("--max-prompt-tokens", type=int, default=64,
                        help="prompt cut, as in grpo_learning.py")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    model_dir = args.model
    if model_dir is None:
        if GRPO_MODEL.exists():
            model_dir = GRPO_MODEL
        else:
            from thinkgym.agents.tiny import tiny_model_path

            model_dir = tiny_model_path()
    result = measure(model_dir, args.episodes, args.rounds, args.max_prompt_tokens,
                     args.threads)
    print(f"rollout overhead {result['rollout_overhead']:.3f}x min, "
          f"{result['rollout_overhead_median']:.3f}x median (target <= 1.2); "
          f"{result['mean_agent_tokens']:.1f} agent of {result['mean_completion_tokens']:.1f} "
          "completion tokens per episode")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
