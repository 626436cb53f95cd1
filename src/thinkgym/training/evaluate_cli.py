"""``thinkgym eval``: score a model on fixed seeds of a text env, as training plays them.

Light to import (argument definitions only): torch and transformers are imported
inside :func:`run_eval`. Episodes are played and scored by
:func:`thinkgym.training.evaluate.evaluate_policy`: success (correctness where the
env measures it), lenient match, format rate and failures, mean return, turns,
tokens and the share of episodes cut off by a token budget. Without ``--model`` the
tiny model is used with its training settings (64 tokens per turn, 512 per
episode), exactly as ``thinkgym train`` does::

    thinkgym eval --env Reasoning-v0 --model models/SmolLM2-135M-Instruct --json eval.json
    thinkgym eval --env SearchQA-v0 --split easy --model runs/grpo
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

__all__ = ["DEFAULT_MAX_COMPLETION_TOKENS", "DEFAULT_MAX_NEW_TOKENS", "configure",
           "format_table", "run_eval"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 512
"""Tokens per agent turn for a real model (64 cut off 28 of 30 SmolLM2 replies)."""
DEFAULT_MAX_COMPLETION_TOKENS = 1024
"""Tokens of the whole multi-turn assistant sequence for a real model."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` arguments and set ``func``."""
    from thinkgym.training.cli import add_env_and_model

    add_env_and_model(parser, env=None)
    parser.add_argument("--episodes", type=int, default=50,
                        help="episodes (env seeds first-seed .. first-seed + N - 1)")
    parser.add_argument("--first-seed", type=int, default=100_000,
                        help="first env seed (default away from the training seeds 0..)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="sampling temperature (0: greedy)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"tokens per agent turn (default {DEFAULT_MAX_NEW_TOKENS}; 64 for "
                        "the tiny model, as in training)")
    parser.add_argument("--max-completion-tokens", type=int, default=None,
                        help=f"tokens of the whole episode (default "
                        f"{DEFAULT_MAX_COMPLETION_TOKENS}; 512 for the tiny model)")
    parser.add_argument("--max-prompt-tokens", type=int, default=2048, help="prompt budget")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="episodes played together in one batched forward pass")
    parser.add_argument("--system-prompt", default=None, help="optional system message")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generators")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write the result (EvalResult.to_dict() plus 'config') here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """``thinkgym eval``: play, score, print the table, write the JSON."""
    from pathlib import Path

    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.errors import ConfigError
    from thinkgym.training.cli import (
        TINY_MAX_COMPLETION_TOKENS,
        TINY_MAX_NEW_TOKENS,
        env_kwargs,
        resolve_model,
    )
    from thinkgym.training.evaluate import evaluate_policy

    if args.episodes < 1:
        raise ConfigError("must be >= 1", field="--episodes", got=args.episodes,
                          fix="pass e.g. --episodes 50")
    if args.env not in gym.registry:
        raise ConfigError("env is not registered", field="--env", got=args.env,
                          fix="use a text env, e.g. Reasoning-v0, SearchQA-v0 or ToolCall-v0 "
                          "(thinkgym envs lists them)")
    kwargs = env_kwargs(args)
    model_name, tiny = resolve_model(args)
    max_new = args.max_new_tokens or (TINY_MAX_NEW_TOKENS if tiny else DEFAULT_MAX_NEW_TOKENS)
    max_completion = args.max_completion_tokens or (
        TINY_MAX_COMPLETION_TOKENS if tiny else DEFAULT_MAX_COMPLETION_TOKENS)
    env = gym.make(args.env, **kwargs)
    model, tokenizer = load_model_and_tokenizer(model_name)
    seeds = range(args.first_seed, args.first_seed + args.episodes)
    result = evaluate_policy(
        model, tokenizer, env, seeds, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=max_new, max_prompt_tokens=args.max_prompt_tokens,
        max_completion_tokens=max_completion, system_prompt=args.system_prompt, seed=args.seed,
        batch_size=args.batch_size, progress=not args.no_progress)
    print(f"{args.env}{f' {kwargs}' if kwargs else ''}  model {model_name}  "
          f"seeds {seeds.start}..{seeds.stop - 1}")
    print(format_table(result))
    if args.json:
        config = {"env": args.env, "env_kwargs": kwargs, "model": model_name,
                  "first_seed": args.first_seed, "episodes": args.episodes,
                  "temperature": args.temperature, "top_p": args.top_p,
                  "max_new_tokens": max_new, "max_completion_tokens": max_completion,
                  "max_prompt_tokens": args.max_prompt_tokens, "seed": args.seed,
                  "batch_size": args.batch_size}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**result.to_dict(), "config": config}, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def format_table(result: Any) -> str:
    """The headline figures of an :class:`~thinkgym.training.evaluate.EvalResult`, one a line."""
    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    n = result.episodes
    rows = [
        ("success", f"{result.success:.3f}  ({result.success_metric})"),
        ("lenient", rate(result.lenient)),
        ("format rate", rate(result.format_rate)),
        ("format failures", f"{result.format_failures} of {n}"),
        ("mean return", f"{result.mean_reward:+.3f}"),
        ("mean turns", f"{result.mean_turns:.2f}"),
        ("tokens", f"{result.mean_completion_tokens:.1f}  (mean per episode)"),
        ("cut-off rate", f"{result.cut_off:.3f}"),
        ("seconds", f"{result.seconds:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
