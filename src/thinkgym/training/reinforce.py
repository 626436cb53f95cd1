"""REINFORCE with a baseline for small torch policies over macro-actions: the simple reference.

The policy is a small MLP over an adapter's features (:mod:`thinkgym.agents.macro`)
choosing among its macro-actions; on SearchQA-v0 that is the search-or-answer
decision (:class:`~thinkgym.agents.search_qa_macro.SearchQAMacroAdapter`). Any
other env works with a feature function and an action set
(:class:`~thinkgym.agents.macro.FunctionAdapter`; Box-observation, Discrete-action
envs get one automatically).

Each update plays ``batch_episodes`` episodes with the current policy, computes
returns-to-go ``G_t = sum_k gamma^k r_{t+k}`` and the advantages ``G_t - b(s_t)``,
and takes one Adam step on ``-mean(A_t log pi(a_t|s_t)) - entropy_coef * H``. The
baseline ``b`` is a learned value MLP (``"value"``, regressed on ``G_t``), a moving
average of returns-to-go per turn index (``"mean"``), or 0 (``"none"``).
Everything is seeded: network init (a forked torch RNG), action sampling (numpy)
and env seeds, so two runs with the same config give the same numbers.

    thinkgym train reinforce                       # SearchQA-v0, ~1 minute on CPU
    thinkgym train reinforce --episodes 2000 --out runs/reinforce --seed 3
    thinkgym train reinforce --env CartPole-v1 --episodes 300 --lr 0.01
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from thinkgym.errors import ConfigError, check_int_fields

__all__ = ["ReinforceConfig", "ReinforceResult", "build_network", "config_from_args", "configure",
           "default_adapter", "evaluate_policy", "held_out_kwargs", "make_env",
           "plot_learning_curve", "run", "train_reinforce"]

logger = logging.getLogger(__name__)

Baseline = Literal["value", "mean", "none"]


@dataclass(frozen=True)
class ReinforceConfig:
    """One REINFORCE run (defaults: SearchQA-v0's search-or-answer policy in about a minute)."""

    env_id: str = "SearchQA-v0"
    """Registered env id (SearchQA-v0, or any Box-observation/Discrete-action env)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Arguments of ``gym.make`` for training episodes (SearchQA-v0's default split: train)."""
    eval_env_kwargs: Mapping[str, Any] | None = None
    """Arguments of ``gym.make`` for the held-out evaluation. None: for SearchQA-v0,
    ``env_kwargs`` with ``split="test"``; for other envs, ``env_kwargs`` (unseen seeds)."""
    episodes: int = 480
    """Training episodes."""
    batch_episodes: int = 16
    """Episodes per policy update."""
    lr: float = 0.02
    """Adam learning rate of the policy (and of the value baseline)."""
    gamma: float = 1.0
    """Discount of the returns-to-go."""
    hidden: int = 32
    """Hidden width of the policy and value MLPs (0: linear)."""
    baseline: Baseline = "value"
    """``"value"`` (learned), ``"mean"`` (moving average per turn index) or ``"none"``."""
    value_lr: float = 0.05
    """Adam learning rate of the ``"value"`` baseline."""
    value_steps: int = 8
    """Full-batch regression steps of the value baseline per update."""
    baseline_momentum: float = 0.9
    """Moving-average momentum of the ``"mean"`` baseline."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each update (0: off)."""
    eval_episodes: int = 100
    """Held-out episodes played greedily after training (0: skip)."""
    seed: int = 0
    """Seed of the network init, action sampling and env seeds."""

    def __post_init__(self) -> None:
        check_int_fields(self, {"episodes": 1, "batch_episodes": 1, "hidden": 0,
                                "value_steps": 1, "eval_episodes": 0, "seed": 0})
        floats: tuple[tuple[str, float, float], ...] = (
            ("lr", 0.0, math.inf), ("value_lr", 0.0, math.inf), ("gamma", 0.0, 1.0),
            ("baseline_momentum", 0.0, 1.0), ("entropy_coef", 0.0, math.inf),
            ("max_grad_norm", 0.0, math.inf))
        for name, lo_f, hi in floats:
            v = getattr(self, name)
            bad = isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            positive = name in ("lr", "value_lr")
            if bad or not lo_f <= v <= hi or (positive and v == 0):
                raise ConfigError(f"must be a number in [{lo_f}, {hi}]" + (" and > 0" if positive
                                  else ""), field=name, got=v,
                                  fix=f"pass e.g. {name}={getattr(ReinforceConfig, name)}")
        if self.baseline not in ("value", "mean", "none"):
            raise ConfigError("unknown baseline", field="baseline", got=self.baseline,
                              fix="use 'value', 'mean' or 'none'")
        object.__setattr__(self, "env_kwargs", MappingProxyType(dict(self.env_kwargs)))
        if self.eval_env_kwargs is not None:
            object.__setattr__(self, "eval_env_kwargs",
                               MappingProxyType(dict(self.eval_env_kwargs)))


@dataclass
class ReinforceResult:
    """What a run produced: per-episode curves, per-update statistics, held-out evaluation."""

    config: ReinforceConfig
    returns: list[float]
    """Return of every training episode, in order."""
    successes: list[bool]
    """Success (adapter's definition; SearchQA: exact match) of every training episode."""
    updates: list[dict[str, float]]
    """Per update: ``loss``, ``entropy``, ``return_var`` (Var G_t) and ``advantage_var``."""
    evaluation: dict[str, float]
    """Greedy held-out figures: ``success``, ``mean_return``, ``mean_turns``, ...."""
    policy: Any = field(repr=False)
    """The trained network (``torch.nn.Module``)."""
    adapter: Any = field(repr=False)
    """The adapter the policy was trained with."""

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no network)."""
        cfg = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        cfg["env_kwargs"] = dict(self.config.env_kwargs)
        if self.config.eval_env_kwargs is not None:
            cfg["eval_env_kwargs"] = dict(self.config.eval_env_kwargs)
        return {"config": cfg, "returns": self.returns,
                "successes": [int(s) for s in self.successes], "updates": self.updates,
                "evaluation": self.evaluation, "actions": list(self.adapter.action_names)}


# -- building blocks -------------------------------------------------------------------------
def make_env(env_id: str, env_kwargs: Mapping[str, Any]) -> Any:
    """``gym.make(env_id, **env_kwargs)`` with a ConfigError for unknown ids."""
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)

    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise ConfigError("env is not registered", field="env_id", got=env_id,
                          fix="use a registered id, e.g. SearchQA-v0 or CartPole-v1 "
                              "(`thinkgym envs` lists thinkgym's)")
    return gym.make(env_id, **dict(env_kwargs))


def held_out_kwargs(config: ReinforceConfig) -> dict[str, Any] | None:
    """``gym.make`` arguments of the evaluation env (None: evaluate in the training env)."""
    if config.eval_env_kwargs is not None:
        return dict(config.eval_env_kwargs)
    if config.env_id == "SearchQA-v0":
        return {**config.env_kwargs, "split": "test"}
    return None


def default_adapter(env: Any) -> Any:
    """SearchQA-v0's macro-actions, or a generic adapter for Box/Discrete envs."""
    from thinkgym.agents.macro import FunctionAdapter
    from thinkgym.envs.search_qa import SearchQAEnv

    if isinstance(env.unwrapped, SearchQAEnv):
        from thinkgym.agents.search_qa_macro import SearchQAMacroAdapter

        return SearchQAMacroAdapter.for_env(env)
    return FunctionAdapter.for_env(env)


def build_network(num_features: int, num_outputs: int, hidden: int, seed: int) -> Any:
    """MLP ``features -> hidden (tanh) -> outputs`` (linear if ``hidden == 0``), seeded init."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [torch.nn.Linear(num_features, hidden), torch.nn.Tanh()] if hidden else []
        last = torch.nn.Linear(hidden or num_features, num_outputs)  # created after: same init
        net: torch.nn.Module = torch.nn.Sequential(*layers, last) if hidden else last
        with torch.no_grad():  # start near-uniform: small output weights, zero bias
            last.weight.mul_(0.1)
            last.bias.zero_()
    return net


def play_episode(env: Any, policy: Any, seed: int | None = None,
                 options: dict[str, Any] | None = None) -> tuple[list[float], dict[str, Any]]:
    """Play one episode: per-turn rewards and the final ``info`` (``policy.trace``: the rest)."""
    policy.reset()
    observation, info = env.reset(seed=seed, options=options)
    rewards: list[float] = []
    done = False
    while not done:
        observation, reward, terminated, truncated, info = env.step(policy.act(observation))
        rewards.append(float(reward))
        done = terminated or truncated
    return rewards, info


def returns_to_go(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """``G_t = r_t + gamma * G_{t+1}``.

    >>> returns_to_go([0.0, -0.1, 1.0], 1.0).round(2).tolist()
    [0.9, 0.9, 1.0]
    """
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def evaluate_policy(env: Any, policy: Any, adapter: Any, seeds: Sequence[int]) -> dict[str, float]:
    """Success rate, mean return and mean turns of ``policy`` on episodes ``seeds``."""
    rets, succ, turns = [], [], []
    for s in seeds:
        rewards, info = play_episode(env, policy, seed=int(s))
        rets.append(sum(rewards))
        succ.append(adapter.success(info, rets[-1]))
        turns.append(len(rewards))
    n = max(1, len(rets))
    return {"success": sum(succ) / n, "mean_return": math.fsum(rets) / n,
            "mean_turns": sum(turns) / n, "episodes": len(rets)}


# -- training --------------------------------------------------------------------------------
EVAL_SEED_OFFSET = 1_000_000
"""Held-out evaluation plays env seeds ``EVAL_SEED_OFFSET + i`` (the same for every run seed)."""


class _Update:
    """One policy-gradient step on a batch of episodes (and the baseline's own update)."""

    def __init__(self, config: ReinforceConfig, net: Any, value: Any) -> None:
        import torch

        self.config, self.net, self.value = config, net, value
        self.optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
        # The value net has its own optimiser and several regression steps per batch: sharing
        # the policy's step (and its gradient clip) leaves it too far behind to cut variance.
        self.value_optimizer = (torch.optim.Adam(value.parameters(), lr=config.value_lr)
                                if value is not None else None)
        self.turn_means = np.zeros(0)  # "mean" baseline: moving average of G_t per turn t

    def _mean_baseline(self, g: np.ndarray, turns: np.ndarray) -> np.ndarray:
        size = int(turns.max()) + 1
        if len(self.turn_means) < size:
            grow = np.zeros(size - len(self.turn_means))
            self.turn_means = np.concatenate([self.turn_means, grow])
        b = self.turn_means[turns].copy()
        m = self.config.baseline_momentum
        for t in np.unique(turns):
            self.turn_means[t] = m * self.turn_means[t] + (1 - m) * g[turns == t].mean()
        return b

    def __call__(self, feats: list[np.ndarray], actions: list[int], g: np.ndarray,
                 turns: np.ndarray) -> dict[str, float]:
        import torch

        x = torch.as_tensor(np.stack(feats), dtype=torch.float32)  # (N, F)
        a = torch.as_tensor(actions, dtype=torch.long)  # (N,)
        target = torch.as_tensor(g, dtype=torch.float32)  # (N,)
        logp = torch.log_softmax(self.net(x), dim=-1)  # (N, A)
        chosen = logp.gather(1, a[:, None])[:, 0]
        entropy = -(logp.exp() * logp).sum(-1).mean()
        value_loss = torch.zeros(())
        if self.config.baseline == "value":
            with torch.no_grad():
                adv = target - self.value(x)[:, 0]  # the baseline before it sees this batch
        elif self.config.baseline == "mean":
            adv = target - torch.as_tensor(self._mean_baseline(g, turns), dtype=torch.float32)
        else:
            adv = target
        loss = -(adv * chosen).mean() - self.config.entropy_coef * entropy
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        if self.value_optimizer is not None:
            for _ in range(self.config.value_steps):
                value_loss = ((self.value(x)[:, 0] - target) ** 2).mean()
                self.value_optimizer.zero_grad()
                value_loss.backward()
                self.value_optimizer.step()
        return {"loss": loss.item(), "entropy": entropy.item(), "value_loss": value_loss.item(),
                "return_var": target.var(unbiased=False).item(),
                "advantage_var": adv.detach().var(unbiased=False).item()}


def train_reinforce(config: ReinforceConfig | None = None, *, env: Any = None,
                    adapter: Any = None, eval_env: Any = None,
                    progress: bool = True) -> ReinforceResult:
    """Train a macro-action policy with REINFORCE; evaluate it greedily on held-out episodes.

    Args:
        config: the run (default: :class:`ReinforceConfig`'s SearchQA-v0 settings).
        env: an env to train in instead of ``gym.make(config.env_id, **config.env_kwargs)``.
        adapter: a :class:`~thinkgym.agents.macro.MacroAdapter` (default: :func:`default_adapter`).
        eval_env: the held-out env (default: made from ``config.eval_env_kwargs``, or ``env``).
        progress: show a tqdm bar.
    """
    import torch
    from tqdm.auto import tqdm

    from thinkgym.agents.macro import MacroPolicy

    config = config or ReinforceConfig()
    if env is None:
        env = make_env(config.env_id, config.env_kwargs)
    adapter = adapter if adapter is not None else default_adapter(env)
    n_act = len(adapter.action_names)
    net = build_network(adapter.num_features, n_act, config.hidden, config.seed)
    value = (build_network(adapter.num_features, 1, config.hidden, config.seed + 10_007)
             if config.baseline == "value" else None)
    step = _Update(config, net, value)
    policy = MacroPolicy(net, adapter, seed=config.seed)
    env_seeds = np.random.default_rng([config.seed, 1])
    returns: list[float] = []
    successes: list[bool] = []
    updates: list[dict[str, float]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared CPU
    try:
        with tqdm(total=config.episodes, desc=f"reinforce {config.env_id}", unit="ep",
                  disable=not progress, leave=False) as bar:
            while len(returns) < config.episodes:
                n = min(config.batch_episodes, config.episodes - len(returns))
                feats: list[np.ndarray] = []
                actions: list[int] = []
                gs: list[np.ndarray] = []
                turns: list[np.ndarray] = []
                for _ in range(n):
                    rewards, info = play_episode(env, policy,
                                                 seed=int(env_seeds.integers(2**31 - 1)))
                    feats += [f for f, _ in policy.trace]
                    actions += [a for _, a in policy.trace]
                    gs.append(returns_to_go(rewards, config.gamma))
                    turns.append(np.arange(len(rewards)))
                    returns.append(math.fsum(rewards))
                    successes.append(adapter.success(info, returns[-1]))
                updates.append(step(feats, actions, np.concatenate(gs), np.concatenate(turns)))
                bar.update(n)
                recent = slice(-config.batch_episodes * 4, None)
                bar.set_postfix(ret=f"{np.mean(returns[recent]):.3f}",
                                success=f"{np.mean(successes[recent]):.2f}")
        evaluation: dict[str, float] = {}
        if config.eval_episodes:
            if eval_env is None:
                eval_kwargs = held_out_kwargs(config)
                eval_env = env if eval_kwargs is None else make_env(config.env_id, eval_kwargs)
            greedy = MacroPolicy(net, adapter, greedy=True, seed=config.seed)
            seeds = range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + config.eval_episodes)
            evaluation = evaluate_policy(eval_env, greedy, adapter, seeds)
    finally:
        torch.set_num_threads(threads)
    logger.info("reinforce %s: %d episodes, last-%d success %.3f; held-out %s", config.env_id,
                len(returns), min(100, len(returns)), float(np.mean(successes[-100:])),
                evaluation)
    return ReinforceResult(config=config, returns=returns, successes=successes, updates=updates,
                           evaluation=evaluation, policy=net, adapter=adapter)


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    lo = np.maximum(0, np.arange(1, len(v) + 1) - window)
    return (c[1:] - c[lo]) / (np.arange(1, len(v) + 1) - lo)


def plot_learning_curve(results: ReinforceResult | Sequence[ReinforceResult], path: str | Path,
                        references: Mapping[str, Mapping[str, float]] | None = None,
                        window: int = 50) -> Path:
    """PNG of training return and success (moving average over ``window`` episodes).

    ``references`` draws horizontal lines, e.g. ``{"oracle": {"success": 1.0,
    "mean_return": 0.95}}``; several results (seeds) are drawn as separate lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [results] if isinstance(results, ReinforceResult) else list(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "returns", "episode return"),
                           (axes[1], "successes", "success rate")):
        for r in runs:
            ax.plot(_smooth(getattr(r, key), window), lw=1.2, label=f"seed {r.config.seed}")
        for i, (name, ref) in enumerate((references or {}).items()):
            value = ref.get("mean_return" if key == "returns" else "success")
            if value is not None:
                ax.axhline(value, ls="--", lw=1, color=f"C{len(runs) + i}", label=name)
        ax.set_xlabel("training episode")
        ax.set_ylabel(f"{label} (moving average, {window} episodes)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    env_id = runs[0].config.env_id if runs else ""
    fig.suptitle(f"REINFORCE on {env_id}: training curves (greedy held-out eval in the JSON)")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# -- command line ----------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``reinforce`` subcommand's arguments and set ``func=run``."""
    d = ReinforceConfig
    parser.add_argument("--env", default=d.env_id,
                        help="env id: SearchQA-v0, or any Box-observation/Discrete-action env")
    parser.add_argument("--episodes", type=int, default=d.episodes, help="training episodes")
    parser.add_argument("--batch", type=int, default=d.batch_episodes,
                        help="episodes per policy update")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of init, sampling, envs")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    parser.add_argument("--gamma", type=float, default=d.gamma, help="discount")
    parser.add_argument("--hidden", type=int, default=d.hidden, help="MLP width (0: linear)")
    parser.add_argument("--baseline", choices=["value", "mean", "none"], default=d.baseline,
                        help="learned value, moving average per turn, or none")
    parser.add_argument("--entropy", type=float, default=d.entropy_coef, help="entropy bonus")
    parser.add_argument("--eval-episodes", type=int, default=d.eval_episodes,
                        help="greedy held-out episodes after training (0: skip)")
    parser.add_argument("--split", default=None,
                        help="SearchQA-v0: training split (default train; 'easy' is single-hop)")
    parser.add_argument("--eval-split", default=None,
                        help="SearchQA-v0: held-out split (default test)")
    parser.add_argument("--num-passages", type=int, default=None,
                        help="SearchQA-v0: world size (default: the env's)")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                        help="any other gym.make argument (repeatable; values parsed as JSON)")
    parser.add_argument("--out", default="runs/reinforce",
                        help="directory for result.json, policy.pt and learning_curve.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ReinforceConfig:
    """The :class:`ReinforceConfig` of parsed ``reinforce`` arguments."""
    from thinkgym.ctm_core.cli import parse_assignments

    kwargs = parse_assignments(args.env_arg, "--env-arg")
    searchqa = args.env == "SearchQA-v0"
    own = {"--split": args.split, "--eval-split": args.eval_split,
           "--num-passages": args.num_passages}
    if not searchqa and any(v is not None for v in own.values()):
        raise ConfigError("these flags are SearchQA-v0's", field="--env",
                          got=[k for k, v in own.items() if v is not None],
                          fix="use --env-arg KEY=VALUE for other envs")
    eval_kwargs = None
    if searchqa:
        if args.num_passages is not None:
            kwargs["num_passages"] = args.num_passages
        eval_kwargs = {**kwargs, "split": args.eval_split or "test"}
        if args.split is not None:
            kwargs["split"] = args.split
    return ReinforceConfig(
        env_id=args.env, env_kwargs=kwargs, eval_env_kwargs=eval_kwargs, episodes=args.episodes,
        batch_episodes=args.batch, lr=args.lr, gamma=args.gamma, hidden=args.hidden,
        baseline=args.baseline, entropy_coef=args.entropy, eval_episodes=args.eval_episodes,
        seed=args.seed)


def run(args: argparse.Namespace) -> int:
    """``thinkgym train reinforce``: train, print the held-out figures, write the run files."""
    import torch

    config = config_from_args(args)
    result = train_reinforce(config, progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.summary(), indent=1) + "\n")
    torch.save({"state_dict": result.policy.state_dict(), "hidden": config.hidden,
                "num_features": result.adapter.num_features,
                "actions": list(result.adapter.action_names)}, out / "policy.pt")
    plot_learning_curve(result, out / "learning_curve.png",
                        window=max(10, min(50, config.episodes // 10)))
    last = slice(-min(100, len(result.returns)), None)
    print(f"{config.env_id}: {config.episodes} episodes; last {len(result.returns[last])}: "
          f"return {np.mean(result.returns[last]):.3f}, "
          f"success {np.mean(result.successes[last]):.3f}")
    if result.evaluation:
        ev = result.evaluation
        print(f"held-out (greedy, {ev['episodes']} episodes): success {ev['success']:.3f}, "
              f"return {ev['mean_return']:.3f}, turns {ev['mean_turns']:.2f}")
    print(f"wrote {out / 'result.json'}, {out / 'policy.pt'}, {out / 'learning_curve.png'}")
    return 0
