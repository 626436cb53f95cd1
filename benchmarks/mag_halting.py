"""Claim: the MAG detection channel stops SearchQA-v0 search episodes early without losing
answers: within 1 point of the full-budget success rate at <= 60% of its steps, and ahead
of the stop-at-first-answer rule in success.

Logged episodes. :class:`thinkgym.agents.mag.search_qa.HopSearchAgent` plays SearchQA-v0
(one passage per search, ``top_k=1``) for the full budget of 6 searches: it searches
the entity its hop reader needs next and, once the hops are resolved, the resolved
entity (a check search that looks like any other). After every search it holds a
candidate answer (the hops' value, or the top passage's first right-typed span), so
"stop after step k" has a defined outcome: success = the candidate at the stop step is
right. Every policy below stops the *same* logged episodes.

* ``full_budget`` — answer after all 6 searches (the best honest version: the
  candidate never gets worse once the hops are resolved, so using every step is the
  most successful fixed rule);
* ``first_answer`` — answer at the first step that has any candidate;
* ``mag`` — :class:`thinkgym.agents.mag.MAGPolicy` on SmolLM2-135M-Instruct's hidden
  states, trained by stage 1 (detection channel only, LM frozen; TD targets from the
  logged training episodes); stops at the first step where ``V - U < base_threshold *
  (1 + H)``, ``base_threshold`` calibrated on the validation episodes (the library's
  default: among 0 and 24 quantiles of the channel's own ``(V - U) / (1 + H)``, the
  fewest steps within 0.5 point of the full budget's validation success).
  One detection channel is trained per seed (``--seeds``, default 0 .. 5); ``mag`` is
  their mean, each seed's row is printed and written (``mag_per_seed``) with min/median;
* ``mag_tau_lambda`` (ablation) — the same channels with ``base_threshold`` = the step
  cost ``lambda`` = 0.05, uncalibrated;
* ``fixed_step`` (ablation) — answer after k searches, k the smallest within 0.5 point
  of the full budget on the validation episodes: what the step count alone buys;
* ``oracle`` (upper bound, reads the labels) — the first step whose candidate is right.

Splits: the ``train`` split's start entities are divided by a stable hash (80/20,
:func:`thinkgym.training.mag.log_train_validation`, the library's default): the
detection channel is trained on N questions whose start entities are all in the 80%,
the threshold calibrated on V questions that start from the 20% (comparisons: at
least one of their two; entities new to the channel, as the test split's are), and
everything is evaluated on the ``test`` split (held-out start entities), seeds 0 .. E-1.
The detection channel reads only the transcript (chat-templated prompt, its actions,
the env's ``<information>`` blocks) through the LM, the LM's next-token entropy and
the step fraction; never the gold answer, the hop reader's state or the candidate.

LM hidden states are computed once per episode (stage 1 never changes the LM) and
cached under ``$THINKGYM_CACHE/mag_halting/``.

    python benchmarks/mag_halting.py --json benchmarks/results/mag_halting.json
    python benchmarks/mag_halting.py --model tiny --train 64 --val 32 --eval 32  # smoke
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thinkgym.agents.mag import MAGConfig, MAGPolicy, MAGPolicyConfig
from thinkgym.training.mag import (
    MAGTrainConfig,
    calibrate_threshold,
    compare_stop_rules,
    detect_all,
    encode_episodes,
    held_out_entity,
    log_episodes,
    log_train_validation,
    rule_result,
    stop_steps,
    train_detection,
)


def _hidden(policy: MAGPolicy, encoded: list[Any], name: str, cache: Path | None) -> list[Any]:
    """LM hidden states per episode, cached by the hash of its token ids (content-addressed:
    an episode whose text changed, e.g. after a retriever change, is recomputed)."""
    from tqdm.auto import tqdm

    path = cache / f"{name}.pt" if cache is not None else None
    store: dict[str, Any] = {}
    if path is not None and path.is_file():
        store = torch.load(path, weights_only=True)
    keys = [hashlib.sha256(np.asarray(e.ids, dtype=np.int64).tobytes()).hexdigest()[:20]
            for e in encoded]
    missing = [i for i, k in enumerate(keys) if k not in store]
    with torch.no_grad():
        for i in tqdm(missing, desc=f"LM hidden states ({name})"):
            store[keys[i]] = policy.hidden_states(torch.tensor([encoded[i].ids]))[0].half()
    if path is not None and missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(store, path)
    return [store[k].float() for k in keys]


def _row(r: Any) -> dict[str, float]:
    return {"success": r.success, "mean_steps": r.mean_steps}


def _rule(episodes: list[Any], stops: list[int]) -> dict[str, float]:
    return _row(rule_result(episodes, stops))


def _lm_digest(lm: Any) -> str:
    h = hashlib.sha256()
    for name, p in sorted(lm.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="LM alias or directory ('tiny': the tiny test model)")
    parser.add_argument("--train", type=int, default=300, help="training episodes")
    parser.add_argument("--val", type=int, default=200,
                        help="validation episodes (held-out train-split start entities)")
    parser.add_argument("--eval", type=int, default=200, help="held-out test-split episodes")
    parser.add_argument("--budget", type=int, default=6, help="searches per episode")
    parser.add_argument("--top-k", type=int, default=1, help="passages per search")
    parser.add_argument("--steps", type=int, default=200, help="stage-1 optimiser steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5],
                        help="one detection channel trained per seed; 'mag' is their mean")
    parser.add_argument("--no-cache", action="store_true", help="recompute hidden states")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.time()

    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.agents.tiny import cache_root, load_tiny_model

    if args.model == "tiny":
        lm, tokenizer = load_tiny_model()
    else:
        lm, tokenizer = load_model_and_tokenizer(args.model)
    def fresh_policy(seed: int) -> MAGPolicy:
        torch.manual_seed(seed)
        return MAGPolicy(lm, tokenizer, MAGPolicyConfig(block=MAGConfig(
            d_model=64, num_heads=4, num_persistent=4, window=64, memory_hidden=64,
            chunk_size=32)))

    policy = fresh_policy(args.seeds[0])
    before = _lm_digest(lm)
    env = {"top_k": args.top_k}
    model_key = hashlib.sha256(args.model.encode()).hexdigest()[:12]
    cache = None if args.no_cache else cache_root().parent / "mag_halting" / model_key
    fraction = MAGTrainConfig.validation_entity_fraction
    print(f"[{time.time() - t0:6.0f}s] logging train/val: train split, start entities "
          f"split {1 - fraction:.0%}/{fraction:.0%}", flush=True)
    train_eps, val_eps = log_train_validation(args.train, args.val, budget=args.budget,
                                              fraction=fraction,
                                              env_kwargs={"split": "train", **env})
    print(f"[{time.time() - t0:6.0f}s] logging eval: test split, seeds 0..{args.eval - 1}",
          flush=True)
    episodes = {"train": train_eps, "val": val_eps,
                "eval": log_episodes(range(args.eval), budget=args.budget,
                                     env_kwargs={"split": "test", **env})}
    encoded, hidden = {}, {}
    for name, logged in episodes.items():
        encoded[name] = encode_episodes(logged, tokenizer, args.budget)
        hidden[name] = _hidden(policy, encoded[name], name, cache)
    held = {name: [any(held_out_entity(n, fraction) for n in e.start_entities)
                   for e in episodes[name]] for name in ("train", "val")}
    assert not any(held["train"]), "a training question starts from a held-out entity"
    assert all(held["val"]), "a validation question has no held-out start entity"

    ev, val = encoded["eval"], encoded["val"]
    per_seed, per_seed_lambda, calibrations, train_seconds = {}, {}, {}, []
    for seed in args.seeds:
        policy = fresh_policy(seed)
        config = MAGTrainConfig(stage=1, num_episodes=args.train, num_validation=args.val,
                                budget=args.budget, max_steps=args.steps, seed=seed)
        print(f"[{time.time() - t0:6.0f}s] stage 1, seed {seed}: {args.steps} steps on "
              f"{args.train} episodes", flush=True)
        train_start = time.time()
        train_detection(policy, encoded["train"], config, progress=True,
                        hidden=hidden["train"])
        train_seconds.append(round(time.time() - train_start, 1))
        val_adv = detect_all(policy, val, hidden=hidden["val"])
        tau, calibrations[str(seed)] = calibrate_threshold(
            val_adv, val, config.thresholds, config.calibration_tolerance)
        eval_adv = detect_all(policy, ev, hidden=hidden["eval"])
        rules = compare_stop_rules(ev, eval_adv, tau)  # full_budget, first_answer: seedless
        per_seed[str(seed)] = {**_row(rules["mag"]), "base_threshold": tau}
        per_seed_lambda[str(seed)] = _rule(ev, stop_steps(eval_adv, config.step_cost))
    after = _lm_digest(lm)

    oracle = [next((k for k, c in enumerate(e.correct) if c), len(e.ends) - 1) for e in ev]
    full_val = _rule(val, [len(e.ends) - 1 for e in val])["success"]
    fixed_k = next((k for k in range(args.budget) if _rule(val, [min(k, len(e.ends) - 1)
                    for e in val])["success"] >= full_val - config.calibration_tolerance),
                   args.budget - 1)
    runs = list(per_seed.values())

    def mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
        return {key: float(np.mean([r[key] for r in rows])) for key in ("success",
                                                                       "mean_steps")}

    policies = {
        "full_budget": _row(rules["full_budget"]),
        "first_answer": _row(rules["first_answer"]),
        # the mean over independently trained detection channels (per seed below)
        "mag": mean_of(runs),
        "mag_tau_lambda": mean_of(list(per_seed_lambda.values())),
        f"fixed_step_{fixed_k + 1}": _rule(ev, [min(fixed_k, len(e.ends) - 1) for e in ev]),
        "oracle": _rule(ev, oracle),
    }
    mag, fb, fa = policies["mag"], policies["full_budget"], policies["first_answer"]
    target = {
        "success_within_1_point_of_full_budget": mag["success"] >= fb["success"] - 0.01,
        "steps_at_most_60pct_of_full_budget": mag["mean_steps"] <= 0.6 * fb["mean_steps"],
        "ahead_of_first_answer": mag["success"] > fa["success"],
    }
    print(f"\nSearchQA-v0 (top_k={args.top_k}, budget {args.budget}), {len(ev)} held-out "
          f"test-split episodes ({len({e.prompt for e in episodes['eval']})} distinct "
          f"questions); LM {args.model}; mag = mean of {len(runs)} seeds")
    print(f"{'policy':<16}{'success':>9}{'mean steps':>12}{'% of full steps':>17}")
    rows = {**policies, **{f"  mag seed {k}": r for k, r in per_seed.items()}}
    for name, r in rows.items():
        print(f"{name:<16}{r['success']:>9.3f}{r['mean_steps']:>12.2f}"
              f"{100 * r['mean_steps'] / fb['mean_steps']:>16.1f}%")
    print("target:", target, f"(total {time.time() - t0:.0f}s)")
    if args.json:
        result = {
            "claim": "MAG stop decisions within 1 point of full-budget success at <= 60% of "
                     "its steps, ahead of stop-at-first-answer",
            "policies": policies, "target": target, "mag_per_seed": per_seed,
            "mag_tau_lambda_per_seed": per_seed_lambda,
            "mag_success_min_median": [min(r["success"] for r in runs),
                                       float(np.median([r["success"] for r in runs]))],
            "mag_mean_steps_min_median": [min(r["mean_steps"] for r in runs),
                                          float(np.median([r["mean_steps"] for r in runs]))],
            "distinct_eval_questions": len({e.prompt for e in episodes["eval"]}),
            "threshold_rule": "mag: calibrated on validation per seed; mag_tau_lambda: "
                              "base_threshold = step_cost (lambda)",
            "stop_rule_on_validation_by_base_threshold": calibrations,
            "settings": {"model": args.model, "train_episodes": args.train,
                         "validation_episodes": args.val, "eval_episodes": args.eval,
                         "validation": f"train split, held-out start entities "
                                       f"({fraction:.0%}, none shared with training)",
                         "train_split": "train", "eval_split": "test", "budget": args.budget,
                         "top_k": args.top_k, "stage1_steps": args.steps, "seeds": args.seeds,
                         "gamma": config.gamma, "step_cost": config.step_cost,
                         "block": policy.config.block.__dict__},
            "lm_unchanged_by_stage1": before == after,
            "stage1_train_seconds": train_seconds,
            "total_seconds": round(time.time() - t0, 1),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
