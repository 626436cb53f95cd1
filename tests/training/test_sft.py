from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import pytest

from thinkgym.agents.tiny import tiny_model_path
from thinkgym.errors import ConfigError
from thinkgym.training.sft import (
    ORACLES,
    SFTTrainConfig,
    _with_prefill,
    build_sft_dataset,
    build_sft_trainer,
    oracle_episodes,
    oracle_policy,
    render_oracle_episode,
    train_sft,
)

ENV = "ToolCall-v0"  # multi-turn with tool responses, cheap to make


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return str(tiny_model_path())


@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    from thinkgym.agents.llm import load_model_and_tokenizer

    return load_model_and_tokenizer(tiny_path)[1]


def config(tmp_path, **kw: Any) -> SFTTrainConfig:
    base = {"env_id": ENV, "num_episodes": 4, "max_steps": 2, "learning_rate": 1e-2,
            "per_device_batch_size": 2, "max_completion_tokens": 512,
            "output_dir": str(tmp_path / "sft"), "logging_steps": 1}
    return SFTTrainConfig(**{**base, **kw})


# -- config ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "field"), [
    ({"env_id": "NoOracle-v0"}, "env_id"),
    ({"num_episodes": 0}, "num_episodes"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"max_steps": -1}, "max_steps"),
    ({"warmup_ratio": 1.5}, "warmup_ratio"),
])
def test_config_validation_names_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        SFTTrainConfig(**kwargs)


def test_sft_args_are_cpu_safe_and_mask_the_prompt(tmp_path) -> None:
    from thinkgym.training.sft import sft_args

    args = sft_args(config(tmp_path))
    assert args.bf16 is False
    assert args.fp16 is False
    assert args.activation_checkpointing is False
    assert args.completion_only_loss is True
    assert args.packing is False


def test_prefill_is_forced_onto_the_first_action() -> None:
    assert _with_prefill("<think>I search.</think>", "<think>\n") == "<think>\nI search.</think>"
    assert _with_prefill("<think>\nok</think>", "<think>\n") == "<think>\nok</think>"
    call = "<tool_call>{}</tool_call>"
    assert _with_prefill(call, "<think>\n") == "<think>\n" + call
    assert _with_prefill("anything", "") == "anything"


def test_every_listed_oracle_can_be_built() -> None:
    import thinkgym  # noqa: F401

    for env_id in ORACLES:
        if env_id == "SearchQA-v0":  # builds a FAISS index; covered by the slow test
            continue
        env = gym.make(env_id)
        env.reset(seed=0)
        assert hasattr(oracle_policy(env_id, env), "act")


# -- rendering -------------------------------------------------------------------------------
def _runs(ids: list[int], mask: list[int], tokenizer, value: int) -> list[str]:
    """Decoded text of each maximal run of tokens with ``mask == value``."""
    out, cur = [], []
    for i, m in zip(ids, mask, strict=True):
        if m == value:
            cur.append(i)
        elif cur:
            out.append(tokenizer.decode(cur, skip_special_tokens=True))
            cur = []
    if cur:
        out.append(tokenizer.decode(cur, skip_special_tokens=True))
    return [t for t in out if t]


def test_episode_is_rendered_like_a_rollout(tokenizer) -> None:
    from thinkgym.agents.llm import encode_prompt
    from thinkgym.training.grpo import GRPOTrainConfig, make_env

    env = make_env(GRPOTrainConfig(env_id=ENV))
    policy = oracle_policy(ENV, env)
    ep = render_oracle_episode(env, policy, tokenizer, seed=3)
    prompt, _ = env.reset(seed=3)
    enc = encode_prompt(tokenizer, prompt)
    assert ep.prompt_ids == list(enc.ids)
    assert ep.completion_ids[:len(enc.prefill_ids)] == list(enc.prefill_ids)
    assert ep.env_mask[:len(enc.prefill_ids)] == [0] * len(enc.prefill_ids)  # forced, not learnt
    assert ep.completion_ids[-1] == tokenizer.eos_token_id
    assert ep.env_mask[-1] == 0
    assert len(ep.completion_ids) == len(ep.env_mask) == len(ep.logprobs)
    assert ep.decode_matches
    transcript = ep.infos[-1]["transcript"]
    assert ep.text == transcript  # the env scored exactly what the model will learn
    env_text = [transcript[a:b] for a, b in ep.env_spans]
    assert ep.turns >= 2
    assert len(env_text) >= 1
    # tokens under mask 0 (after the prefill) are exactly the env's spans, in order
    body = slice(len(enc.prefill_ids), len(ep.completion_ids))
    assert _runs(ep.completion_ids[body], ep.env_mask[body], tokenizer, 0) == env_text
    agent = _runs(ep.completion_ids, ep.env_mask, tokenizer, 1)
    assert "".join(agent) == "".join(
        transcript[a:b] for a, b in _complement(ep.env_spans, len(enc.prefill_text),
                                                 len(transcript)))
    assert ep.reward > 0  # the oracle solved it


def test_a_reply_without_a_closing_tag_learns_to_stop(tokenizer) -> None:
    # Reasoning-v0's reply ends only when the model writes eos: that eos is trained,
    # while an eos after </answer> (where the sampler stops the turn) is forced text.
    import gymnasium as gym

    env = gym.make("Reasoning-v0", difficulty=1)
    ep = render_oracle_episode(env, oracle_policy("Reasoning-v0", env), tokenizer, seed=0)
    assert ep.completion_ids[-1] == tokenizer.eos_token_id
    assert ep.env_mask[-1] == 1


def _complement(spans, start: int, end: int) -> list[tuple[int, int]]:
    out, pos = [], start
    for a, b in sorted(spans):
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < end:
        out.append((pos, end))
    return out


def test_oracle_episodes_drop_those_over_budget(tmp_path, tokenizer, caplog) -> None:
    import logging

    small = config(tmp_path, num_episodes=6, max_completion_tokens=150)
    with caplog.at_level(logging.WARNING, logger="thinkgym.training.sft"):
        kept = oracle_episodes(small, tokenizer, progress=False)
    assert all(len(e.completion_ids) <= 150 for e in kept)
    assert "over budget" in caplog.text
    with pytest.raises(ConfigError, match="no oracle episode"):
        oracle_episodes(config(tmp_path, max_completion_tokens=5), tokenizer, progress=False)


def test_oracle_episodes_take_another_demonstrator(tmp_path, tokenizer, tiny_path) -> None:
    class Guesser:  # answers at once, never calls a tool
        resets = 0

        def reset(self) -> None:
            Guesser.resets += 1

        def act(self, observation: str) -> str:
            return '<think>I will guess.</think>\n<answer>{"answer": "42"}</answer>'

    eps = oracle_episodes(config(tmp_path), tokenizer, progress=False, policy=Guesser())
    oracle = oracle_episodes(config(tmp_path), tokenizer, progress=False)
    assert Guesser.resets == len(eps) == 4
    assert all(e.turns == 1 and "I will guess." in e.text for e in eps)
    assert [e.completion_ids for e in eps] != [e.completion_ids for e in oracle]
    trainer = build_sft_trainer(config(tmp_path), tiny_path, progress=False, policy=Guesser())
    assert sorted(trainer.train_dataset["input_ids"]) == sorted(
        e.prompt_ids + e.completion_ids for e in eps)
    with pytest.raises(ConfigError, match="reset\\(\\) and act") as err:
        oracle_episodes(config(tmp_path), tokenizer, progress=False, policy="OracleAgent")
    assert "str" in str(err.value)


def test_dataset_masks_prompt_and_env_tokens(tmp_path, tokenizer) -> None:
    eps = oracle_episodes(config(tmp_path), tokenizer, progress=False)
    data = build_sft_dataset(eps)
    for row, ep in zip(data, eps, strict=True):
        p = len(ep.prompt_ids)
        assert row["input_ids"] == ep.prompt_ids + ep.completion_ids
        assert row["completion_mask"] == [0] * p + [1] * len(ep.completion_ids)
        assert row["assistant_masks"] == [0] * p + ep.env_mask


# -- training --------------------------------------------------------------------------------
def test_env_and_prompt_tokens_get_zero_gradient(tmp_path, tiny_path) -> None:
    import torch

    trainer = build_sft_trainer(config(tmp_path), tiny_path, progress=False)
    eps = oracle_episodes(config(tmp_path), trainer.processing_class, progress=False)
    by_ids = {tuple(e.prompt_ids + e.completion_ids): e for e in eps}
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    model.train()
    seen: dict[str, Any] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        seen["hidden"] = output

    # The final norm's output at position t feeds only the logits that predict token t + 1
    # (no attention after it), so its gradient there is zero iff that token has no loss.
    handle = model.model.norm.register_forward_hook(keep)
    try:
        loss = trainer.compute_loss(model, batch)  # TRL's own loss on TRL's own batch
        loss.backward()
    finally:
        handle.remove()
    grad = seen["hidden"].grad  # (B, T, D); position t predicts token t + 1
    checked_env = checked_agent = 0
    for b in range(batch["input_ids"].shape[0]):
        n = int(batch["attention_mask"][b].sum())
        ids = tuple(batch["input_ids"][b, :n].tolist())
        ep = by_ids[ids]
        mask = [0] * len(ep.prompt_ids) + ep.env_mask  # 1: a token the policy must learn
        labels = batch["labels"][b, :n].tolist()
        assert [lab != -100 for lab in labels] == [bool(m) for m in mask]
        for t in range(1, n):
            g = grad[b, t - 1]
            if mask[t]:
                assert torch.count_nonzero(g) > 0
                checked_agent += 1
            else:
                assert torch.count_nonzero(g) == 0  # prompt, env text, prefill, eos
                checked_env += 1
        assert torch.count_nonzero(grad[b, n - 1:]) == 0  # last token and padding
    assert checked_env > 0
    assert checked_agent > 0


def test_train_sft_saves_a_model_grpo_can_load(tmp_path, tiny_path) -> None:
    import torch

    from thinkgym.agents.llm import load_model_and_tokenizer

    cfg = config(tmp_path)
    out = train_sft(cfg, tiny_path, progress=False)
    before, _ = load_model_and_tokenizer(tiny_path)
    after, tok = load_model_and_tokenizer(str(out))
    moved = [n for n, p in after.named_parameters()
             if not torch.equal(p, dict(before.named_parameters())[n])]
    assert moved
    assert tok.pad_token_id == tok.eos_token_id
    assert (out / "thinkgym_tiny.json").is_file()  # lineage marker for the CLI's defaults
    assert json.loads((out / "thinkgym_sft.json").read_text())["env_id"] == ENV
    assert (out / "curves.png").stat().st_size > 0


@pytest.mark.slow
def test_searchqa_oracle_episode_renders(tokenizer) -> None:
    from thinkgym.training.grpo import GRPOTrainConfig, make_env

    cfg = GRPOTrainConfig(env_id="SearchQA-v0", env_kwargs={"split": "easy"})
    env = make_env(cfg)
    ep = render_oracle_episode(env, oracle_policy("SearchQA-v0", env), tokenizer, seed=0)
    assert ep.decode_matches
    assert ep.reward_components["exact_match"] == 1.0
    assert ep.text.startswith("<think>\n")
    assert "<information>" in tokenizer.decode([i for i, m in zip(
        ep.completion_ids, ep.env_mask, strict=True) if not m])
