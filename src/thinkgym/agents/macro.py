"""Policies over macro-actions: a small network picks among a few scripted moves.

A *macro-action adapter* sits between an env and a small learned policy. It turns
each observation into a fixed-length feature vector and renders each discrete
macro-action index as a valid env action (for SearchQA-v0: protocol text such as
``<search> the next hop's entity </search>``). The learned part is only the choice
among the moves; the adapter keeps whatever episode state it needs (what was
searched, what was read) and counts turns itself, so a policy needs nothing but
the observations — it is an ordinary :class:`~thinkgym.agents.Policy`.

* :class:`MacroAdapter` — the protocol (``reset``, ``features``, ``render``,
  ``success``). :class:`FunctionAdapter` builds one from a feature function and a
  list of env actions (Box-observation envs: ``FunctionAdapter.for_env(env)``).
* :class:`MacroPolicy` — a torch module's logits over the adapter's actions,
  sampled with its own seeded generator or taken greedily; it records
  ``(features, action)`` per turn in :attr:`MacroPolicy.trace` for training.
* :class:`RandomMacroPolicy` — uniform over the same macro-actions (the baseline).

The SearchQA-v0 adapter is :class:`thinkgym.agents.search_qa_macro.SearchQAMacroAdapter`;
the trainer is :func:`thinkgym.training.reinforce.train_reinforce`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from thinkgym.errors import ConfigError

__all__ = ["FunctionAdapter", "MacroAdapter", "MacroPolicy", "RandomMacroPolicy"]


@runtime_checkable
class MacroAdapter(Protocol):
    """Features of observations and env actions of macro-action indices, for one env."""

    action_names: tuple[str, ...]
    """One name per macro-action; ``len(action_names)`` is the policy's output size."""
    num_features: int
    """Length of every :meth:`features` vector."""

    def reset(self) -> None:
        """Forget the last episode (called before its first observation)."""

    def features(self, observation: Any) -> np.ndarray:
        """``(num_features,)`` float32 features of this turn's observation (updates state)."""

    def render(self, action: int) -> Any:
        """The env action of macro-action ``action`` for the current state."""

    def success(self, info: Mapping[str, Any], episode_return: float) -> bool:
        """Whether an episode that ended with ``info`` counts as solved."""


def _default_success(info: Mapping[str, Any], episode_return: float) -> bool:
    return bool(info.get("is_success", info.get("success", False)))


class FunctionAdapter:
    """A stateless adapter from a feature function and a list of env actions.

    Args:
        feature_fn: observation -> sequence of floats (always the same length).
        actions: the env action of each macro-action index.
        num_features: length of ``feature_fn``'s output.
        action_names: names of the actions (default ``"0"``, ``"1"``, ...).
        success_fn: ``(final info, episode return) -> bool``; default reads
            ``info["is_success"]`` (or ``info["success"]``), else False.

    >>> adapter = FunctionAdapter(lambda obs: [obs, 1.0], actions=[0, 1], num_features=2)
    >>> adapter.features(0.5).tolist(), adapter.render(1)
    ([0.5, 1.0], 1)
    """

    def __init__(self, feature_fn: Callable[[Any], Sequence[float] | np.ndarray],
                 actions: Sequence[Any], num_features: int,
                 action_names: Sequence[str] | None = None,
                 success_fn: Callable[[Mapping[str, Any], float], bool] | None = None) -> None:
        if len(actions) < 2:
            raise ConfigError("a policy needs at least two actions to choose from",
                              field="actions", got=list(actions), fix="pass two or more actions")
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ConfigError("must be an int >= 1", field="num_features", got=num_features,
                              fix="pass the length of feature_fn's output")
        names = tuple(action_names) if action_names is not None else tuple(map(str, range(
            len(actions))))
        if len(names) != len(actions):
            raise ConfigError("one name per action", field="action_names",
                              got=(len(names), len(actions)), fix="pass len(actions) names")
        self.feature_fn, self.actions = feature_fn, list(actions)
        self.num_features, self.action_names = num_features, names
        self.success_fn = success_fn or _default_success

    @classmethod
    def for_env(cls, env: Any) -> FunctionAdapter:
        """Flattened Box observations as features, every ``Discrete`` action as a macro-action."""
        from gymnasium import spaces

        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or not isinstance(act_space, spaces.Discrete):
            raise ConfigError("a generic adapter needs a Box observation space and a Discrete "
                              "action space", field="env",
                              got=(type(obs_space).__name__, type(act_space).__name__),
                              fix="pass adapter=FunctionAdapter(feature_fn, actions, ...)")
        size = int(np.prod(obs_space.shape))
        start = int(act_space.start)
        return cls(lambda obs: np.asarray(obs, dtype=np.float32).reshape(-1), num_features=size,
                   actions=[start + i for i in range(int(act_space.n))])

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def features(self, observation: Any) -> np.ndarray:
        x = np.asarray(self.feature_fn(observation), dtype=np.float32).reshape(-1)
        if x.shape != (self.num_features,):
            raise ConfigError("feature_fn returned the wrong length", field="feature_fn",
                              got=x.shape, fix=f"return {self.num_features} numbers")
        return x

    def render(self, action: int) -> Any:
        return self.actions[action]

    def success(self, info: Mapping[str, Any], episode_return: float) -> bool:
        return bool(self.success_fn(info, episode_return))


class MacroPolicy:
    """A network's choice among an adapter's macro-actions, as an env :class:`Policy`.

    Args:
        network: torch module mapping ``(B, num_features)`` to ``(B, num_actions)`` logits.
        adapter: the env's :class:`MacroAdapter`.
        greedy: take the most likely action instead of sampling.
        seed: seed of the sampling generator (``numpy``; independent of torch's).
    """

    def __init__(self, network: Any, adapter: MacroAdapter, *, greedy: bool = False,
                 seed: int = 0) -> None:
        self.network, self.adapter, self.greedy = network, adapter, greedy
        self.rng = np.random.default_rng([seed, 7])
        self.trace: list[tuple[np.ndarray, int]] = []
        """``(features, action)`` of every turn since :meth:`reset`."""

    def reset(self) -> None:
        self.adapter.reset()
        self.trace = []

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Action probabilities (float64, summing to 1) for one feature vector."""
        import torch

        with torch.no_grad():
            logits = self.network(torch.as_tensor(features, dtype=torch.float32)[None])[0]
        z = logits.double().numpy()
        p = np.exp(z - z.max())
        return p / p.sum()

    def act(self, observation: Any) -> Any:
        x = self.adapter.features(observation)
        p = self.probabilities(x)
        action = int(p.argmax()) if self.greedy else int(self.rng.choice(len(p), p=p))
        self.trace.append((x, action))
        return self.adapter.render(action)


class RandomMacroPolicy:
    """Uniformly random macro-actions (seeded): the baseline a learned policy must beat."""

    def __init__(self, adapter: MacroAdapter, seed: int = 0) -> None:
        self.adapter = adapter
        self.rng = np.random.default_rng([seed, 8])
        self.trace: list[tuple[np.ndarray, int]] = []

    def reset(self) -> None:
        self.adapter.reset()
        self.trace = []

    def act(self, observation: Any) -> Any:
        x = self.adapter.features(observation)
        action = int(self.rng.integers(len(self.adapter.action_names)))
        self.trace.append((x, action))
        return self.adapter.render(action)
