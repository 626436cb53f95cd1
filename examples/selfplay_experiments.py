"""The self-play experiments of issue 15, one subcommand each; every one prints a table.

    python examples/selfplay_experiments.py debug-step   # create -> save -> load -> 1 step
    python examples/selfplay_experiments.py filter-ab    # strict vs loose: yield, where
    python examples/selfplay_experiments.py schedule-ab  # chunked streaming vs all-at-once
    python examples/selfplay_experiments.py train-onm    # the ONM alone: validation loss
    python examples/selfplay_experiments.py onm-ab       # score, ticks-to-confidence +-ONM

All start from the bundled ``parity16`` checkpoint (``--checkpoint`` to change) and use
train-split items only; ``--smoke`` shrinks everything to seconds (used by the tests).
``--json PATH`` writes the figures; ``filter-ab`` and ``onm-ab`` also draw a PNG
(``--png``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from thinkgym.ctm_core.checkpoint import load_checkpoint
from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer
from thinkgym.ctm_core.selfplay.generator import DataGenerator, GeneratorConfig
from thinkgym.ctm_core.selfplay.weights import WeightManager


def _setup(root: Path, checkpoint: str) -> tuple[WeightManager, DiskReplayBuffer]:
    model, task, _ = load_checkpoint(checkpoint)
    weights = WeightManager.create(root / "weights", model, task, n_random_experts=2, seed=0,
                                   overwrite=True)
    return weights, DiskReplayBuffer(root / "replay", capacity=10_000_000)


# --------------------------------------------------------------------------- debug-step
def debug_step(args: argparse.Namespace) -> dict[str, Any]:
    """Random CTM -> one pair saved -> loaded -> one unit training step; checks everything."""
    from thinkgym.ctm_core.selfplay.storage import DataId, decays_of
    from thinkgym.ctm_core.selfplay.unit import unit_step
    from thinkgym.ctm_core.train import TrainConfig, build_run

    task, model = build_run(TrainConfig(task="parity", task_config={"length": 8}, seed=0,
                                        model={"iterations": 12}))
    data_id = DataId(task.name, task.config.to_dict(), "train", 3)
    batch = task.batch([data_id.index], "train")
    model.eval()
    with torch.no_grad():
        kv = model.compute_kv(batch.inputs)
        out = model.rollout(batch.inputs, ticks=12, return_states=True)
    assert out.states is not None
    t = 5  # states[t - 1] is the state after tick t
    s_t, s_t2 = out.states[t - 1].clone(), out.states[t + 1].clone()
    losses = task.per_tick_loss(out.logits, batch.targets)[0, t - 1:t + 2]
    rows = []
    for dtype, tol in ((torch.float32, 0.0), (torch.float16, 2e-3)):
        with tempfile.TemporaryDirectory() as tmp:
            buffer = DiskReplayBuffer(tmp, capacity=10, dtype=dtype)
            buffer.save_pair(s_t, s_t2, tick=t, losses=losses,
                             certainties=out.certainty[0, t - 1:t + 2], weight_id="random-init",
                             data_id=data_id, buffer="expert",
                             decays={"random-init": decays_of(model)})
            back = buffer.load_batch(1, buffer="expert")
        for name, (a, b) in {**{f"t.{k}": (v, back.state_t[k]) for k, v in s_t.items()},
                             **{f"t2.{k}": (v, back.state_t2[k]) for k, v in s_t2.items()}}.items():
            err = float((a - b).abs().max() / (a.abs().max() + 1e-12))
            rows.append({"storage": str(dtype).removeprefix("torch."), "field": name,
                         "shape": list(b.shape), "dtype": str(b.dtype), "rel_err": err,
                         "ok": b.shape == a.shape and b.dtype == torch.float32 and err <= tol})
    with torch.no_grad():  # the recomputed K/V equal the ones the pair was made with
        kv_again = model.compute_kv(task.batch([back.data_ids[0].index], "train").inputs)
    kv_same = torch.equal(kv.k, kv_again.k) and torch.equal(kv.v, kv_again.v)
    model.train()
    with torch.no_grad():  # as in self-play: the trained weights differ from the producer's
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(0.05 * p.pow(2).mean().sqrt() * torch.randn(p.shape, generator=gen))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss, _ = unit_step(model, back)
    optimizer.zero_grad()
    loss.backward()
    # Not on the State_t -> State_{t+2} path by construction: the learned start state
    # (a stored State_t replaces it) and the output projection (the loss is on states).
    off_path = {"start_z", "start_history", "output_proj.weight", "output_proj.bias"}
    no_grad = sorted(n for n, p in model.named_parameters()
                     if p.grad is None or not bool(p.grad.abs().sum() > 0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.step()
    changed = sorted(n for n, p in model.named_parameters() if not torch.equal(p, before[n]))
    print(f"{'storage':<9}{'field':<18}{'shape':<16}{'rel. error':>11}  ok")
    for r in rows:
        print(f"{r['storage']:<9}{r['field']:<18}{r['shape']!s:<16}{r['rel_err']:>11.2e}  "
              f"{'yes' if r['ok'] else 'NO'}")
    print(f"K/V recomputed from data_id equal the rollout's: {kv_same}")
    print(f"loss {loss.item():.4f}; parameters without gradient: {no_grad} (expected: "
          f"{sorted(off_path)}); updated by the step: {len(changed)} of "
          f"{len(before)}")
    ok = all(r["ok"] for r in rows) and kv_same and set(no_grad) == off_path and bool(
        torch.isfinite(loss))
    print("debug step:", "PASSED" if ok else "FAILED")
    if not ok:
        raise SystemExit(1)
    return {"fields": rows, "kv_same": kv_same, "loss": loss.item(), "no_grad": no_grad,
            "updated": len(changed), "passed": ok}


# --------------------------------------------------------------------------- filter-ab
def filter_ab(args: argparse.Namespace) -> dict[str, Any]:
    """Strict vs loose on the same weights and items: yield and where good pairs occur."""
    ticks = 30 if args.smoke else 250
    result: dict[str, Any] = {"ticks": ticks}
    with tempfile.TemporaryDirectory() as tmp:
        weights, buffer = _setup(Path(tmp), args.checkpoint)
        for rule in ("strict", "loose"):
            cfg = GeneratorConfig(batches=1 if args.smoke else 4, batch_size=16 if args.smoke
                                  else 64, ticks=ticks, rule=rule, p_best=1.0, mode="serial")
            report = DataGenerator(weights, buffer).run(cfg)
            hist = report.accepted_by_tick + [0] * (ticks - len(report.accepted_by_tick))
            quarters = [sum(hist[q * ticks // 4:(q + 1) * ticks // 4]) for q in range(4)]
            result[rule] = {"evaluated": report.pairs_evaluated,
                            "accepted": report.pairs_accepted, "yield": report.yield_rate,
                            "accepted_by_tick": hist,
                            "share_by_quarter": [q / max(1, sum(quarters)) for q in quarters]}
    print(f"{'rule':<8}{'evaluated':>10}{'accepted':>10}{'yield':>8}   share of accepted pairs "
          f"by quarter of the {ticks} ticks")
    for rule in ("strict", "loose"):
        r = result[rule]
        shares = " ".join(f"{s:.2f}" for s in r["share_by_quarter"])
        print(f"{rule:<8}{r['evaluated']:>10}{r['accepted']:>10}{r['yield']:>8.3f}   {shares}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2))
        for rule in ("strict", "loose"):
            ax.plot(result[rule]["accepted_by_tick"], label=rule)
        ax.set_xlabel("tick t of State_t")
        ax.set_ylabel("accepted pairs")
        ax.set_title(f"{args.checkpoint}: where improving pairs occur", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"wrote {args.png}")
    return result


# --------------------------------------------------------------------------- schedule-ab
def _schedule_child(mode: str, batch_size: int, ticks: int, checkpoint: str) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        weights, buffer = _setup(Path(tmp), checkpoint)
        cfg = GeneratorConfig(batches=1, batch_size=batch_size, ticks=ticks, chunk_ticks=10,
                              p_best=1.0, mode=mode)  # type: ignore[arg-type]
        report = DataGenerator(weights, buffer).run(cfg)
        readable = buffer.count()
    # Worker processes (pipeline mode) have their own peak: add the largest child's
    # (shared-memory slots count in both: an upper bound).
    peak_kib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"mode": mode, "peak_rss_mb": peak_kib / 1024, "seconds": report.seconds,
        "accepted": report.pairs_accepted, "written": report.pairs_written,
        "readable": readable}))


def schedule(mode: str, batch_size: int, ticks: int, checkpoint: str) -> dict[str, Any]:
    """Run one generation in a fresh process: peak RSS (MB), seconds, pair counts."""
    proc = subprocess.run([sys.executable, __file__, "schedule-child", "--mode", mode,
                           "--batch-size", str(batch_size), "--ticks", str(ticks),
                           "--checkpoint", checkpoint], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def schedule_ab(args: argparse.Namespace) -> dict[str, Any]:
    """Chunked streaming vs all ticks first: wall time and peak memory.

    ``serial`` streams chunk by chunk in one process, so its RSS is the schedule's exact
    footprint; ``pipeline`` adds its worker process's peak to its own (an upper bound:
    pages shared by the fork are counted twice)."""
    batch, ticks = (64, 60) if args.smoke else (1024, 250)
    runs = {m: schedule(m, batch, ticks, args.checkpoint)
            for m in ("serial", "pipeline", "all_at_once")}
    print(f"{'mode':<14}{'peak RSS MB':>12}{'seconds':>9}{'accepted':>10}{'written':>9}")
    for m, r in runs.items():
        print(f"{m:<14}{r['peak_rss_mb']:>12.0f}{r['seconds']:>9.1f}{r['accepted']:>10}"
              f"{r['written']:>9}")
    ratio = runs["serial"]["peak_rss_mb"] / runs["all_at_once"]["peak_rss_mb"]
    print(f"streaming (serial) / all-at-once peak RSS: {ratio:.3f} ({batch} items x {ticks} "
          "ticks)")
    return {"batch_size": batch, "ticks": ticks, "runs": runs, "peak_mem_ratio": ratio}


# --------------------------------------------------------------------------- ONM
def _onm_data(root: Path, args: argparse.Namespace) -> tuple[WeightManager, DiskReplayBuffer,
                                                           DiskReplayBuffer]:
    """Weights, a training buffer and a validation buffer made from other items."""
    weights, train = _setup(root, args.checkpoint)
    val = DiskReplayBuffer(root / "replay_val", capacity=10_000_000)
    size = (1, 16, 30) if args.smoke else (6, 64, 60)
    for buffer, start in ((train, 0), (val, 1_000_000)):
        cfg = GeneratorConfig(batches=size[0], batch_size=size[1], ticks=size[2], rule="loose",
                              p_best=0.7, weight_noise=0.02, start_index=start, mode="serial")
        DataGenerator(weights, buffer).run(cfg)
    return weights, train, val


def _train_onm(weights: WeightManager, train: DiskReplayBuffer, val: DiskReplayBuffer,
               steps: int) -> tuple[Any, Any]:
    from thinkgym.ctm_core.selfplay.onm import OpticNerveModel, train_onm

    best, _ = weights.resolve(weights.best_id)
    onm = OpticNerveModel.for_model(best)
    val_batch = val.load_batch(min(256, val.count()), rng=1)
    result = train_onm(onm, (train.load_batch(64, rng=i) for i in range(steps)),
                       lambda w: weights.resolve(w)[0], steps=steps, val_batch=val_batch,
                       progress=True)
    return onm, result


def train_onm_offline(args: argparse.Namespace) -> dict[str, Any]:
    """Train the ONM alone on generated pairs; report held-out validation loss."""
    steps = 20 if args.smoke else 400
    with tempfile.TemporaryDirectory() as tmp:
        weights, train, val = _onm_data(Path(tmp), args)
        _, result = _train_onm(weights, train, val, steps)
        counts = (train.count(), val.count())
    start, end = result.val_loss[0][1], result.final_val_loss
    print(f"{'pairs (train / val)':<22}{'steps':>6}{'val loss at step 0':>20}{'final':>9}")
    print(f"{counts[0]:>9} / {counts[1]:<10}{steps:>6}{start:>20.4f}{end:>9.4f}")
    print("(step 0 = the calibrated mean state: what the ONM must beat)")
    return {"train_pairs": counts[0], "val_pairs": counts[1], "steps": steps,
            "val_loss": result.val_loss, "final_val_loss": end}


def onm_ab(args: argparse.Namespace) -> dict[str, Any]:
    """Score and ticks-to-confidence on validation items, learned start vs ONM start."""
    from thinkgym.ctm_core.selfplay.master import VALIDATION_START, measure

    steps = 20 if args.smoke else 400
    with tempfile.TemporaryDirectory() as tmp:
        weights, train, val = _onm_data(Path(tmp), args)
        onm, _ = _train_onm(weights, train, val, steps)
        model, task = weights.resolve(weights.best_id)
    n = 64 if args.smoke else 512
    items = task.batch(range(VALIDATION_START, VALIDATION_START + n), "train")
    ticks = model.config.iterations
    rows = {"learned start": measure(model, task, items, ticks),
            "ONM start": measure(model, task, items, ticks, onm=onm)}
    print(f"{'start state':<15}{'score':>8}{'accuracy':>10}{'ticks->0.9':>11}{'reached':>9}")
    for name, m in rows.items():
        print(f"{name:<15}{m.score:>8.3f}{m.accuracy:>10.4f}{m.ticks_to_confidence:>11.2f}"
              f"{m.reached:>9.3f}")
    return {name: vars(m) for name, m in rows.items()} | {"ticks": ticks, "items": n}


COMMANDS = {"debug-step": debug_step, "filter-ab": filter_ab, "schedule-ab": schedule_ab,
            "train-onm": train_onm_offline, "onm-ab": onm_ab}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=[*COMMANDS, "schedule-child"])
    parser.add_argument("--checkpoint", default="parity16")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--mode", default="pipeline")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--ticks", type=int, default=250)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "schedule-child":
        _schedule_child(args.mode, args.batch_size, args.ticks, args.checkpoint)
        return
    result = COMMANDS[args.command](args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
