"""Train a search agent on SearchQA-v0 (easy split): cold-start SFT, then multi-turn GRPO.

The R1 recipe at small scale, with the public API only:

1. imitate the scripted oracle (``train_sft``: episodes rendered as one assistant
   sequence, retrieved passages masked out of the loss);
2. GRPO with TRL's ``GRPOTrainer`` (``train_grpo``: G episodes per question,
   rewards from the env's components, detector rates logged, curves.png);
3. score each stage on held-out seeds (``evaluate_policy``).

By default it runs the tiny Qwen2 model on CPU in minutes. For the real model::

    python examples/train_search_agent_grpo.py --model /models/DeepSeek-R1-Distill-Qwen-1.5B \
        --sft-lr 1e-5 --grpo-lr 1e-6 --max-new-tokens 512 --max-completion-tokens 2048

(full fine-tuning of 1.5B needs a GPU with ~28 GB; see the docs for LoRA).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from thinkgym.agents.llm import load_model_and_tokenizer
from thinkgym.agents.tiny import tiny_model_path
from thinkgym.training.evaluate import evaluate_policy
from thinkgym.training.grpo import GRPOTrainConfig, make_env, train_grpo
from thinkgym.training.sft import SFTTrainConfig, train_sft

ENV_ID = "SearchQA-v0"
ENV_KWARGS = {"split": "easy"}  # single-hop questions: one search, then answer
EVAL_SEED_BASE = 1_000_000  # far from the training seeds


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="local model dir (default: the tiny model)")
    p.add_argument("--out", default="runs/search_agent", help="output directory")
    p.add_argument("--sft-episodes", type=int, default=512, help="oracle episodes for SFT")
    p.add_argument("--sft-steps", type=int, default=200, help="SFT optimiser steps")
    p.add_argument("--sft-lr", type=float, default=5e-3, help="SFT learning rate")
    p.add_argument("--grpo-prompts", type=int, default=256, help="GRPO questions (env seeds)")
    p.add_argument("--grpo-steps", type=int, default=50, help="GRPO optimiser steps")
    p.add_argument("--grpo-lr", type=float, default=1e-4, help="GRPO learning rate")
    p.add_argument("--generations", type=int, default=8, help="episodes per question (G)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens per agent turn")
    p.add_argument("--max-completion-tokens", type=int, default=512,
                   help="tokens of the whole multi-turn episode")
    p.add_argument("--eval-episodes", type=int, default=50, help="held-out episodes per stage")
    return p.parse_args()


def score(stage: str, model_dir: Path, env, args: argparse.Namespace) -> None:
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + args.eval_episodes)
    result = evaluate_policy(model, tokenizer, env, seeds, temperature=0.6,
                             max_new_tokens=args.max_new_tokens,
                             max_completion_tokens=args.max_completion_tokens)
    print(f"{stage:<6} EM {result.success:.3f}  mean return {result.mean_reward:+.3f}  "
          f"turns {result.mean_turns:.2f}")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    base = Path(args.model) if args.model else tiny_model_path()
    env = make_env(GRPOTrainConfig(env_id=ENV_ID, env_kwargs=ENV_KWARGS))
    score("base", base, env, args)

    # 1. Cold start: imitate the scripted oracle (env tokens get no loss).
    sft_dir = train_sft(SFTTrainConfig(
        env_id=ENV_ID, env_kwargs=ENV_KWARGS, num_episodes=args.sft_episodes,
        max_steps=args.sft_steps, learning_rate=args.sft_lr,
        max_completion_tokens=args.max_completion_tokens, output_dir=str(out / "sft")), base)
    score("sft", sft_dir, env, args)

    # 2. GRPO from the SFT model: G episodes per question, rewards from the env's ledger.
    grpo_dir = train_grpo(GRPOTrainConfig(
        env_id=ENV_ID, env_kwargs=ENV_KWARGS, num_prompts=args.grpo_prompts,
        first_seed=100_000, num_generations=args.generations, prompts_per_step=2,
        max_steps=args.grpo_steps, learning_rate=args.grpo_lr,
        max_new_tokens=args.max_new_tokens, max_completion_tokens=args.max_completion_tokens,
        filter_zero_variance=True, output_dir=str(out / "grpo")), str(sft_dir))
    score("grpo", grpo_dir, env, args)
    print(f"models in {sft_dir} and {grpo_dir}; GRPO curves in {grpo_dir / 'curves.png'}")


if __name__ == "__main__":
    main()
