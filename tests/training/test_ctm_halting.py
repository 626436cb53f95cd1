"""Halting trainer helpers: budget end as termination for PPO, the seeded evaluator."""

from __future__ import annotations

from pathlib import Path

from thinkgym.agents.ctm_think import CertaintyThresholdPolicy, FixedBudgetPolicy
from thinkgym.envs.ctm_think import CTMThinkEnv
from thinkgym.training.ctm_halting import budget_end_terminates, evaluate_halting


def test_budget_end_is_termination_for_the_learner(tiny_ctm_checkpoint: Path) -> None:
    # SB3 bootstraps truncated episodes with V(final obs); the budget's end is final.
    raw = CTMThinkEnv(checkpoint=str(tiny_ctm_checkpoint), tick_budget=10)
    env = budget_end_terminates(CTMThinkEnv(checkpoint=str(tiny_ctm_checkpoint), tick_budget=10))
    raw.reset(seed=3)
    env.reset(seed=3)
    for action in (2, 2):
        r_obs, r_reward, r_term, r_trunc, _ = raw.step(action)
        obs, reward, term, trunc, info = env.step(action)
        assert reward == r_reward
        assert (obs == r_obs).all()
    assert r_trunc
    assert not r_term
    assert term
    assert not trunc
    assert info["budget_exhausted"]


def test_evaluator_same_seeds_same_items(tiny_ctm_checkpoint: Path) -> None:
    kwargs = {"checkpoint": str(tiny_ctm_checkpoint), "tick_budget": 8}
    fixed = evaluate_halting(FixedBudgetPolicy(), kwargs, episodes=12, seed=5)
    eager = evaluate_halting(CertaintyThresholdPolicy(1e-6), kwargs, episodes=12, seed=5)
    assert fixed.mean_ticks == 8.0
    assert eager.mean_ticks == 0.0          # certainty > 0 at the start: answers at once
    assert fixed.distinct_items == eager.distinct_items
    assert 1 <= fixed.distinct_items <= 12
