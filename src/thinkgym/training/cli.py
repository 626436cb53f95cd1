"""``thinkgym train sft|grpo|reinforce|mag``: the LLM trainers (and REINFORCE, MAG) from the CLI.

Light to import (argument definitions only): torch, transformers and trl are
imported inside the run functions, so ``thinkgym --help`` stays fast.

Without ``--model`` the commands use the tiny Qwen2 model
(:func:`thinkgym.agents.tiny.tiny_model_path`, built offline on first use) with
settings sized for it (higher learning rates, short turns); with ``--model PATH``
(a local ``save_pretrained`` directory, e.g. DeepSeek-R1-Distill-Qwen-1.5B, or a
model alias such as ``smollm2-135m-instruct``, see ``thinkgym models list``) the
library's defaults apply, unless the directory descends from the tiny model (it
carries ``thinkgym_tiny.json``, which SFT and GRPO copy into their outputs). The
cold-start recipe::

    thinkgym train sft  --env SearchQA-v0 --split easy --out runs/sft
    thinkgym train grpo --env SearchQA-v0 --split easy --model runs/sft --out runs/grpo

On a real instruct model (``benchmarks/grpo_real_model.py`` measures this recipe)::

    thinkgym train sft  --env Reasoning-v0 --env-arg difficulty=1 --model smollm2-135m-instruct \
        --steps 40 --lr 3e-5 --min-reward 0.5 --bf16 --out runs/sft
    thinkgym train grpo --env Reasoning-v0 --env-arg difficulty=1 --model runs/sft --bf16 \
        --env-arg 'reward_weights={"lenient_match": 0.5}' --lr 3e-6 --generations 8 \
        --prompts-per-step 1 --temperature 0.9 --max-new-tokens 200 --out runs/grpo
"""

from __future__ import annotations

import argparse
import importlib
import logging
from typing import Any

__all__ = ["configure", "env_kwargs", "resolve_model"]

logger = logging.getLogger(__name__)

# Settings for the tiny model when --model is not given: it is trained from scratch,
# so it needs learning rates ~100x those of a pretrained 1.5B model, and short turns.
TINY_SFT_LR = 3e-3
TINY_GRPO_LR = 1e-4  # 5e-4 and up undid the SFT model's skill (benchmarks/grpo_learning.py)
TINY_MAX_NEW_TOKENS = 64
TINY_MAX_COMPLETION_TOKENS = 512


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``sft``, ``grpo``, ``reinforce`` and ``mag`` subcommands."""
    sub = parser.add_subparsers(dest="train_command", metavar="SUBCOMMAND")
    _configure_sft(sub.add_parser(
        "sft", help="cold start: fine-tune on scripted-oracle episodes (env tokens masked)",
        description="Render scripted-oracle episodes of a text env exactly as the GRPO rollout "
        "does and fine-tune the model on them with TRL's SFTTrainer (env tokens get no loss). "
        "Saves a model directory usable by 'train grpo --model'."))
    _configure_grpo(sub.add_parser(
        "grpo", help="multi-turn GRPO on a text env (TRL GRPOTrainer + env rollout)",
        description="GRPO with TRL's GRPOTrainer: each episode is played as one assistant "
        "sequence, env-inserted tokens masked; rewards are the env's components, detectors "
        "are logged. Writes checkpoints, curves.png and the final model."))
    importlib.import_module("thinkgym.training.reinforce").configure(sub.add_parser(
        "reinforce", help="REINFORCE with a baseline for small policies (reference trainer)",
        description="REINFORCE with a baseline over macro-actions (e.g. search-or-answer on "
        "SearchQA-v0 features)."))
    importlib.import_module("thinkgym.training.mag").configure(sub.add_parser(
        "mag", help="MAG memory-gated halting: --stage 1 detection, 2 joint, 3 GRPO",
        description="Progressive training of the MAG detection channel on logged SearchQA-v0 "
        "episodes (stage 1: LM frozen; stage 2: joint) and GRPO with the query reward "
        "(stage 3). See docs/mag.md."))
    parser.set_defaults(func=lambda args: _missing(parser))


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def add_env_and_model(parser: argparse.ArgumentParser, env: str | None = "SearchQA-v0") -> None:
    """``--env`` (required when ``env`` is None), ``--split``, ``--env-arg`` and ``--model``."""
    parser.add_argument("--env", default=env, required=env is None,
                        help="registered text env id, e.g. Reasoning-v0")
    parser.add_argument("--split", default=None,
                        help="SearchQA-v0 question split (train, test, easy = single-hop)")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                        help="any other gym.make argument (repeatable; values parsed as JSON)")
    parser.add_argument("--model", default=None,
                        help="local model directory (save_pretrained) or model alias (thinkgym "
                        "models list); default: the tiny model")


def _common(parser: argparse.ArgumentParser, out: str) -> None:
    add_env_and_model(parser)
    parser.add_argument("--out", default=out, help="output directory (final model, checkpoints)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: sized for the model, see module doc)")
    parser.add_argument("--max-prompt-tokens", type=int, default=2048, help="prompt budget")
    parser.add_argument("--max-completion-tokens", type=int, default=None,
                        help="budget of the whole multi-turn assistant sequence")
    parser.add_argument("--system-prompt", default=None, help="optional system message")
    parser.add_argument("--save-steps", type=int, default=0,
                        help="checkpoint every N steps (0: final model only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data order and sampling")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast for training: ~3x faster for a 135M+ model on a CPU "
                        "with AMX, slower for the tiny model (generation stays fp32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _configure_sft(parser: argparse.ArgumentParser) -> None:
    _common(parser, "runs/sft")
    parser.add_argument("--episodes", type=int, default=256,
                        help="oracle episodes (env seeds first-seed .. first-seed + N - 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="first env seed")
    parser.add_argument("--epochs", type=float, default=1.0,
                        help="passes over the episodes when --steps is not given")
    parser.add_argument("--batch-size", type=int, default=8, help="episodes per step")
    parser.add_argument("--min-reward", type=float, default=None,
                        help="keep only oracle episodes with at least this return")
    parser.set_defaults(func=run_sft)


def _configure_grpo(parser: argparse.ArgumentParser) -> None:
    _common(parser, "runs/grpo")
    parser.add_argument("--prompts", type=int, default=64,
                        help="dataset rows (env seeds first-seed .. first-seed + N - 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="first env seed")
    parser.add_argument("--generations", type=int, default=4, help="G: episodes per prompt")
    parser.add_argument("--prompts-per-step", type=int, default=2, help="groups per step")
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: no ref)")
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout temperature")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="tokens per turn")
    parser.add_argument("--filter-zero-variance", action="store_true",
                        help="mask out groups whose episodes all scored the same")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                        help="resume from a checkpoint dir (or the latest in --out)")
    parser.add_argument("--curves-every", type=int, default=10,
                        help="redraw curves.png every N logs (0: never)")
    parser.set_defaults(func=run_grpo)


def env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``gym.make`` keyword arguments from ``--env-arg KEY=VALUE`` and ``--split``."""
    from thinkgym.ctm_core.cli import parse_assignments
    from thinkgym.errors import ConfigError

    kwargs = parse_assignments(args.env_arg, "--env-arg")
    if args.split is not None:
        if args.env != "SearchQA-v0":
            raise ConfigError("--split is SearchQA-v0's", field="--split", got=args.split,
                              fix="use --env-arg KEY=VALUE for other envs")
        kwargs["split"] = args.split
    return kwargs


def resolve_model(args: argparse.Namespace) -> tuple[str, bool]:
    """``(model directory, is it the tiny model or trained from it)`` from ``--model``."""
    from pathlib import Path

    if args.model is not None:  # SFT/GRPO outputs of the tiny model keep its marker file
        return args.model, (Path(args.model) / "thinkgym_tiny.json").is_file()
    from thinkgym.agents.tiny import tiny_model_path

    path = tiny_model_path()
    logger.info("no --model: using the tiny model at %s", path)
    return str(path), True


_env_kwargs, _model = env_kwargs, resolve_model  # the names before they were public


def run_sft(args: argparse.Namespace) -> int:
    """``thinkgym train sft``."""
    from thinkgym.training.sft import SFTTrainConfig, train_sft

    model, tiny = _model(args)
    config = SFTTrainConfig(
        env_id=args.env, env_kwargs=_env_kwargs(args), num_episodes=args.episodes,
        first_seed=args.first_seed, min_reward=args.min_reward, max_steps=args.steps or 0,
        num_train_epochs=args.epochs,
        learning_rate=args.lr or (TINY_SFT_LR if tiny else SFTTrainConfig.learning_rate),
        per_device_batch_size=args.batch_size, max_prompt_tokens=args.max_prompt_tokens,
        max_completion_tokens=args.max_completion_tokens or (
            TINY_MAX_COMPLETION_TOKENS if tiny else SFTTrainConfig.max_completion_tokens),
        system_prompt=args.system_prompt, seed=args.seed, output_dir=args.out,
        save_steps=args.save_steps, bf16=args.bf16)
    out = train_sft(config, model, progress=not args.no_progress)
    print(f"SFT model saved to {out} (next: thinkgym train grpo --model {out})")
    return 0


def run_grpo(args: argparse.Namespace) -> int:
    """``thinkgym train grpo``."""
    from thinkgym.training.grpo import GRPOTrainConfig, train_grpo

    model, tiny = _model(args)
    d = GRPOTrainConfig
    config = GRPOTrainConfig(
        env_id=args.env, env_kwargs=_env_kwargs(args), num_prompts=args.prompts,
        first_seed=args.first_seed, num_generations=args.generations,
        prompts_per_step=args.prompts_per_step, max_steps=args.steps or d.max_steps,
        learning_rate=args.lr or (TINY_GRPO_LR if tiny else d.learning_rate), beta=args.beta,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens or (TINY_MAX_NEW_TOKENS if tiny else d.max_new_tokens),
        max_prompt_tokens=args.max_prompt_tokens,
        max_completion_tokens=args.max_completion_tokens or (
            TINY_MAX_COMPLETION_TOKENS if tiny else d.max_completion_tokens),
        filter_zero_variance=args.filter_zero_variance, system_prompt=args.system_prompt,
        seed=args.seed, output_dir=args.out, save_steps=args.save_steps,
        curves_every=args.curves_every, bf16=args.bf16)
    out = train_grpo(config, model, progress=not args.no_progress,
                     resume_from_checkpoint=args.resume)
    print(f"GRPO model saved to {out}; curves in {out / 'curves.png'}")
    return 0
