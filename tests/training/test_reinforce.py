from __future__ import annotations

import argparse
import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from thinkgym.agents.macro import FunctionAdapter, MacroPolicy, RandomMacroPolicy
from thinkgym.agents.search_qa import run_episode
from thinkgym.agents.search_qa_macro import ACTIONS, FEATURES, SearchQAMacroAdapter
from thinkgym.envs.search_qa import parse_action
from thinkgym.errors import ConfigError
from thinkgym.training.reinforce import (
    ReinforceConfig,
    build_network,
    config_from_args,
    configure,
    evaluate_policy,
    held_out_kwargs,
    returns_to_go,
    train_reinforce,
)

GUESS_ID = "ThinkgymTestGuess-v0"


class GuessEnv(gym.Env):
    """Four steps; each shows a random bit (one-hot) and the time, and pays 1 for naming the bit.

    Success: all four named. The time feature lets a value baseline predict G_t.
    """

    observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t, self.right = 0, 0
        return self._draw(), {}

    def _draw(self) -> np.ndarray:
        self.bit = int(self.np_random.integers(2))
        return np.array([self.bit == 0, self.bit == 1, self.t / 4], dtype=np.float32)

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        reward = float(int(action) == self.bit)
        self.right += int(reward)
        self.t += 1
        done = self.t >= 4
        return self._draw(), reward, done, False, {"is_success": done and self.right == 4}


if GUESS_ID not in gym.registry:
    gym.register(GUESS_ID, entry_point=GuessEnv)


def guess_config(**kw: Any) -> ReinforceConfig:
    base = {"env_id": GUESS_ID, "env_kwargs": {}, "eval_env_kwargs": None, "episodes": 64,
            "batch_episodes": 8, "lr": 0.05, "hidden": 8, "eval_episodes": 50, "seed": 0}
    return ReinforceConfig(**{**base, **kw})


def flat(net: Any) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in net.parameters()])


# -- the trainer -----------------------------------------------------------------------------
def test_one_update_changes_the_policy_parameters() -> None:
    config = guess_config(episodes=8, eval_episodes=0)
    before = flat(build_network(3, 2, config.hidden, config.seed))
    result = train_reinforce(config, progress=False)
    assert len(result.updates) == 1
    assert np.abs(flat(result.policy) - before).max() > 1e-4


def test_same_seed_same_run_other_seed_other_run() -> None:
    a = train_reinforce(guess_config(), progress=False)
    b = train_reinforce(guess_config(), progress=False)
    c = train_reinforce(guess_config(seed=1), progress=False)
    assert a.returns == b.returns
    assert a.evaluation == b.evaluation
    np.testing.assert_array_equal(flat(a.policy), flat(b.policy))
    assert a.returns != c.returns


def test_policy_learns_far_beyond_random_on_a_small_budget() -> None:
    env = gym.make(GUESS_ID)
    adapter = FunctionAdapter.for_env(env)
    seeds = range(100, 300)
    random = evaluate_policy(env, RandomMacroPolicy(adapter, seed=0), adapter, seeds)
    result = train_reinforce(guess_config(episodes=160, eval_episodes=0), progress=False)
    learned = evaluate_policy(env, MacroPolicy(result.policy, adapter, greedy=True), adapter,
                              seeds)
    assert random["success"] < 0.15  # 1/16 expected
    assert learned["success"] >= 0.9
    assert learned["mean_return"] > random["mean_return"] + 1.5


@pytest.mark.parametrize("baseline", ["value", "mean"])
def test_baseline_reduces_advantage_variance(baseline: str) -> None:
    result = train_reinforce(guess_config(baseline=baseline, episodes=96, lr=0.02,
                                          eval_episodes=0), progress=False)
    later = result.updates[3:]
    assert np.mean([u["advantage_var"] for u in later]) < \
        0.8 * np.mean([u["return_var"] for u in later])


def test_no_baseline_uses_the_raw_returns() -> None:
    result = train_reinforce(guess_config(baseline="none", eval_episodes=0), progress=False)
    for u in result.updates:
        assert u["advantage_var"] == pytest.approx(u["return_var"])


def test_returns_to_go_discount() -> None:
    np.testing.assert_allclose(returns_to_go([1.0, 0.0, 2.0], 0.5), [1.5, 1.0, 2.0])


# -- bad input -------------------------------------------------------------------------------
def test_unknown_env_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not registered") as err:
        train_reinforce(ReinforceConfig(env_id="NoSuchEnv-v9"), progress=False)
    assert err.value.got == "NoSuchEnv-v9"
    assert "SearchQA-v0" in (err.value.fix or "")


@pytest.mark.parametrize(("field", "value"), [("episodes", 0), ("episodes", -5),
                                              ("episodes", "100"), ("episodes", True),
                                              ("batch_episodes", 0), ("lr", 0.0),
                                              ("lr", float("nan")), ("gamma", 1.5),
                                              ("baseline", "critic")])
def test_bad_config_values_are_config_errors(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        ReinforceConfig(**{field: value})
    assert err.value.field == field
    assert err.value.got == value or value != value  # NaN != NaN
    assert err.value.fix


def test_generic_adapter_needs_box_observations_and_discrete_actions() -> None:
    with pytest.raises(ConfigError, match="Box observation") as err:
        FunctionAdapter.for_env(gym.make("FrozenLake-v1"))
    assert err.value.got == ("Discrete", "Discrete")


def test_feature_function_of_the_wrong_length_is_caught() -> None:
    adapter = FunctionAdapter(lambda obs: [1.0, 2.0, 3.0], actions=[0, 1], num_features=2)
    with pytest.raises(ConfigError, match="wrong length"):
        adapter.features(None)


# -- SearchQA-v0 -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_searchqa() -> tuple[Any, Any]:
    return (gym.make("SearchQA-v0", num_passages=200, split="train"),
            gym.make("SearchQA-v0", num_passages=200, split="test"))


class AnswerWhenReady:
    """A hand-written control over the adapter: answer once the hops are read, else search."""

    def __init__(self, adapter: SearchQAMacroAdapter) -> None:
        self.adapter = adapter

    def reset(self) -> None:
        self.adapter.reset()

    def act(self, observation: str) -> str:
        x = self.adapter.features(observation)
        ready = x[FEATURES.index("answer_ready")] > 0
        missed = x[FEATURES.index("misses_in_a_row")] > 0
        action = "answer" if ready else "search_entity_kind" if missed else "search_entity"
        return self.adapter.render(ACTIONS.index(action))


def test_searchqa_macro_actions_are_valid_protocol_text(small_searchqa) -> None:
    env, _ = small_searchqa
    adapter = SearchQAMacroAdapter.for_env(env)
    observation, _ = env.reset(seed=3)
    x = adapter.features(observation)
    assert x.shape == (len(FEATURES),)
    assert x.dtype == np.float32
    assert ((x >= 0) & (x <= 1)).all()
    for action in range(len(ACTIONS)):
        parsed = parse_action(adapter.render(action))
        assert parsed.kind == ("answer" if ACTIONS[action] == "answer" else "search")
        assert parsed.content
    with pytest.raises(ConfigError, match="unknown macro-action"):
        adapter.render(len(ACTIONS))


def test_searchqa_adapter_reads_the_hops(small_searchqa) -> None:
    _, test_env = small_searchqa
    adapter = SearchQAMacroAdapter.for_env(test_env)
    results = [run_episode(test_env, AnswerWhenReady(adapter), index=i) for i in range(40)]
    assert np.mean([r.exact_match for r in results]) >= 0.9
    assert np.mean([r.searches for r in results]) < 4


@pytest.mark.slow
def test_searchqa_policy_learns_over_random(small_searchqa) -> None:
    env, test_env = small_searchqa
    config = ReinforceConfig(episodes=160, eval_episodes=0, seed=0)
    result = train_reinforce(config, env=env, progress=False)
    adapter = SearchQAMacroAdapter.for_env(test_env)
    learned = [run_episode(test_env, MacroPolicy(result.policy, adapter, greedy=True), index=i)
               for i in range(40)]
    random = [run_episode(test_env, RandomMacroPolicy(adapter, seed=0), index=i)
              for i in range(40)]
    em_learned = np.mean([r.exact_match for r in learned])
    em_random = np.mean([r.exact_match for r in random])
    assert em_learned >= em_random + 0.3, (em_learned, em_random)


# -- command line ----------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def test_cli_defaults_are_the_searchqa_run() -> None:
    args = parse([])
    assert (args.env, args.episodes) == ("SearchQA-v0", ReinforceConfig.episodes)
    assert args.func.__name__ == "run"
    config = config_from_args(args)
    assert held_out_kwargs(config) == {"split": "test"}
    assert held_out_kwargs(config_from_args(parse(["--num-passages", "300"]))) == {
        "num_passages": 300, "split": "test"}
    assert held_out_kwargs(ReinforceConfig(env_id=GUESS_ID)) is None


def test_cli_run_writes_result_policy_and_curve(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = parse(["--env", GUESS_ID, "--episodes", "32", "--batch", "8", "--eval-episodes", "5",
                  "--out", str(out), "--no-progress", "--seed", "2"])
    assert args.func(args) == 0
    summary = json.loads((out / "result.json").read_text())
    assert (len(summary["returns"]), summary["config"]["seed"]) == (32, 2)
    assert summary["evaluation"]["episodes"] == 5
    assert (out / "policy.pt").stat().st_size > 0
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "held-out" in capsys.readouterr().out


def test_cli_searchqa_flags_on_another_env_are_refused() -> None:
    args = parse(["--env", GUESS_ID, "--split", "easy"])
    with pytest.raises(ConfigError, match="SearchQA-v0") as err:
        args.func(args)
    assert err.value.got == ["--split"]
