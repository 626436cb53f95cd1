"""Train a PPO agent to decide how long a Continuous Thought Machine thinks (CTMThink-v0).

The agent sees the CTM's certainty, its change, the prediction margin and the tick
budget, and chooses: think 1, 2 or 8 more ticks, or answer. It is compared with
two baselines on the same held-out episodes. Runs on CPU in a few minutes:

    python examples/ctm_think_ppo.py --steps 40000 --episodes 300 --save runs/halting_ppo
    python examples/ctm_think_ppo.py --task digits --steps 20000

PPO trains on the env's ``validation`` items and every policy is scored on ``test``
items (disjoint halves of the task's held-out items).
"""

from __future__ import annotations

import argparse

from thinkgym.agents.ctm_think import CertaintyThresholdPolicy, FixedBudgetPolicy, SB3Policy
from thinkgym.training.ctm_halting import HaltingPPOConfig, evaluate_halting, train_halting_ppo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="parity", choices=["parity", "maze", "digits"],
                        help="CTM task (its bundled checkpoint)")
    parser.add_argument("--steps", type=int, default=40_000, help="PPO environment steps")
    parser.add_argument("--episodes", type=int, default=300, help="evaluation episodes")
    parser.add_argument("--tick-budget", type=int, default=None,
                        help="default: the ticks the checkpoint was trained for")
    parser.add_argument("--tau", type=float, default=0.9, help="certainty-threshold baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="save the PPO model here (.zip)")
    args = parser.parse_args()

    env_kwargs = {"task": args.task, "tick_budget": args.tick_budget, "split": "test"}
    model = train_halting_ppo(HaltingPPOConfig(env_kwargs={**env_kwargs, "split": "validation"},
                                               total_timesteps=args.steps, seed=args.seed))
    if args.save:
        model.save(args.save)

    policies = {"fixed budget": FixedBudgetPolicy(),
                f"certainty >= {args.tau}": CertaintyThresholdPolicy(args.tau),
                "PPO (learned)": SB3Policy(model)}
    print(f"{'policy':<20}{'accuracy':>10}{'mean ticks':>12}{'mean return':>13}")
    for name, policy in policies.items():
        r = evaluate_halting(policy, env_kwargs, episodes=args.episodes, seed=args.seed + 1)
        print(f"{name:<20}{r.accuracy:>10.4f}{r.mean_ticks:>12.2f}{r.mean_return:>13.3f}")


if __name__ == "__main__":
    main()
