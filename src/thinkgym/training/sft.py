"""Cold start: SFT on scripted-oracle episodes, rendered exactly as the GRPO rollout renders them.

The R1 recipe at small scale: before GRPO, the policy imitates a scripted oracle
so that its first rollouts follow the protocol often enough for group rewards to
vary. Each oracle episode is rendered exactly as :mod:`thinkgym.training.rollout`
renders a sampled one — the chat-templated prompt, then one assistant sequence
holding the template's prefill (R1: ``<think>\\n``), the oracle's turns and the
env's observations, closed by eos — so SFT trains on the very token layout GRPO
will later sample and score.

Loss masking (TRL's stock ``SFTTrainer`` on a pre-tokenised dataset):

* ``completion_mask`` is 0 on the prompt (``completion_only_loss=True``);
* ``assistant_masks`` is the rollout's ``env_mask``: 0 on env-inserted text
  (retrieved passages, tool responses, corrections), on the forced prefill and on
  the closing eos when the last action ended in a turn-closing tag (the sampler stops
  there, so that eos is forced); 1 on the oracle's own tokens, and on the closing eos
  of a reply that ends without such a tag (Reasoning-v0): the model must learn to
  stop there itself, or it rambles past its answer.

TRL turns both into ``labels = -100``, so env tokens get no loss and no gradient.
The first action of an oracle that opens with ``<think>`` but not with the
template's exact prefill is rewritten to start with it (``<think>I`` becomes
``<think>\\nI``) and the env is stepped with the rewritten text, so the
transcript the env scored is the one the model learns.

CPU-safe defaults: ``bf16 = fp16 = False`` and no gradient checkpointing (TRL's
``SFTConfig`` turns both on by default).

    >>> SFTTrainConfig(env_id="Reasoning-v0").per_device_batch_size
    8
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from thinkgym.errors import ConfigError, check_int_fields

__all__ = ["ORACLES", "SFTTrainConfig", "build_sft_dataset", "build_sft_trainer",
           "cpu_only", "oracle_episodes", "oracle_policy", "quiet_trainer",
           "render_oracle_episode", "sft_args", "train_sft"]

logger = logging.getLogger(__name__)

ORACLES: dict[str, str] = {
    "SearchQA-v0": "thinkgym.agents.search_qa:OracleAgent",
    "Reasoning-v0": "thinkgym.agents.reasoning:OracleReasoningPolicy",
    "ToolCall-v0": "thinkgym.agents.tool_call:OracleToolCallPolicy",
}
"""Scripted oracle per env id (``module:Class``); classes taking an ``env`` argument get it."""

_POSITIVE_INTS = ("num_episodes", "per_device_batch_size", "max_prompt_tokens",
                  "max_completion_tokens", "logging_steps")


@dataclass(frozen=True)
class SFTTrainConfig:
    """A cold-start SFT run: oracle episodes on one text env, then TRL's ``SFTTrainer``."""

    env_id: str = "SearchQA-v0"
    """Registered thinkgym text env with an entry in :data:`ORACLES`."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Arguments of ``gym.make`` (e.g. ``{"split": "easy"}``)."""
    num_episodes: int = 256
    """Oracle episodes to render: env seeds ``first_seed .. first_seed + num_episodes - 1``."""
    first_seed: int = 0
    """First env seed of the oracle episodes."""
    min_reward: float | None = None
    """Keep only episodes whose return is at least this (None: keep all)."""
    max_steps: int = 0
    """Optimiser steps (0: train for ``num_train_epochs`` instead)."""
    num_train_epochs: float = 1.0
    """Passes over the episodes when ``max_steps`` is 0."""
    learning_rate: float = 1e-5
    """AdamW learning rate (a model trained from scratch, like the tiny one, wants ~1e-3)."""
    lr_scheduler_type: str = "cosine"
    """transformers scheduler name (``cosine``, ``linear``, ``constant``, ...). On SearchQA-v0
    the tiny model's SFT loss plateaued at 0.41 with a constant rate (800-1,000 steps); with
    cosine decay it was 0.21 after 1,200 steps and 0.06-0.08 after 2,000
    (``benchmarks/grpo_learning.py``; no 2,000-step constant-rate run was made)."""
    warmup_ratio: float = 0.03
    """Fraction of the steps spent warming the learning rate up."""
    per_device_batch_size: int = 8
    """Episodes per optimiser step."""
    max_prompt_tokens: int = 2048
    """Prompt budget; longer prompts are cut from the left of the user text, with a warning."""
    max_completion_tokens: int = 1024
    """Budget of the whole assistant sequence; longer oracle episodes are dropped."""
    system_prompt: str | None = None
    """Optional system message (must match the one GRPO will use; R1-Distill: None)."""
    rope_scaling: Mapping[str, Any] | None = None
    """Passed to the model config when loading."""
    seed: int = 0
    """Seed of TRL (data order, initialisation of anything new)."""
    output_dir: str = "runs/sft"
    """Where the fine-tuned model and tokenizer are saved (``save_pretrained``)."""
    logging_steps: int = 10
    """Log every this many steps."""
    save_steps: int = 0
    """Checkpoint every this many steps (0: only the final model)."""
    bf16: bool = False
    """bf16 autocast. On CPU it depends on the model: ~5x slower for the tiny model (TRL's
    default of True is why this is off), ~3x faster for SmolLM2-135M on a CPU with AMX
    units (forward+backward of 8 x 220 tokens: 7.2 s vs 22.4 s fp32, one thread)."""
    fp16: bool = False
    """fp16 autocast (GPU only)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (TRL's SFT default is True; costs time)."""
    report_to: str = "none"
    """TRL/transformers logging integrations (``"none"``, ``"tensorboard"``, ...)."""

    def __post_init__(self) -> None:
        check_int_fields(self, {**dict.fromkeys(_POSITIVE_INTS, 1), **dict.fromkeys(
            ("max_steps", "save_steps", "first_seed", "seed"), 0)})
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ConfigError("must be > 0", field="learning_rate", got=self.learning_rate,
                              fix="pass e.g. learning_rate=1e-5 (1e-3 for the tiny model)")
        if not (isinstance(self.num_train_epochs, int | float) and self.num_train_epochs > 0):
            raise ConfigError("must be > 0", field="num_train_epochs", got=self.num_train_epochs,
                              fix="pass e.g. num_train_epochs=1.0")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("must lie in [0, 1)", field="warmup_ratio", got=self.warmup_ratio,
                              fix="pass e.g. warmup_ratio=0.0")
        if self.env_id not in ORACLES:
            raise ConfigError("no scripted oracle for this env", field="env_id", got=self.env_id,
                              fix=f"use one of {sorted(ORACLES)} or add it to ORACLES")
        object.__setattr__(self, "env_kwargs", MappingProxyType(dict(self.env_kwargs)))


def cpu_only(bf16: bool) -> bool:
    """``use_cpu`` for the trainer args: transformers refuses bf16 without a GPU unless told
    the run is on CPU on purpose."""
    import torch

    return bool(bf16) and not torch.cuda.is_available()


def sft_args(config: SFTTrainConfig) -> Any:
    """TRL's ``SFTConfig`` for ``config`` (CPU-safe precision, no checkpointing, no packing)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=config.output_dir, max_steps=config.max_steps or -1,
        num_train_epochs=config.num_train_epochs, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio or 0,  # a float in (0, 1) is a ratio of the steps
        per_device_train_batch_size=config.per_device_batch_size, gradient_accumulation_steps=1,
        max_length=config.max_prompt_tokens + config.max_completion_tokens,
        completion_only_loss=True, assistant_only_loss=False, packing=False,
        padding_free=False, bf16=config.bf16, fp16=config.fp16, use_cpu=cpu_only(config.bf16),
        activation_checkpointing=config.gradient_checkpointing, logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        seed=config.seed, data_seed=config.seed, report_to=config.report_to,
        dataloader_num_workers=0, dataloader_pin_memory=False, dataset_num_proc=None)


def oracle_policy(env_id: str, env: Any) -> Any:
    """A fresh scripted oracle for ``env`` (see :data:`ORACLES`)."""
    import inspect

    target = ORACLES.get(env_id)
    if target is None:
        raise ConfigError("no scripted oracle for this env", field="env_id", got=env_id,
                          fix=f"use one of {sorted(ORACLES)} or add it to ORACLES")
    module, name = target.split(":")
    cls: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return cls(env) if "env" in inspect.signature(cls).parameters else cls()


def _with_prefill(action: str, prefill: str) -> str:
    """``action`` starting with the template's forced ``prefill`` (what the rollout sends)."""
    if not prefill or action.startswith(prefill):
        return action
    opener = prefill.strip()
    if opener and action.startswith(opener):
        return prefill + action[len(opener):].lstrip()
    return prefill + action


def render_oracle_episode(env: Any, policy: Any, tokenizer: Any, *, seed: int,
                          max_prompt_tokens: int = 2048, max_completion_tokens: int = 1024,
                          system_prompt: str | None = None) -> Any:
    """Play one episode with a scripted ``policy`` and render it as a rollout ``Episode``.

    Returns a :class:`thinkgym.training.rollout.Episode` (logprobs 0.0) whose
    ``completion_ids``/``env_mask`` have the layout :func:`~thinkgym.training.rollout.play_episode`
    produces; ``context_truncated`` is set when it does not fit ``max_completion_tokens``.
    """
    from thinkgym.agents.llm import STOP_STRINGS, encode_prompt
    from thinkgym.rewards.masking import tokenizer_offsets
    from thinkgym.training.rollout import Episode, episode_components

    prompt, _ = env.reset(seed=seed)
    policy.reset()
    enc = encode_prompt(tokenizer, prompt, system_prompt=system_prompt,
                        max_tokens=max_prompt_tokens)
    n = len(enc.prefill_ids)
    ep = Episode(prompt_ids=list(enc.ids), completion_ids=list(enc.prefill_ids),
                 logprobs=[0.0] * n, env_mask=[0] * n, reward=0.0, reward_components={},
                 text="", env_spans=[], seed=seed, prompt_truncated_tokens=enc.truncated_tokens)
    seen, obs, rewards, done = enc.prefill_text, prompt, [], False
    while not done:
        action = policy.act(obs)
        if ep.turns == 0:
            action = _with_prefill(action, enc.prefill_text)
        agent = action[len(enc.prefill_text):] if ep.turns == 0 else action
        ids = list(tokenizer.encode(agent, add_special_tokens=False)) if agent else []
        ep.completion_ids += ids
        ep.env_mask += [1] * len(ids)
        obs, reward, ep.terminated, ep.truncated, info = env.step(action)
        rewards.append(float(reward))
        ep.infos.append(info)
        ep.turns += 1
        env_ids = tokenizer_offsets(obs, tokenizer)[0] if obs else []
        ep.completion_ids += env_ids
        ep.env_mask += [0] * len(env_ids)
        seen += agent + obs
        done = ep.terminated or ep.truncated
    eos = tokenizer.eos_token_id
    if eos is not None:
        # A last action that ends in a turn-closing tag (</answer>, ...) is cut there by the
        # sampler, so the closing eos is forced text. One that does not (Reasoning-v0's
        # single reply) ends only when the model writes eos itself: train it to.
        ended_by_agent = ep.terminated and not action.rstrip().endswith(STOP_STRINGS)
        ep.completion_ids.append(eos)
        ep.env_mask.append(1 if ended_by_agent else 0)
    ep.logprobs = [0.0] * len(ep.completion_ids)
    ep.context_truncated = len(ep.completion_ids) > max_completion_tokens
    ep.reward = math.fsum(rewards)
    ep.reward_components = episode_components(ep.infos)
    ep.env_spans = [(int(a), int(b)) for a, b in ep.infos[-1].get("env_spans", ())]
    ep.text = tokenizer.decode(ep.completion_ids, skip_special_tokens=True,
                               clean_up_tokenization_spaces=False)
    ep.decode_matches = ep.text == seen
    return ep


def oracle_episodes(config: SFTTrainConfig, tokenizer: Any, env: Any = None,
                    seeds: Sequence[int] | None = None, progress: bool = True,
                    policy: Any = None) -> list[Any]:
    """Rendered oracle episodes for ``seeds`` (default: the config's range), filtered.

    ``policy`` is the demonstrator (any object with ``reset()`` and ``act(observation)``);
    by default the env's scripted oracle from :data:`ORACLES`. Dropped, with a warning
    giving the counts: episodes over the completion budget, episodes whose tokens do
    not decode back to the transcript, and (with ``min_reward``) low-return ones.
    """
    from tqdm.auto import tqdm

    from thinkgym.training.grpo import make_env

    env = env if env is not None else make_env(config)  # type: ignore[arg-type]
    if policy is None:
        policy = oracle_policy(config.env_id, env)
    elif not (callable(getattr(policy, "act", None)) and callable(getattr(policy, "reset", None))):
        raise ConfigError("the demonstrator needs reset() and act(observation)", field="policy",
                          got=type(policy).__name__,
                          fix="pass a thinkgym.agents Policy, or None for the env's oracle")
    if seeds is None:
        seeds = range(config.first_seed, config.first_seed + config.num_episodes)
    kept, dropped = [], {"over budget": 0, "decode mismatch": 0, "low reward": 0}
    for seed in tqdm(list(seeds), desc="oracle episodes", disable=not progress, leave=False):
        ep = render_oracle_episode(env, policy, tokenizer, seed=seed,
                                   max_prompt_tokens=config.max_prompt_tokens,
                                   max_completion_tokens=config.max_completion_tokens,
                                   system_prompt=config.system_prompt)
        if ep.context_truncated:
            dropped["over budget"] += 1
        elif not ep.decode_matches:
            dropped["decode mismatch"] += 1
        elif config.min_reward is not None and ep.reward < config.min_reward:
            dropped["low reward"] += 1
        else:
            kept.append(ep)
    if any(dropped.values()):
        logger.warning("oracle episodes dropped: %s (kept %d)", dropped, len(kept))
    if not kept:
        raise ConfigError("no oracle episode left to train on", field="num_episodes",
                          got=dropped, fix="raise max_completion_tokens, lower min_reward or "
                          "check the oracle on this env")
    return kept


def build_sft_dataset(episodes: Sequence[Any]) -> Any:
    """Pre-tokenised ``Dataset`` with ``input_ids``, ``completion_mask`` and ``assistant_masks``."""
    from datasets import Dataset

    rows: dict[str, list[Any]] = {"input_ids": [], "completion_mask": [], "assistant_masks": []}
    for ep in episodes:
        p, c = len(ep.prompt_ids), len(ep.completion_ids)
        rows["input_ids"].append(list(ep.prompt_ids) + list(ep.completion_ids))
        rows["completion_mask"].append([0] * p + [1] * c)
        rows["assistant_masks"].append([0] * p + list(ep.env_mask))
    return Dataset.from_dict(rows)


def build_sft_trainer(config: SFTTrainConfig, model_path: str | Path,
                      episodes: Sequence[Any] | None = None, progress: bool = True,
                      policy: Any = None) -> Any:
    """A stock ``trl.SFTTrainer`` on oracle episodes of ``config.env_id`` for the local model.

    A callback draws the loss curve into ``output_dir/curves.png``.
    """
    from trl import SFTTrainer

    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.training.curves import make_curves_callback

    model, tokenizer = load_model_and_tokenizer(str(model_path), rope_scaling=config.rope_scaling)
    if episodes is None:
        episodes = oracle_episodes(config, tokenizer, progress=progress, policy=policy)
    dataset = build_sft_dataset(episodes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padding.free.*")
        return SFTTrainer(model=model, args=sft_args(config), train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[make_curves_callback(
                              Path(config.output_dir) / "curves.png",
                              title=f"SFT on {config.env_id} oracle episodes")])


def train_sft(config: SFTTrainConfig, model_path: str | Path,
              episodes: Sequence[Any] | None = None, progress: bool = True,
              policy: Any = None) -> Path:
    """Cold-start SFT; saves model + tokenizer into ``config.output_dir`` and returns it.

    The directory is a ``save_pretrained`` model, so it is what
    :func:`thinkgym.training.grpo.build_trainer` (``--model``) takes next.
    """
    from thinkgym.training.grpo import copy_lineage

    trainer = build_sft_trainer(config, model_path, episodes, progress=progress, policy=policy)
    if not progress:
        quiet_trainer(trainer)
    trainer.train()
    out = Path(config.output_dir)
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    trainer.state.save_to_json(str(out / "trainer_state.json"))  # log history, for curves
    (out / "thinkgym_sft.json").write_text(_config_json(config))
    copy_lineage(model_path, out)
    return out


def quiet_trainer(trainer: Any) -> None:
    """Drop the trainer's progress bar and its printed log dicts."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.args.disable_tqdm = True
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)


def _config_json(config: SFTTrainConfig) -> str:
    import json

    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    return json.dumps(data, indent=1, default=str)
