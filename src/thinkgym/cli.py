"""The ``thinkgym`` console script.

Each subcommand lives beside the package it drives, as a light module with a
``configure(parser)`` function that adds its arguments and sets ``func``; heavy
imports happen inside ``func``. Add a subcommand by appending to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

# (name, one-line help, "module:configure")
COMMANDS: list[tuple[str, str, str]] = [
    ("envs", "list every registered environment with a one-line description",
     "thinkgym.cli:_configure_envs"),
    ("demo", "a short end-to-end run on CPU with the bundled defaults",
     "thinkgym.demo:configure"),
    ("rescore", "re-score a saved run's reward ledger under new weights (no policy re-run)",
     "thinkgym.rewards.cli:configure"),
    ("ctm", "train and evaluate Continuous Thought Machines",
     "thinkgym.ctm_core.cli:configure"),
    ("train", "train LLM policies on text envs: sft (cold start), grpo, reinforce",
     "thinkgym.training.cli:configure"),
    ("models", "model aliases (e.g. smollm2-135m-instruct): list them, prepare one locally",
     "thinkgym.agents.models_cli:configure"),
    ("eval", "score a model on fixed seeds of a text env (success, format, cut-off rate)",
     "thinkgym.training.evaluate_cli:configure"),
]


def _configure_envs(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(func=_run_envs)


def _run_envs(args: argparse.Namespace) -> int:
    from thinkgym.envs import ENVS

    width = max((len(e.id) for e in ENVS), default=0)
    for entry in ENVS:
        print(f"{entry.id:<{width}}  {entry.description}")
    if not ENVS:
        print("(no environments registered)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands configured lazily by module)."""
    from thinkgym import __version__

    parser = argparse.ArgumentParser(
        prog="thinkgym", description="Agentic-RL environments, rewards, tools and trainers.")
    parser.add_argument("--version", action="version", version=f"thinkgym {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, target in COMMANDS:
        module_name, func_name = target.split(":")
        configure = getattr(importlib.import_module(module_name), func_name)
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``thinkgym`` script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
