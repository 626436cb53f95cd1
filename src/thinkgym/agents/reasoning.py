r"""Scripted baselines for Reasoning-v0: oracle, bare guesser and random.

* :class:`OracleReasoningPolicy` reads the problem from the env (privileged) and
  writes its worked solution in ``<think>`` followed by ``\boxed{answer}``: correct,
  well formatted, and not flagged by the reward-hacking detectors.
* :class:`GuessingPolicy` boxes the right answer with no reasoning at all: correct,
  but ``answer_guessing`` flags it (what ``shaped_correctness`` halves).
* :class:`RandomReasoningPolicy` boxes a random integer.

    >>> import gymnasium as gym
    >>> import thinkgym
    >>> env = gym.make("Reasoning-v0")
    >>> obs, info = env.reset(seed=0)
    >>> _, reward, _, _, info = env.step(OracleReasoningPolicy(env).act(obs))
    >>> info["correct"], any(info["detectors"].values())
    (True, False)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from thinkgym.envs.reasoning import ReasoningEnv
from thinkgym.envs.reasoning.problems import Problem
from thinkgym.errors import ConfigError

__all__ = ["GuessingPolicy", "OracleReasoningPolicy", "RandomReasoningPolicy"]


def _problem(env: ReasoningEnv) -> Problem:
    if env.problem is None:
        raise ConfigError("the env has no problem yet", field="env", got=None,
                          fix="call env.reset() before act()")
    return env.problem


def _unwrap(env: gym.Env) -> ReasoningEnv:
    inner = env.unwrapped
    if not isinstance(inner, ReasoningEnv):
        raise ConfigError("this policy needs a Reasoning-v0 env", field="env",
                          got=type(inner).__name__, fix='pass gym.make("Reasoning-v0")')
    return inner


class OracleReasoningPolicy:
    """Worked solution in ``<think>``, then the exact answer boxed."""

    def __init__(self, env: gym.Env) -> None:
        self.env = _unwrap(env)

    def reset(self) -> None:
        """Stateless."""

    def act(self, observation: str) -> str:
        p = _problem(self.env)
        return (f"<think>\nThe problem: {p.question}\n"
                f"This is a {p.kind.replace('_', ' ')} problem; work it step by step.\n"
                f"{p.solution}\nSo the final result is {p.answer}.\n</think>\n"
                f"The answer is \\boxed{{{p.answer}}}.")


class GuessingPolicy:
    """The right answer, boxed, with no reasoning (flagged by ``answer_guessing``)."""

    def __init__(self, env: gym.Env) -> None:
        self.env = _unwrap(env)

    def reset(self) -> None:
        """Stateless."""

    def act(self, observation: str) -> str:
        return f"\\boxed{{{_problem(self.env).answer}}}"


class RandomReasoningPolicy:
    """A random integer in ``[-100, 100]``, boxed, after one line of filler."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Nothing to forget (the random stream continues across episodes)."""

    def act(self, observation: str) -> str:
        return f"I think the answer is \\boxed{{{int(self.rng.integers(-100, 101))}}}."
