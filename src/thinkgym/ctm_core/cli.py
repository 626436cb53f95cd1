"""``thinkgym ctm``: train and evaluate Continuous Thought Machines from the shell.

    thinkgym ctm train --task parity --length 16 --ticks 24 --steps 6000 --out runs/p16
    thinkgym ctm train --out runs/p16 --resume ...        # same flags: continue the run
    thinkgym ctm eval --checkpoint parity16 --samples 10000 --json p16.json --png p16.png
    thinkgym ctm export --checkpoint runs/p16/last.pt --out p16.pt   # slim, fresh eval
    thinkgym ctm selfplay --cycles 3 --root runs/selfplay            # self-play from parity16
    thinkgym ctm import ref/checkpoint_9999.pt --task parity --out ref-parity64  # reference file

Light to import (argument definitions only): torch is imported inside the run
functions, so ``thinkgym --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

__all__ = [
    "configure",
    "parse_assignments",
    "run_eval",
    "run_export",
    "run_import",
    "run_selfplay",
    "run_train",
    "train_config_from_args",
]

logger = logging.getLogger(__name__)

# Flags that set a CTMConfig field: (flag, field, type, help)
_MODEL_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--ticks", "iterations", int, "internal ticks per rollout during training"),
    ("--d-model", "d_model", int, "neurons D"),
    ("--d-input", "d_input", int, "attention width"),
    ("--heads", "heads", int, "attention heads"),
    ("--memory-length", "memory_length", int, "pre-activation history length M"),
    ("--synch", "n_synch_out", int, "neurons (pairs) for output and action synchronisation"),
)


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as JSON when they can be)."""
    from thinkgym.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE", field=flag, got=item,
                              fix=f"write e.g. {flag} embed_dim=32")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` and ``eval`` subcommands."""
    sub = parser.add_subparsers(dest="ctm_command", metavar="SUBCOMMAND")
    _configure_train(sub.add_parser("train", help="train a CTM on a task (resumable)",
                                    description="Train a CTM on a task (resumable)."))
    _configure_eval(sub.add_parser("eval", help="accuracy and certainty per tick on held-out "
                                   "items", description="Evaluate a checkpoint on held-out "
                                   "items: accuracy at every tick and at the most certain tick."))
    _configure_export(sub.add_parser(
        "export", help="slim copy of a checkpoint (no optimiser state) with a fresh eval",
        description="Write a slim checkpoint (weights, configs, a fresh held-out eval) from "
                    "any checkpoint, e.g. a run's last.pt."))
    _configure_import(sub.add_parser(
        "import", help="convert a reference-repo CTM checkpoint (backbone included)",
        description="Convert a checkpoint saved by SakanaAI/continuous-thought-machines "
        "(tasks/parity/train.py) into this library's format, backbone included; afterwards "
        "`ctm eval --checkpoint NAME`, the ctm_think tool and CTMThink-v0 load it by name."))
    _configure_selfplay(sub.add_parser(
        "selfplay", help="self-play: harvest improving (State_t, State_t+2) pairs, train "
        "challengers, tournament", description="Run CTM self-play cycles from a supervised "
        "checkpoint (generate -> ONM -> challenger cohort + merge -> tournament -> promote); "
        "writes cycles.csv, curves.png and TensorBoard logs under --root."))
    parser.set_defaults(func=lambda args: _missing(parser))


def _missing(parser: argparse.ArgumentParser) -> int:
    """``thinkgym ctm`` without a subcommand: print the usage, exit code 2."""
    parser.print_help()
    return 2


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="parity", help="parity, sort, maze or digits")
    p.add_argument("--length", type=int, help="parity/sort: sequence length")
    p.add_argument("--size", type=int, help="maze: grid side (odd, 7..39)")
    p.add_argument("--task-arg", action="append", metavar="KEY=VALUE",
                   help="any other task config field (repeatable), e.g. embed_dim=32")
    for flag, _, typ, help_text in _MODEL_FLAGS:
        p.add_argument(flag, type=typ, help=f"model: {help_text}")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="any other CTMConfig field (repeatable), e.g. memory_hidden_dims=8")
    p.add_argument("--steps", type=int, default=1000, help="total optimiser steps")
    p.add_argument("--batch-size", type=int, default=64, help="items per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--warmup", type=int, default=200, help="linear warmup steps before cosine")
    p.add_argument("--grad-clip", type=float, default=1.0, help="global grad-norm clip; 0: off")
    p.add_argument("--seed", type=int, default=0, help="seed of the run (model init, RNG)")
    p.add_argument("--out", required=True, help="run directory (last.pt, model.pt, eval.json)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between last.pt")
    p.add_argument("--eval-every", type=int, default=0, help="steps between held-out evals")
    p.add_argument("--eval-samples", type=int, default=1024, help="held-out items per eval")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines)")
    p.set_defaults(func=run_train)


def _configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH",
                   help="bundled name (e.g. parity16), a .pt file or a run directory")
    p.add_argument("--samples", type=int, default=1000, help="held-out items to evaluate")
    p.add_argument("--ticks", type=int, help="ticks to roll out (default: the trained number)")
    p.add_argument("--batch-size", type=int, default=256, help="items per forward pass")
    p.add_argument("--start-index", type=int, default=0, help="first test item index")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--png", metavar="PATH", help="write accuracy/certainty vs ticks")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype of the ticks (bfloat16: faster at large batch)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


def _configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH", help="source")
    p.add_argument("--out", required=True, help="the slim .pt file to write")
    p.add_argument("--eval-samples", type=int, default=1024,
                   help="held-out items for the stored eval (0: keep the stored metrics)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.set_defaults(func=run_export)


def _configure_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="the reference checkpoint file (.pt)")
    p.add_argument("--task", default="parity", help="task it was trained on (parity)")
    p.add_argument("--out", required=True, metavar="NAME_OR_PATH",
                   help="a name (stored in $THINKGYM_CTM_DIR or ~/.cache/thinkgym/ctm) or a "
                        ".pt path")
    p.add_argument("--heads", type=int, help="attention heads (default: the file's args)")
    p.add_argument("--iterations", type=int, help="default ticks (default: the file's args)")
    p.add_argument("--eval-samples", type=int, default=512,
                   help="held-out items to evaluate after importing (0: skip)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """``thinkgym ctm import``."""
    _passive_openmp()
    import torch

    from thinkgym.ctm_core.checkpoint import named_checkpoint_path
    from thinkgym.ctm_core.convert import import_reference_checkpoint
    from thinkgym.ctm_core.evaluate import evaluate_checkpoint, format_report

    torch.set_num_threads(args.threads)
    out = named_checkpoint_path(args.out)
    written = import_reference_checkpoint(args.path, out, task=args.task, heads=args.heads,
                                          iterations=args.iterations)
    print(f"wrote {written}")
    if args.eval_samples > 0:
        print(format_report(evaluate_checkpoint(str(written), samples=args.eval_samples,
                                                progress=False)))
    return 0


def _configure_selfplay(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="parity16", metavar="NAME_OR_PATH",
                   help="supervised starting point (bundled name or path)")
    p.add_argument("--root", default="runs/selfplay", help="run directory")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --root")
    p.add_argument("--cycles", type=int, default=3, help="self-play cycles")
    p.add_argument("--batches", type=int, default=4, help="rollout batches generated per cycle")
    p.add_argument("--batch-size", type=int, default=64, help="items per rollout batch")
    p.add_argument("--ticks", type=int, default=60, help="ticks per generation rollout")
    p.add_argument("--chunk-ticks", type=int, default=10, help="ticks per pipeline chunk")
    p.add_argument("--rule", choices=("strict", "loose"), default="strict", help="pair filter")
    p.add_argument("--weight-noise", type=float, default=0.02,
                   help="relative weight noise for exploration (0: off)")
    p.add_argument("--cohort", type=int, default=2, help="challengers per cycle")
    p.add_argument("--unit-steps", type=int, default=40, help="unit training steps/challenger")
    p.add_argument("--unit-lr", type=float, default=1e-4, help="unit learning rate")
    p.add_argument("--merge", default="average",
                   help="merge method for an extra challenger ('none' to skip)")
    p.add_argument("--onm", action="store_true", help="train and use the Optic Nerve Model")
    p.add_argument("--val-samples", type=int, default=256, help="tournament validation items")
    p.add_argument("--eval-samples", type=int, default=512, help="test items for accuracy")
    p.add_argument("--seed", type=int, default=0, help="seed of the run")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", metavar="PATH", help="also write the cycle table as JSON")
    p.set_defaults(func=run_selfplay)


def run_selfplay(args: argparse.Namespace) -> int:
    """``thinkgym ctm selfplay``."""
    import dataclasses
    from pathlib import Path

    _passive_openmp()
    import torch

    from thinkgym.ctm_core.selfplay.generator import GeneratorConfig
    from thinkgym.ctm_core.selfplay.master import MasterTrainer, SelfPlayConfig

    torch.set_num_threads(args.threads)
    cfg = SelfPlayConfig(
        checkpoint=args.checkpoint, root=args.root, cycles=args.cycles,
        generator=GeneratorConfig(batches=args.batches, batch_size=args.batch_size,
                                  ticks=args.ticks, chunk_ticks=args.chunk_ticks,
                                  rule=args.rule, weight_noise=args.weight_noise),
        cohort=args.cohort, unit_steps=args.unit_steps, unit_lr=args.unit_lr,
        merge=None if args.merge == "none" else args.merge, onm=args.onm,
        val_samples=args.val_samples, eval_samples=args.eval_samples, seed=args.seed)
    logs = MasterTrainer(cfg, overwrite=args.overwrite).run()
    print(f"{'cycle':>5} {'score':>8} {'holdout':>8} {'accuracy':>8} {'ticks->conf':>11} "
          f"{'yield':>6} {'pairs':>6} winner")
    for r in logs:
        print(f"{r.cycle:>5} {r.score:>8.4f} {r.holdout_score:>8.4f} {r.accuracy:>8.4f} "
              f"{r.ticks_to_confidence:>11.2f} {r.yield_rate:>6.3f} {r.pairs_written:>6} "
              f"{r.winner or '-'}")
    print(f"wrote {Path(args.root) / 'cycles.csv'} and {Path(args.root) / 'curves.png'}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in logs], indent=2)
                                   + "\n")
    return 0


def train_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~thinkgym.ctm_core.train.TrainConfig` that ``ctm train`` flags describe."""
    from thinkgym.ctm_core.train import TrainConfig

    task_config = parse_assignments(args.task_arg, "--task-arg")
    if args.length is not None:
        task_config["length"] = args.length
    if args.size is not None:
        task_config["size"] = args.size
    model = parse_assignments(args.model_arg, "--model-arg")
    for flag, name, _, _ in _MODEL_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            model[name] = value
            if name == "n_synch_out":
                model["n_synch_action"] = value
    return TrainConfig(
        task=args.task, task_config=task_config, model=model, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup, grad_clip=args.grad_clip, seed=args.seed, out_dir=args.out,
        checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
        eval_samples=args.eval_samples, resume=args.resume, num_threads=args.threads,
        progress=not args.no_progress)


def _passive_openmp() -> None:
    # On a shared, oversubscribed CPU, OpenMP threads that spin while waiting make every
    # torch op wait for a descheduled sibling (measured here: 2.5 s instead of 0.4 s per
    # parity step). Passive waiting must be chosen before torch starts its thread pool.
    import os
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_train(args: argparse.Namespace) -> int:
    """``thinkgym ctm train``."""
    from pathlib import Path

    _passive_openmp()
    from thinkgym.ctm_core.train import train

    cfg = train_config_from_args(args)
    result = train(cfg)
    metrics = result.eval_metrics
    print(f"trained {result.steps} steps in {result.seconds:.0f}s -> {result.checkpoint}")
    print(f"held-out accuracy at the most certain tick: {metrics['accuracy_most_certain']:.4f} "
          f"({metrics['samples']} items); final tick: {metrics['accuracy_final_tick']:.4f}")
    Path(args.out, "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``thinkgym ctm eval``."""
    from pathlib import Path

    _passive_openmp()
    import torch

    from thinkgym.ctm_core.evaluate import evaluate_checkpoint, format_report, plot_eval

    torch.set_num_threads(args.threads)
    result = evaluate_checkpoint(args.checkpoint, samples=args.samples, ticks=args.ticks,
                                 batch_size=args.batch_size, start_index=args.start_index,
                                 progress=not args.no_progress, dtype=args.dtype)
    print(format_report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.png:
        print(f"wrote {plot_eval(result, args.png)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``thinkgym ctm export``."""
    _passive_openmp()
    import torch

    from thinkgym.ctm_core.checkpoint import export_checkpoint
    from thinkgym.ctm_core.evaluate import evaluate_checkpoint
    from thinkgym.ctm_core.train import VALIDATION_OFFSET

    torch.set_num_threads(args.threads)
    metrics = None
    if args.eval_samples > 0:
        result = evaluate_checkpoint(args.checkpoint, samples=args.eval_samples,
                                     start_index=VALIDATION_OFFSET, progress=False)
        metrics = result.to_dict()
        print(f"held-out accuracy at the most certain tick: {result.accuracy_most_certain:.4f}"
              f" ({result.samples} items)")
    print(f"wrote {export_checkpoint(args.checkpoint, args.out, metrics=metrics)}")
    return 0
