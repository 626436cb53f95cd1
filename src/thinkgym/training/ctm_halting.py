"""Learned halting on CTMThink-v0: PPO (stable-baselines3) and a shared evaluator.

``train_halting_ppo`` trains a small MLP policy on the Box observation;
``evaluate_halting`` plays the same seeded episodes with any policy, so the PPO
agent and the baselines are compared on identical task items.

    >>> from thinkgym.agents.ctm_think import CertaintyThresholdPolicy
    >>> result = evaluate_halting(CertaintyThresholdPolicy(0.9), {"tick_budget": 16},
    ...                           episodes=3, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, SupportsFloat

import numpy as np

from thinkgym.agents import Policy
from thinkgym.errors import ConfigError, DependencyNotInstalled

__all__ = ["HaltingPPOConfig", "HaltingResult", "budget_end_terminates", "episode_seeds",
           "evaluate_halting", "train_halting_ppo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HaltingPPOConfig:
    """PPO on CTMThink-v0's Box observation."""

    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Arguments of ``gym.make("CTMThink-v0", ...)``; ``split`` defaults to
    ``"validation"``: held-out items the CTM never trained on (so its certainty behaves as
    on test items) and that the test split never shows."""
    total_timesteps: int = 40_000
    """Environment steps of PPO training."""
    n_envs: int = 4
    """Parallel envs (in-process)."""
    seed: int = 0
    """Seed of PPO and of the training envs."""
    learning_rate: float = 3e-4
    """Adam step size."""
    n_steps: int = 256
    """Steps per env per update."""
    batch_size: int = 256
    """Minibatch size."""
    ent_coef: float = 0.01
    """Entropy bonus (keeps thinking and answering both explored early on)."""
    gamma: float = 1.0
    """Discount; episodes are short and end with the answer, so no discount by default."""
    torch_threads: int = 1
    """Torch threads while PPO trains (restored afterwards)."""

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "n_envs", "n_steps", "batch_size", "torch_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError("must be a positive int", field=name, got=value,
                                  fix=f"pass {name}={getattr(HaltingPPOConfig, name)}")


@dataclass(frozen=True)
class HaltingResult:
    """Averages over evaluation episodes."""

    accuracy: float
    """Mean per-position accuracy of the answers."""
    mean_ticks: float
    """Mean ticks thought per episode."""
    mean_return: float
    """Mean undiscounted episode return."""
    episodes: int
    """Episodes played."""
    distinct_items: int
    """Distinct task items among them (small pools, e.g. digits, are revisited)."""
    seconds: float
    """Wall-clock time of the evaluation."""

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON."""
        return asdict(self)


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """``episodes`` distinct reset seeds derived from ``seed`` (no ``seed + i`` overlaps)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(episodes, np.uint32)]


def evaluate_halting(policy: Policy, env_kwargs: Mapping[str, Any] | None = None, *,
                     episodes: int = 2000, seed: int = 0, progress: bool = False,
                     env: Any = None) -> HaltingResult:
    """Play ``episodes`` seeded episodes of CTMThink-v0 with ``policy``."""
    import gymnasium as gym
    from tqdm.auto import tqdm

    import thinkgym  # noqa: F401  (registers the envs)

    env = env if env is not None else gym.make("CTMThink-v0", **dict(env_kwargs or {}))
    acc, ticks, returns, items = [], [], [], set()
    start = time.perf_counter()
    for s in tqdm(episode_seeds(seed, episodes), disable=not progress, desc="episodes",
                  leave=False):
        obs, info = env.reset(seed=s)
        items.add(info.get("item_id"))
        policy.reset()
        total, done, info = 0.0, False, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy.act(obs))
            total += float(reward)
            done = terminated or truncated
        acc.append(info["accuracy"])
        ticks.append(info["ticks_used"])
        returns.append(total)
    return HaltingResult(accuracy=float(np.mean(acc)), mean_ticks=float(np.mean(ticks)),
                         mean_return=float(np.mean(returns)), episodes=episodes,
                         distinct_items=len(items),
                         seconds=time.perf_counter() - start)


def budget_end_terminates(env: Any) -> Any:
    """Wrap a CTMThink-v0 env so that running out of tick budget ends it as *terminated*.

    The env reports the budget's end as ``truncated`` (Gymnasium's convention for a
    limit imposed on the episode), and stable-baselines3 bootstraps truncated episodes
    with the critic's value of the final observation, as if the episode could go on.
    Here it cannot: the answer has been scored and the budget is part of the
    observation. Bootstrapping added V(final obs) to every budget-exhausting episode,
    which made thinking to the full budget look better than answering (PPO learned
    exactly that on parity16 and digits16). Rewards are unchanged.
    """
    import gymnasium as gym

    class _BudgetEndTerminates(gym.Wrapper):
        def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
            obs, reward, terminated, truncated, info = self.env.step(action)
            if truncated:
                info = {**info, "budget_exhausted": True}
            return obs, reward, terminated or truncated, False, info

    return _BudgetEndTerminates(env)


def train_halting_ppo(config: HaltingPPOConfig | None = None, *, progress: bool = True) -> Any:
    """Train PPO on CTMThink-v0 and return the stable-baselines3 model."""
    config = config or HaltingPPOConfig()
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError as exc:
        raise DependencyNotInstalled("stable-baselines3 is needed for PPO halting",
                                     got=str(exc), fix="pip install 'thinkgym[dev]' "
                                     "(or pip install stable-baselines3)") from exc
    import torch

    import thinkgym  # noqa: F401  (registers the envs)

    # SB3 asks for render_mode="rgb_array" unless told otherwise; this env renders text only.
    env_kwargs = {"split": "validation", "render_mode": None, **dict(config.env_kwargs)}
    vec = make_vec_env("CTMThink-v0", n_envs=config.n_envs, seed=config.seed,
                       env_kwargs=env_kwargs, wrapper_class=budget_end_terminates)
    model = PPO("MlpPolicy", vec, learning_rate=config.learning_rate, n_steps=config.n_steps,
                batch_size=config.batch_size, ent_coef=config.ent_coef, gamma=config.gamma,
                seed=config.seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": [64, 64]})
    logger.info("training PPO halting policy for %d steps", config.total_timesteps)
    # A 64x64 MLP at batch <= 256 gains nothing from intra-op threads, and on a busy
    # machine their spin-waits made each step ~10x slower; restore the setting after.
    previous = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)
    try:
        model.learn(total_timesteps=config.total_timesteps, progress_bar=progress)
    finally:
        torch.set_num_threads(previous)
        vec.close()
    return model
