"""CTMThink-v0: budgets, rewards per component, errors, determinism (tiny random CTM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thinkgym.envs.ctm_think import ACTIONS, FEATURES, CTMThinkEnv
from thinkgym.errors import ConfigError, EnvStateError, InvalidAction


@pytest.fixture
def tiny_checkpoint(tiny_ctm_checkpoint: Path) -> Path:
    return tiny_ctm_checkpoint


def make(tiny: Path, **kwargs: object) -> CTMThinkEnv:
    return CTMThinkEnv(checkpoint=str(tiny), **kwargs)


def test_default_budget_is_the_trained_ticks(tiny_checkpoint: Path) -> None:
    env = make(tiny_checkpoint)
    assert env.tick_budget == env.model.config.iterations == 8
    assert env.reference_ticks == 4
    env.reset(seed=0)
    *_, truncated, info = env.step(2)
    assert truncated
    assert info["ticks_used"] == 8


def test_observation_is_documented_features(tiny_checkpoint: Path) -> None:
    env = make(tiny_checkpoint, tick_budget=16)
    obs, info = env.reset(seed=1)
    assert obs.shape == (len(FEATURES),)
    assert env.observation_space.contains(obs)
    assert info["ticks_used"] == 0
    assert obs[FEATURES.index("budget_left_frac")] == 1.0
    assert 0.0 <= obs[FEATURES.index("certainty")] <= 1.0


@pytest.mark.parametrize(("action", "ticks"), [(0, 1), (1, 2), (2, 8)])
def test_think_actions_spend_their_ticks(tiny_checkpoint: Path, action: int, ticks: int) -> None:
    env = make(tiny_checkpoint, tick_budget=32)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert info["ticks_used"] == ticks == ACTIONS[action][1]
    assert obs[FEATURES.index("ticks_used_frac")] == pytest.approx(ticks / 32)
    assert not terminated
    assert not truncated
    # Mid-episode: no accuracy, no tick reward yet; only the step part of the mix.
    comps = info["reward_components"]
    assert comps["task_accuracy"]["raw"] is None
    assert comps["ticks"]["raw"] is None
    assert reward == pytest.approx(0.7 * comps["steps"]["raw"])


def test_two_tick_unit_matches_two_single_ticks(tiny_checkpoint: Path) -> None:
    a, b = make(tiny_checkpoint), make(tiny_checkpoint)
    a.reset(seed=3)
    b.reset(seed=3)
    a.step(1)
    b.step(0)
    obs_b, *_ = b.step(0)
    assert a._state.allclose(b._state, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a._features()[[0, 2, 5]], obs_b[[0, 2, 5]], rtol=1e-5, atol=1e-6)


def test_budget_truncates_and_scores_current_answer(tiny_checkpoint: Path) -> None:
    env = make(tiny_checkpoint, tick_budget=10, reference_ticks=4)
    env.reset(seed=5)
    env.step(2)                                   # 8 ticks
    _, reward, terminated, truncated, info = env.step(2)   # only 2 left
    assert info["ticks_used"] == 10
    assert truncated
    assert not terminated
    comps = info["reward_components"]
    assert comps["task_accuracy"]["raw"] == info["accuracy"]
    assert comps["ticks"]["raw"] == pytest.approx(-0.02 * (10 - 4))
    assert reward == pytest.approx(comps["task_accuracy"]["weighted"]
                                   + comps["step_tick"]["weighted"])
    with pytest.raises(EnvStateError, match="reset"):
        env.step(0)


def test_answer_reward_components(tiny_checkpoint: Path) -> None:
    env = make(tiny_checkpoint, tick_budget=20)
    env.reset(seed=2)
    env.step(0)
    _, reward, terminated, _, info = env.step(3)
    comps = info["reward_components"]
    assert terminated
    ticks = 0.01 * (10 - 1)                      # saved 9 ticks against tick_budget // 2
    assert comps["ticks"]["raw"] == pytest.approx(ticks)
    early = 1.0 if info["accuracy"] == 1.0 else 0.0
    assert comps["steps"]["raw"] == pytest.approx(early)
    assert comps["step_tick"]["raw"] == pytest.approx(0.7 * early + 0.3 * ticks)
    assert reward == pytest.approx(info["accuracy"] + 0.7 * early + 0.3 * ticks)


def test_step_reward_follows_certainty(tiny_checkpoint: Path) -> None:
    env = make(tiny_checkpoint, tick_budget=64, certainty_tolerance=0.0)
    env.reset(seed=4)
    for _ in range(6):
        before = env._certainty
        _, _, _, _, info = env.step(0)
        raw = info["reward_components"]["steps"]["raw"]
        delta = env._certainty - before
        expected = 0.1 if delta > 0 else (-0.5 if delta < 0 else 0.0)
        assert raw == pytest.approx(expected)


def test_seeded_episodes_repeat(tiny_checkpoint: Path) -> None:
    def run() -> list[float]:
        env = make(tiny_checkpoint, tick_budget=32)
        obs, _ = env.reset(seed=11)
        out = list(obs)
        for action in (0, 1, 2, 3):
            obs, reward, *_ = env.step(action)
            out += [*obs, reward]
        return out

    assert run() == run()


@pytest.mark.parametrize("bad", [4, -1, 1.5, "think", None])
def test_invalid_actions_raise_with_range(tiny_checkpoint: Path, bad: object) -> None:
    env = make(tiny_checkpoint)
    env.reset(seed=0)
    with pytest.raises(InvalidAction, match=r"\[0, 3\]"):
        env.step(bad)  # type: ignore[arg-type]


def test_config_errors(tiny_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="task"):
        CTMThinkEnv(task="chess")
    with pytest.raises(ConfigError, match="bundled checkpoint"):
        CTMThinkEnv(task="sort")
    with pytest.raises(ConfigError, match="trained on task 'parity'"):
        CTMThinkEnv(task="maze", checkpoint=str(tiny_checkpoint))
    with pytest.raises(ConfigError, match="tick_budget"):
        make(tiny_checkpoint, tick_budget=0)
    with pytest.raises(ConfigError, match="alpha"):
        make(tiny_checkpoint, alpha=0.6, beta=0.3)
    with pytest.raises(ConfigError, match="unknown CTMThink-v0 argument"):
        make(tiny_checkpoint, tick_budjet=3)
    with pytest.raises(ConfigError, match="dtype"):
        make(tiny_checkpoint, dtype="float16")


def test_bf16_env_follows_fp32_episodes() -> None:
    """dtype="bfloat16" runs the same episodes as float32 up to bf16 rounding."""
    def play(dtype: str) -> list[tuple[float, float, bool]]:
        env = CTMThinkEnv(task="parity", dtype=dtype)
        out = []
        for seed in range(4):
            env.reset(seed=seed)
            env.step(2)  # think 8 ticks
            _, reward, _, _, info = env.step(3)  # answer
            out.append((reward, info["certainty"], info["accuracy"]))
        return out

    fp32, bf16 = play("float32"), play("bfloat16")
    assert [a for *_, a in fp32] == [a for *_, a in bf16]
    for (r32, c32, _), (r16, c16, _) in zip(fp32, bf16, strict=True):
        assert r16 == pytest.approx(r32, abs=0.05)
        assert c16 == pytest.approx(c32, abs=0.05)  # 1 - normalised entropy: sensitive


def test_text_mode_renders_same_values(tiny_checkpoint: Path) -> None:
    env = make(tiny_checkpoint, obs_mode="text", tick_budget=16)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(2)
    assert isinstance(obs, str)
    assert env.observation_space.contains(obs)
    assert "ticks 8/16" in obs
    assert f"certainty {env._certainty:.3f}" in obs


def test_check_env_passes(tiny_checkpoint: Path) -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(make(tiny_checkpoint), skip_render_check=True)
    check_env(make(tiny_checkpoint, obs_mode="text"), skip_render_check=True)


def test_async_vector_env_after_parent_used_torch_threads(tiny_checkpoint: Path) -> None:
    # Regression: forked async workers hung in their first multi-threaded torch op
    # once the parent had used the OpenMP pool.
    import subprocess
    import sys

    code = f"""
import numpy as np, torch
x = torch.randn(256, 256); [x @ x for _ in range(10)]
import thinkgym
envs = thinkgym.make_vec("CTMThink-v0", num_envs=2, vectorization_mode="async",
                         checkpoint={str(tiny_checkpoint)!r}, tick_budget=16)
envs.reset(seed=0)
for _ in range(5):
    envs.step(np.zeros(2, dtype=np.int64))
envs.close()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip().endswith("ok")


def test_validation_and_test_halves_are_disjoint(tiny_checkpoint: Path) -> None:
    def items(split: str) -> set[str]:
        env = make(tiny_checkpoint, split=split)
        return {env.reset(seed=s)[1]["item_id"] for s in range(60)}

    val, test = items("validation"), items("test")  # parity-8: ~51 held-out strings
    assert len(val) > 10
    assert len(test) > 10
    assert not val & test
    with pytest.raises(ConfigError, match="split"):
        make(tiny_checkpoint, split="val")


# --- the bundled digits checkpoint ---------------------------------------------------


@pytest.fixture(scope="module")
def digits_env() -> CTMThinkEnv:
    return CTMThinkEnv(task="digits")


def test_digits_checkpoint_loads_as_default(digits_env: CTMThinkEnv) -> None:
    from thinkgym.envs.ctm_think import DEFAULT_CHECKPOINTS

    assert digits_env.config.checkpoint_name == DEFAULT_CHECKPOINTS["digits"]
    assert digits_env.checkpoint_meta.task_name == "digits"
    assert digits_env.tick_budget == digits_env.model.config.iterations == 16
    # A trained classifier: most held-out images right at the end of the budget.
    correct = 0
    for seed in range(20):
        digits_env.reset(seed=seed)
        *_, truncated, info = digits_env.step(2)
        while not truncated:
            *_, truncated, info = digits_env.step(2)
        correct += info["accuracy"]
    assert correct >= 16


def test_digits_check_env_and_determinism(digits_env: CTMThinkEnv) -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(digits_env, skip_render_check=True)

    def run() -> list[float]:
        obs, info = digits_env.reset(seed=7)
        out = [*obs, info["item_index"]]
        for action in (0, 1, 2, 3):
            obs, reward, *_ = digits_env.step(action)
            out += [*obs, reward]
        return out

    assert run() == run()


def test_digits_test_pool_is_held_out_images(digits_env: CTMThinkEnv) -> None:
    # Test episodes show held-out images only: never an image of the CTM's training split.
    from thinkgym.ctm_core.tasks.digits import _digits

    images, _ = _digits()
    train_images = {images[i].tobytes() for i in digits_env.task.split_images("train")}
    for seed in range(30):
        digits_env.reset(seed=seed)
        shown = digits_env._batch.inputs[0, 0].numpy().tobytes()
        assert shown not in train_images
