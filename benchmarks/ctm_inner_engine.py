"""Claim: an agent that learned when and how long to call the CTM (``ctm_think``) keeps
the accuracy of always thinking the full budget on held-out ``ctm_puzzles`` questions,
with fewer CTM ticks; both beat answering without the CTM by far.

ToolUse-v0 with ``tasks="ctm_puzzles"`` (half cumulative parity of 16 bits, answered by
the bundled ``parity16`` CTM; half 8x8 glyph digits, answered by ``digits16``), reward
= correctness + format - 0.01 per CTM tick (``ctm_tick_cost``). Policies, scored on the
whole ``test`` split (held out by content) with greedy actions:

* ``never`` — answers without the CTM. It is a scripted agent, so this is a fixed guess
  (16 zeros; the digit 1): a floor, not a measurement of what an LLM does in its head;
* ``always`` — ``ctm_think`` with the checkpoint's full trained budget (24 ticks for
  parity, 16 for digits) and the certainty threshold at 1.0;
* ``learned`` — REINFORCE (``thinkgym.training.reinforce``) over the macro-actions of
  :mod:`thinkgym.agents.ctm_puzzles_macro` (answer, or think with a few (ticks, certainty)
  settings), features = question kind only, trained on ``train``; mean over ``--seeds``.

``fixed_actions`` holds every macro-action's per-kind accuracy and ticks on the test
split; ``best_within_2_points`` is the cheapest per-kind choice among them whose accuracy
is within 2 points of ``always``: the floor on ticks any policy over these actions has.

    OMP_NUM_THREADS=1 python benchmarks/ctm_inner_engine.py \
        --json benchmarks/results/ctm_inner_engine.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.ctm_puzzles_macro import ACTIONS, CTMPuzzlesMacroAdapter
from thinkgym.agents.macro import MacroPolicy
from thinkgym.envs.tool_use.ctm_puzzles import KINDS
from thinkgym.training.reinforce import ReinforceConfig, play_episode, train_reinforce


class FixedMacro:
    """Always the same macro-action."""

    def __init__(self, adapter: CTMPuzzlesMacroAdapter, action: int) -> None:
        self.adapter, self.action = adapter, action

    def reset(self) -> None:
        self.adapter.reset()

    def act(self, observation: Any) -> str:
        self.adapter.features(observation)
        return self.adapter.render(self.action)


def evaluate(env: gym.Env, policy: Any, adapter: CTMPuzzlesMacroAdapter,
             n: int) -> dict[str, Any]:
    """Accuracy and mean CTM ticks over test tasks 0..n-1, overall and per kind."""
    rows: list[tuple[str, bool, int]] = []
    for i in range(n):
        _, info = play_episode(env, policy, seed=i, options={"index": i})
        rows.append((info["task"]["kind"], adapter.success(info, 0.0), adapter.ticks))

    def figures(sel: list[tuple[str, bool, int]]) -> dict[str, float]:
        return {"accuracy": float(np.mean([r[1] for r in sel])),
                "mean_ticks": float(np.mean([r[2] for r in sel]))}

    out: dict[str, Any] = figures(rows)
    out["per_kind"] = {k: figures([r for r in rows if r[0] == k]) for k in KINDS}
    return out


def best_within(fixed: dict[str, dict[str, Any]], accuracy: float) -> dict[str, Any] | None:
    """The cheapest per-kind choice of fixed actions with overall accuracy >= ``accuracy``."""
    best = None
    for choice in itertools.product(fixed, repeat=len(KINDS)):
        per = [fixed[a]["per_kind"][k] for a, k in zip(choice, KINDS, strict=True)]
        acc = float(np.mean([p["accuracy"] for p in per]))
        ticks = float(np.mean([p["mean_ticks"] for p in per]))
        if acc >= accuracy - 1e-9 and (best is None or ticks < best["mean_ticks"]):
            best = {"actions": dict(zip(KINDS, choice, strict=True)), "accuracy": acc,
                    "mean_ticks": ticks}
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=3000, help="training episodes per seed")
    parser.add_argument("--eval", type=int, default=300, help="test tasks (300 = all)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run, tiny settings")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.episodes, args.eval = [0], 32, 8
    start = time.perf_counter()
    train_env = gym.make("ToolUse-v0", tasks="ctm_puzzles", task_split="train")
    test_env = gym.make("ToolUse-v0", tasks="ctm_puzzles", task_split="test")
    n = min(args.eval, len(test_env.unwrapped.tasks))  # type: ignore[attr-defined]
    adapter = CTMPuzzlesMacroAdapter()

    fixed = {name: evaluate(test_env, FixedMacro(adapter, a), adapter, n)
             for a, name in enumerate(ACTIONS)}
    policies: dict[str, dict[str, Any]] = {"never": fixed["answer"],
                                           "always": fixed[ACTIONS[1]]}
    learned, choices = [], []
    for seed in args.seeds:
        config = ReinforceConfig(env_id="ToolUse-v0", env_kwargs={"tasks": "ctm_puzzles"},
                                 episodes=args.episodes, seed=seed, eval_episodes=0)
        result = train_reinforce(config, env=train_env, adapter=adapter, progress=False)
        policy = MacroPolicy(result.policy, adapter, greedy=True)
        learned.append(evaluate(test_env, policy, adapter, n))
        choices.append({k: ACTIONS[int(policy.probabilities(np.array(
            [1.0, k == "parity", k == "digits", 0.0], dtype=np.float32)).argmax())]
            for k in KINDS})
        print(f"  seed {seed}: learned accuracy {learned[-1]['accuracy']:.3f}, mean ticks "
              f"{learned[-1]['mean_ticks']:.2f}, first-turn choice {choices[-1]}")
    policies["learned"] = {
        "accuracy": statistics.fmean(r["accuracy"] for r in learned),
        "mean_ticks": statistics.fmean(r["mean_ticks"] for r in learned),
        "per_kind": {k: {m: statistics.fmean(r["per_kind"][k][m] for r in learned)
                         for m in ("accuracy", "mean_ticks")} for k in KINDS}}

    a, b, c = (policies[p] for p in ("never", "always", "learned"))
    targets = {"learned_within_2_points_of_always": c["accuracy"] >= b["accuracy"] - 0.02,
               "learned_ticks_at_most_60pct_of_always": c["mean_ticks"] <= 0.6 * b["mean_ticks"],
               "always_30_points_above_never": b["accuracy"] >= a["accuracy"] + 0.30}
    floor = best_within(fixed, b["accuracy"] - 0.02)

    header = f"{'policy':<10}{'accuracy':>10}{'mean ticks':>12}{'parity acc/ticks':>20}" \
             f"{'digits acc/ticks':>20}"
    print(f"ToolUse-v0 ctm_puzzles, {n} held-out test tasks; learned: {args.episodes} "
          f"episodes x seeds {args.seeds}")
    print(header)
    print("-" * len(header))
    for name, f in policies.items():
        per = f["per_kind"]
        kinds = "".join(f"{per[k]['accuracy']:>12.3f}/{per[k]['mean_ticks']:<7.1f}" for k in KINDS)
        print(f"{name:<10}{f['accuracy']:>10.3f}{f['mean_ticks']:>12.2f}{kinds}")
    print(f"learned / always ticks: {c['mean_ticks'] / b['mean_ticks']:.2f}; cheapest per-kind "
          f"fixed choice within 2 points of always: {floor}")
    print(f"targets: {targets}")
    if args.json is not None:
        out = {"policies": policies, "targets_met": targets, "fixed_actions": fixed,
               "best_within_2_points": floor, "learned_per_seed": learned,
               "learned_first_turn_choice": choices, "seeds": args.seeds,
               "episodes": args.episodes, "eval_tasks": n, "smoke": args.smoke,
               "tick_cost_per_tick": 0.01, "elapsed_s": round(time.perf_counter() - start, 1),
               "never_is": "a fixed guess by a scripted agent (16 zeros; the digit 1)"}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
