from __future__ import annotations

import logging
import math
from typing import Any

import gymnasium as gym
import pytest

from thinkgym.agents.tiny import tiny_model_path
from thinkgym.envs.common.text_env import TextEnv
from thinkgym.errors import ConfigError
from thinkgym.protocols import RewardInput
from thinkgym.rewards import Composer, FunctionComponent
from thinkgym.training.grpo import (
    DEFAULT_METRICS,
    EnvRollout,
    GRPOTrainConfig,
    build_dataset,
    build_trainer,
    env_reward_funcs,
    make_env,
    trl_args,
)

ENV_ID = "ToyTextGRPO-v0"


def _chars(inp: RewardInput) -> float:
    return len(set(inp.completion)) / 10


class ToyGRPOEnv(TextEnv):
    """Two turns of free text with one <information> reply; reward = distinct chars / 10."""

    def __init__(self, constant_reward: bool = False, prompt_kinds: int = 50) -> None:
        super().__init__(max_observation_chars=10_000, max_action_chars=10_000)
        self.constant_reward, self.prompt_kinds = constant_reward, prompt_kinds
        self.composer = Composer({FunctionComponent("chars", _chars): 1.0,
                                  FunctionComponent("turns", lambda inp: 1.0): 0.0})

    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        self.turn = 0
        kind = int(self.np_random.integers(self.prompt_kinds))
        return f"Toy task number {kind}. Write anything.\n", {}

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self.turn += 1
        result = self.composer.score(RewardInput(completion="" if self.constant_reward
                                                 else action), turn=self.turn - 1)
        done = self.turn >= 2
        obs = "" if done else self.emit("<information>a short note</information>")
        return obs, result.total, done, False, {"reward_components": result.components}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=ToyGRPOEnv)


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return str(tiny_model_path())


def config(tmp_path, **kw: Any) -> GRPOTrainConfig:
    base = {"env_id": ENV_ID, "num_prompts": 4, "num_generations": 2, "prompts_per_step": 2,
            "max_steps": 1, "max_new_tokens": 8, "max_completion_tokens": 48,
            "learning_rate": 1e-2, "output_dir": str(tmp_path / "run"), "seed": 0}
    return GRPOTrainConfig(**{**base, **kw})


def capture_step(trainer) -> dict[str, Any]:
    """Run one training step, recording the batch and d(loss)/d(per-token logp)."""
    seen: dict[str, Any] = {"grads": []}
    logps_fn, loss_fn = trainer._get_per_token_logps_and_entropies, trainer._compute_loss

    def logps(*args, **kwargs):
        out = logps_fn(*args, **kwargs)
        if out[0].requires_grad:
            seen["logps"] = out[0]
            out[0].register_hook(lambda g: seen["grads"].append(g.detach().clone()))
        return out

    def compute_loss(model, inputs):
        seen["inputs"] = inputs
        return loss_fn(model, inputs)

    trainer._get_per_token_logps_and_entropies = logps
    trainer._compute_loss = compute_loss
    trainer.train()
    return seen


# -- config ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "field"), [
    ({"num_generations": 1}, "num_generations"),
    ({"use_vllm": True}, "use_vllm"),
    ({"temperature": 0.0}, "temperature"),
    ({"max_new_tokens": 100, "max_completion_tokens": 50}, "max_new_tokens"),
    ({"loss_type": "ppo"}, "loss_type"),
    ({"max_steps": 0}, "max_steps"),
    ({"metrics": ("no_such_detector",)}, "metrics"),
])
def test_config_validation_names_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        GRPOTrainConfig(**kwargs)


def test_trl_args_are_cpu_safe(tmp_path) -> None:
    args = trl_args(config(tmp_path, num_generations=4, prompts_per_step=3), [1.0, 0.0])
    assert args.bf16 is False
    assert args.fp16 is False
    assert args.activation_checkpointing is False
    assert args.gradient_checkpointing is False
    assert args.use_vllm is False
    assert args.per_device_train_batch_size == 12
    assert args.num_generations == 4
    assert args.generation_batch_size == 12
    assert args.reward_weights == [1.0, 0.0]
    assert args.max_completion_length == 48


# -- data and rewards ------------------------------------------------------------------------
def test_dataset_has_one_row_per_distinct_prompt(tmp_path, caplog) -> None:
    cfg = config(tmp_path, num_prompts=12, env_kwargs={"prompt_kinds": 3})
    with caplog.at_level(logging.WARNING, logger="thinkgym.training.grpo"):
        data = build_dataset(cfg)
    assert "repeat an earlier prompt" in caplog.text
    assert len(data) == len(set(data["prompt"])) <= 3
    env = make_env(cfg)
    for row in data:
        assert env.reset(seed=row["env_seed"])[0] == row["prompt"]


def test_reward_functions_are_the_env_components_and_sum_to_the_return(tmp_path) -> None:
    env = make_env(config(tmp_path))
    funcs, weights = env_reward_funcs(env)
    assert [f.__name__ for f in funcs] == ["chars", "turns"]
    assert weights == [1.0, 0.0]
    comps = [{"chars": 1.3, "turns": 2.0}, {"chars": 0.4, "turns": None}]
    values = [f(prompts=["p", "p"], completions=["a", "b"], completion_ids=[[1], [2]],
                episode_components=comps, env_reward=[1.3, 0.4]) for f in funcs]
    assert values == [[1.3, 0.4], [2.0, None]]


def test_detectors_are_logged_from_transcripts_with_env_text_masked(tmp_path) -> None:
    env = make_env(config(tmp_path))
    funcs, weights = env_reward_funcs(env, DEFAULT_METRICS)
    assert [f.__name__ for f in funcs] == ["chars", "turns", *DEFAULT_METRICS]
    assert weights == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    short = "<think>\nhm\n</think>\n<answer>x</answer>"
    steps = "".join(f"Step {i}: fact number {i} points somewhere new.\n" for i in range(5))
    head = "<think>\n" + steps + "</think>\n<search> q </search>"
    filler = "\nNote: " + "let me think carefully. " * 3 + "\n"  # env text, no tags
    long = head + filler + "<answer>x</answer>"
    spans = [[], [(len(head), len(head) + len(filler))]]
    got = {f.__name__: f(prompts=["p", "p"], completions=[short, long], completion_ids=[[1], [2]],
                         episode_components=[{}, {}], env_reward=[0.0, 0.0],
                         transcript=[short, long], env_spans=spans, truncated=[False, True])
           for f in funcs[2:]}
    assert got["answer_guessing"] == [1.0, 0.0]  # short reasoning vs enough reasoning
    assert got["format_gaming"] == [0.0, 0.0]  # the filler sits in env text: not the agent's
    assert got["length_gaming"] == [0.0, 1.0]
    assert got["answer_collapse"] == [1.0, 1.0]  # one group, one answer
    unmasked = funcs[3](prompts=["p"], completions=[long], completion_ids=[[2]],
                        transcript=[long], env_spans=[[]])
    assert unmasked == [1.0]


def test_unknown_env_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="env_id"):
        make_env(config(tmp_path, env_id="NoSuchEnv-v0"))


# -- training --------------------------------------------------------------------------------
def test_one_step_changes_parameters_and_env_tokens_get_no_gradient(tmp_path, tiny_path) -> None:
    import torch

    trainer = build_trainer(config(tmp_path), tiny_path)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    seen = capture_step(trainer)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)]
    assert len(changed) == len(before)  # every tensor moved after one GRPO step
    assert "rewards/answer_guessing/mean" in trainer.state.log_history[0]

    inputs, grad = seen["inputs"], seen["grads"][0]
    mask = inputs["completion_mask"] * inputs["tool_mask"]
    assert grad.shape == mask.shape
    assert (inputs["tool_mask"] == 0).any()  # there are env tokens in the batch
    assert torch.count_nonzero(grad[mask == 0]) == 0  # env, forced and pad tokens: no gradient
    moving = inputs["advantages"] != 0  # rows of groups whose rewards differ
    assert moving.any()
    assert torch.count_nonzero(grad[moving][mask[moving] == 1]) == int(mask[moving].sum())
    assert torch.count_nonzero(grad[~moving]) == 0
    # TRL's tool_mask is the rollout's env_mask, row for row
    episodes = trainer.rollout_func.last_episodes
    by_ids = {tuple(e.completion_ids): e for e in episodes}
    for row, cmask, tmask in zip(inputs["completion_ids"], inputs["completion_mask"],
                                 inputs["tool_mask"], strict=True):
        n = int(cmask.sum())
        ep = by_ids[tuple(row[:n].tolist())]
        assert tmask[:n].tolist() == ep.env_mask


def test_pad_equal_to_eos_keeps_the_final_eos_in_the_sequence(tmp_path, tiny_path) -> None:
    trainer = build_trainer(config(tmp_path), tiny_path)
    tok = trainer.processing_class
    assert tok.pad_token_id == tok.eos_token_id  # R1-Distill's setting
    seen = capture_step(trainer)
    inputs = seen["inputs"]
    lengths = sorted(len(e.completion_ids) for e in trainer.rollout_func.last_episodes)
    assert sorted(int(n) for n in inputs["completion_mask"].sum(1)) == lengths
    for row, cmask, tmask in zip(inputs["completion_ids"], inputs["completion_mask"],
                                 inputs["tool_mask"], strict=True):
        n = int(cmask.sum())
        assert int(row[n - 1]) == tok.eos_token_id  # kept, not mistaken for padding
        assert int(tmask[n - 1]) == 0  # appended by the rollout, not trained
    log = trainer.state.log_history[0]
    assert log["completions/clipped_ratio"] == 0.0  # TRL sees the episodes as finished


def test_same_seed_same_first_step_rewards(tmp_path, tiny_path) -> None:
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        trainer = build_trainer(config(tmp_path / name, seed=seed), tiny_path)
        trainer.train()
        eps = trainer.rollout_func.last_episodes
        runs.append(([e.reward for e in eps], [e.completion_ids for e in eps],
                     trainer.state.log_history[0]["reward"]))
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1]
    assert all(math.isfinite(r) for r in runs[0][0])


def test_zero_variance_groups_are_masked_out(tmp_path, tiny_path) -> None:
    trainer = build_trainer(config(tmp_path, filter_zero_variance=True,
                                   env_kwargs={"constant_reward": True}), tiny_path)
    seen = capture_step(trainer)
    assert all(sum(e.env_mask) == 0 for e in trainer.rollout_func.last_episodes)
    assert int(seen["inputs"]["tool_mask"].sum()) == int(
        (seen["inputs"]["completion_mask"] == 0).sum())  # only padding keeps tool_mask 1
    assert trainer.state.log_history[0]["rollout/zero_variance_filtered"] == 1.0


def test_steps_without_a_parseable_action_are_counted_and_warned(tmp_path, tiny_path,
                                                                 caplog) -> None:
    # 8 tokens never hold a boxed answer: every reward is the no-action floor, and the
    # logs must say so instead of showing a silent zero.
    trainer = build_trainer(config(tmp_path, env_id="Reasoning-v0",
                                   env_kwargs={"difficulty": 1}), tiny_path)
    with caplog.at_level(logging.WARNING, logger="thinkgym.training.grpo"):
        trainer.train()
    log = trainer.state.log_history[0]
    assert log["rollout/format_failures"] == 1.0
    assert log["rollout/zero_variance_groups"] == 1.0
    assert "none of the 4 episodes produced a parseable action" in caplog.text


def test_rollout_rejects_prompts_it_does_not_know(tmp_path, tiny_path) -> None:
    from types import SimpleNamespace

    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.errors import EnvStateError

    model, tok = load_model_and_tokenizer(tiny_path)
    cfg = config(tmp_path)
    rollout = EnvRollout(cfg, tok, {"known prompt": 0})
    trainer = SimpleNamespace(model=model, num_generations=2, num_generations_eval=2,
                              state=SimpleNamespace(global_step=0),
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    model.train()
    with pytest.raises(EnvStateError, match="dataset"):
        rollout(["unknown", "unknown"], trainer)
    with pytest.raises(EnvStateError, match="num_generations"):
        rollout(["known prompt", "other"], trainer)


@pytest.mark.parametrize("env_id", [
    "Reasoning-v0", "ToolCall-v0",
    pytest.param("SearchQA-v0", marks=pytest.mark.slow),  # builds a FAISS index + MiniLM
])
def test_one_step_on_a_real_env(env_id, tmp_path, tiny_path) -> None:
    if env_id not in gym.registry:
        pytest.skip(f"{env_id} is not registered yet")
    kwargs = {"num_passages": 300} if env_id == "SearchQA-v0" else {}
    trainer = build_trainer(config(tmp_path, env_id=env_id, env_kwargs=kwargs,
                                   max_prompt_tokens=1024), tiny_path)
    trainer.train()
    log = trainer.state.log_history[0]
    composer = make_env(config(tmp_path, env_id=env_id, env_kwargs=kwargs)).unwrapped.composer
    for name in composer.names:
        assert f"rewards/{name}/mean" in log
    episodes = trainer.rollout_func.last_episodes
    assert len(episodes) == 4
    assert all(e.decode_matches for e in episodes)
    assert log["reward"] == pytest.approx(sum(e.reward for e in episodes) / 4, abs=1e-6)
