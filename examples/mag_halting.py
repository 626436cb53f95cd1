"""MAG memory-gated halting on SearchQA-v0, end to end on CPU in a few minutes.

1. Log episodes: a hop-by-hop searcher plays SearchQA-v0 for the full budget and holds a
   candidate answer after every search.
2. Stage 1: train the detection channel (MAG block + value head) on the LM's hidden
   states with TD targets; the LM stays frozen.
3. Calibrate the stop threshold on validation episodes, then compare stop decisions on
   held-out test-split episodes with "use the full budget" and "stop at the first answer".
4. Play a few live episodes where the agent stops searching when the detection channel
   says so (memory persists across the steps of an episode, reset between episodes).

    python examples/mag_halting.py                # SmolLM2-135M-Instruct (offline wheel), ~2 min
    python examples/mag_halting.py --model tiny   # the untrained tiny model: plumbing only
"""

from __future__ import annotations

import argparse
import dataclasses

import gymnasium as gym
import torch

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.llm import load_model_and_tokenizer
from thinkgym.agents.mag import MAGConfig, MAGPolicy, MAGPolicyConfig
from thinkgym.agents.mag.search_qa import MAGSearchAgent
from thinkgym.agents.search_qa import run_episode
from thinkgym.agents.tiny import load_tiny_model
from thinkgym.training.mag import (
    MAGTrainConfig,
    calibrate_threshold,
    compare_stop_rules,
    detect_all,
    encode_episodes,
    log_episodes,
    log_train_validation,
    train_detection,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="LM alias or directory; 'tiny': the untrained test model")
    parser.add_argument("--train", type=int, default=96, help="training episodes")
    parser.add_argument("--eval", type=int, default=48, help="held-out episodes")
    parser.add_argument("--steps", type=int, default=150, help="stage-1 steps")
    args = parser.parse_args()
    torch.manual_seed(0)
    budget, env_kwargs = 6, {"top_k": 1}

    lm, tokenizer = (load_tiny_model() if args.model == "tiny"
                     else load_model_and_tokenizer(args.model))
    policy = MAGPolicy(lm, tokenizer, MAGPolicyConfig(block=MAGConfig(d_model=32, num_heads=2)))

    print("1. logging episodes (train split for training/validation, test split held out)")
    # validation questions start from entities no training question starts from
    train, val = log_train_validation(args.train, 48, budget=budget, progress=True,
                                      env_kwargs={"split": "train", **env_kwargs})
    test = log_episodes(range(args.eval), budget=budget,
                        env_kwargs={"split": "test", **env_kwargs})
    enc = {name: encode_episodes(eps, tokenizer, budget)
           for name, eps in (("train", train), ("val", val), ("test", test))}

    print(f"2. stage 1: {args.steps} steps, generation channel frozen")
    config = MAGTrainConfig(stage=1, max_steps=args.steps, budget=budget, batch_size=16)
    log = train_detection(policy, enc["train"], config, progress=True)
    print(f"   TD loss {log[0]['loss/value'] + log[0]['loss/stop_value']:.3f} -> "
          f"{log[-1]['loss/value'] + log[-1]['loss/stop_value']:.3f}")

    tau, _ = calibrate_threshold(detect_all(policy, enc["val"]), enc["val"],
                                 config.thresholds, config.calibration_tolerance)
    policy.config = dataclasses.replace(policy.config, base_threshold=tau)
    print(f"3. base_threshold {tau:.4g} (calibrated on validation); held-out test split:")
    rules = compare_stop_rules(enc["test"], detect_all(policy, enc["test"]), tau)
    for name, r in rules.items():
        print(f"   {name:<13} success {r.success:.3f}  mean steps {r.mean_steps:.2f}")

    print("4. live episodes: the agent stops searching when the detection channel says so")
    env = gym.make("SearchQA-v0", split="test", **env_kwargs)
    agent = MAGSearchAgent(policy, budget=budget)
    for seed in range(3):
        result = run_episode(env, agent, seed=seed)
        gains = ", ".join(f"{d.value - d.stop_value:+.2f}<{d.threshold:.2f}?" for d in
                          agent.decisions)
        print(f"   seed {seed}: {result.searches} searches, answer {result.answer!r}, "
              f"EM {result.exact_match:.0f}  (V-U vs tau per step: {gains})")


if __name__ == "__main__":
    main()
