"""Multi-turn GRPO on thinkgym's text envs: a thin layer over TRL's stock ``GRPOTrainer``.

TRL's built-in tool loop cannot drive R1-Distill (its chat template does not
support tool calls and strips earlier ``<think>`` blocks), so the trainer gets a
``rollout_func`` (:class:`EnvRollout`) that plays each episode as one assistant
sequence (:mod:`thinkgym.training.rollout`) and returns ``env_mask`` so that
env-inserted tokens get no loss. Everything else is TRL's: advantages, clipping,
optimiser, logging.

* **Data** — one row per env seed: ``{"prompt": <the env's prompt>, "env_seed": s}``.
  TRL hands ``rollout_func`` only the prompts (each repeated ``num_generations``
  times, consecutively), so the rollout maps a prompt back to its seed; seeds whose
  prompt repeats an earlier one are dropped (with a warning). All G episodes of a
  group reset the env with the same seed.
* **Rewards** — the env's own reward ledger, one TRL reward function per
  component of its :class:`~thinkgym.rewards.Composer` (through
  :func:`~thinkgym.rewards.to_trl_reward_funcs`), with the composer's weights as
  ``reward_weights``: TRL logs ``rewards/<component>/mean`` and its weighted sum
  is the episode return. Weight-0 components (detectors, metrics) are logged only.
  An env without a composer gives one function, ``env_reward``.
* **Detector metrics** — ``metrics`` names library components (by default the
  reward-hacking detectors) scored on each episode's transcript, env spans
  masked, at weight 0: TRL logs their rates as ``rewards/<name>/mean``.
* **Zero-variance groups** — optional (``filter_zero_variance``): a group whose
  episodes all scored the same gets ``env_mask = 0`` everywhere, so it adds
  neither loss nor tokens to the normaliser.
* **CPU-safe defaults** — ``bf16 = fp16 = False`` (TRL turns bf16 on by default,
  about 5x slower on CPU), no gradient checkpointing, no vLLM.

    >>> GRPOTrainConfig(env_id="Reasoning-v0", num_generations=2).per_device_batch_size
    4
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from thinkgym.errors import ConfigError, EnvStateError, check_int_fields
from thinkgym.protocols import RewardInput

__all__ = ["DEFAULT_METRICS", "EnvRollout", "GRPOTrainConfig", "build_dataset", "build_trainer",
           "copy_lineage", "env_reward_funcs", "make_env", "train_grpo",
           "transcript_reward_input", "trl_args"]

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("answer_guessing", "format_gaming", "length_gaming", "answer_collapse")
"""Reward-hacking detectors logged (weight 0) during GRPO."""

_ROLLOUT_COLUMNS = frozenset({"transcript", "env_spans", "episode_components", "env_reward"})

_POSITIVE_INTS = ("num_prompts", "num_generations", "prompts_per_step", "max_steps",
                  "max_new_tokens", "max_prompt_tokens", "max_completion_tokens", "logging_steps")


@dataclass(frozen=True)
class GRPOTrainConfig:
    """A GRPO run on one text env (fields map onto TRL's ``GRPOConfig`` where they overlap)."""

    env_id: str = "SearchQA-v0"
    """Registered thinkgym text env."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Arguments of ``gym.make`` (e.g. ``{"split": "easy"}``)."""
    num_prompts: int = 64
    """Dataset rows: env seeds ``first_seed .. first_seed + num_prompts - 1``."""
    first_seed: int = 0
    """First env seed of the dataset."""
    num_generations: int = 4
    """G: episodes per prompt, all from the same env seed."""
    prompts_per_step: int = 2
    """Prompt groups per optimiser step (batch = prompts_per_step * G episodes)."""
    max_steps: int = 100
    """Optimiser steps."""
    learning_rate: float = 1e-6
    """AdamW learning rate."""
    beta: float = 0.0
    """KL coefficient against the reference model (0: no reference model is kept)."""
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = "dapo"
    """TRL loss normalisation."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Advantage scaling by the reward std of the group, the batch, or not at all."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (TRL scores logprobs at the same temperature)."""
    top_p: float = 1.0
    """Nucleus mass of the rollouts."""
    max_new_tokens: int = 256
    """Tokens per agent turn."""
    max_prompt_tokens: int = 2048
    """Prompt budget; longer prompts are cut from the left of the user text, with a warning."""
    max_completion_tokens: int = 1024
    """Budget of the whole multi-turn assistant sequence (agent + env tokens)."""
    filter_zero_variance: bool = False
    """Mask out groups whose episodes all got the same reward."""
    metrics: tuple[str, ...] = DEFAULT_METRICS
    """Registered reward components logged at weight 0 from the transcripts (names the env
    already scores are skipped)."""
    system_prompt: str | None = None
    """Optional system message (R1-Distill: keep None)."""
    rope_scaling: Mapping[str, Any] | None = None
    """Passed to the model config when loading."""
    seed: int = 0
    """Seed of TRL (data order) and of the rollouts' sampling."""
    output_dir: str = "runs/grpo"
    """TRL output directory (logs, checkpoints)."""
    logging_steps: int = 1
    """Log every this many steps."""
    save_steps: int = 0
    """Checkpoint (model, optimizer, RNG) every this many steps into ``output_dir/checkpoint-N``
    (0: none); :func:`train_grpo` resumes from one with ``resume_from_checkpoint``."""
    save_total_limit: int | None = None
    """Keep at most this many checkpoints (None: all)."""
    curves_every: int = 10
    """Redraw ``output_dir/curves.png`` (reward, length, detector rates) every this many logs
    (0: no curves)."""
    bf16: bool = False
    """bf16 autocast. On CPU it depends on the model: ~5x slower for the tiny model (TRL's
    default of True is why this is off), ~3x faster for SmolLM2-135M on a CPU with AMX
    units (forward+backward of 8 x 220 tokens: 7.2 s vs 22.4 s fp32, one thread)."""
    fp16: bool = False
    """fp16 autocast (GPU only)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (saves memory, costs time)."""
    batched_rollout: bool = True
    """Play a group's G episodes in lockstep, one batched forward pass per token
    (:func:`~thinkgym.training.rollout.play_batch`); False plays them one after another."""
    use_vllm: bool = False
    """vLLM generation; not supported by the env rollout yet."""
    num_threads: int | None = None
    """Torch threads while generating (None: 1 for models under 50M parameters)."""
    report_to: str = "none"
    """TRL/transformers logging integrations (``"none"``, ``"tensorboard"``, ...)."""

    def __post_init__(self) -> None:
        check_int_fields(self, dict.fromkeys(_POSITIVE_INTS, 1))
        if self.num_generations < 2:
            raise ConfigError("GRPO needs at least 2 episodes per group", field="num_generations",
                              got=self.num_generations, fix="pass num_generations=2 or more")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ConfigError("must be > 0 (TRL divides logits by it)", field="temperature",
                              got=self.temperature, fix="pass e.g. temperature=1.0")
        if not 0 < self.top_p <= 1:
            raise ConfigError("must lie in (0, 1]", field="top_p", got=self.top_p,
                              fix="pass e.g. top_p=1.0")
        if self.max_new_tokens > self.max_completion_tokens:
            raise ConfigError("max_new_tokens must be <= max_completion_tokens",
                              field="max_new_tokens",
                              got=(self.max_new_tokens, self.max_completion_tokens),
                              fix="lower max_new_tokens or raise max_completion_tokens")
        if self.use_vllm:
            raise ConfigError("vLLM generation is not supported by the env rollout yet",
                              field="use_vllm", got=True, fix="pass use_vllm=False")
        if self.loss_type not in ("dapo", "grpo", "dr_grpo", "bnpo"):
            raise ConfigError("unknown loss_type", field="loss_type", got=self.loss_type,
                              fix="use 'dapo', 'grpo', 'dr_grpo' or 'bnpo'")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ConfigError("unknown scale_rewards", field="scale_rewards",
                              got=self.scale_rewards, fix="use 'group', 'batch' or 'none'")
        if min(self.save_steps, self.first_seed, self.seed, self.curves_every) < 0:
            raise ConfigError("save_steps, first_seed, seed and curves_every must be >= 0",
                              field="save_steps", fix="pass non-negative values",
                              got=(self.save_steps, self.first_seed, self.seed, self.curves_every))
        self._check_checkpoints()
        object.__setattr__(self, "env_kwargs", MappingProxyType(dict(self.env_kwargs)))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        from thinkgym.rewards import REWARDS

        unknown = [m for m in self.metrics if m not in REWARDS]
        if unknown:
            raise ConfigError("unknown reward component(s)", field="metrics", got=unknown,
                              fix=f"use registered names, e.g. {list(DEFAULT_METRICS)}")

    def _check_checkpoints(self) -> None:
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError("must be None or >= 1", field="save_total_limit",
                              got=self.save_total_limit, fix="pass e.g. save_total_limit=2")

    @property
    def per_device_batch_size(self) -> int:
        """Episodes per optimiser step (TRL's ``per_device_train_batch_size``)."""
        return self.prompts_per_step * self.num_generations


def trl_args(config: GRPOTrainConfig, reward_weights: Sequence[float] | None = None) -> Any:
    """TRL's ``GRPOConfig`` for ``config`` (CPU-safe precision, no checkpointing, no vLLM)."""
    from trl import GRPOConfig

    from thinkgym.training.sft import cpu_only

    return GRPOConfig(
        output_dir=config.output_dir, max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=1, num_generations=config.num_generations,
        max_completion_length=config.max_completion_tokens, temperature=config.temperature,
        top_p=config.top_p, beta=config.beta, loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        reward_weights=list(reward_weights) if reward_weights is not None else None,
        bf16=config.bf16, fp16=config.fp16, use_cpu=cpu_only(config.bf16),
        activation_checkpointing=config.gradient_checkpointing,
        use_vllm=False, logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        seed=config.seed, data_seed=config.seed, report_to=config.report_to,
        remove_unused_columns=False, dataloader_num_workers=0, dataloader_pin_memory=False,
        disable_dropout=True)


def make_env(config: GRPOTrainConfig) -> Any:
    """``gym.make(config.env_id, **config.env_kwargs)``, checked to be a thinkgym text env."""
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.envs.common.text_env import TextEnv

    if config.env_id not in gym.registry:
        raise ConfigError("env is not registered", field="env_id", got=config.env_id,
                          fix="use a registered text env, e.g. SearchQA-v0 or Reasoning-v0")
    env = gym.make(config.env_id, **dict(config.env_kwargs))
    if not isinstance(env.unwrapped, TextEnv):
        raise ConfigError("GRPO needs a text env", field="env_id", got=config.env_id,
                          fix="use SearchQA-v0, ToolCall-v0 or Reasoning-v0")
    return env


def build_dataset(config: GRPOTrainConfig, env: Any = None) -> Any:
    """``datasets.Dataset`` of ``{"prompt", "env_seed"}``, one row per distinct env prompt."""
    from datasets import Dataset

    env = env if env is not None else make_env(config)
    rows: dict[str, int] = {}
    for seed in range(config.first_seed, config.first_seed + config.num_prompts):
        prompt, _ = env.reset(seed=seed)
        rows.setdefault(prompt, seed)
    if len(rows) < config.num_prompts:
        logger.warning("%d of %d env seeds repeat an earlier prompt and were dropped",
                       config.num_prompts - len(rows), config.num_prompts)
    return Dataset.from_dict({"prompt": list(rows), "env_seed": list(rows.values())})


class _EpisodeComponent:
    """Reads one component's episode value, computed by the env during the rollout."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, inp: RewardInput) -> float | None:
        values = inp.metadata.get("episode_components")
        if values is None:
            raise EnvStateError("no episode_components column: these reward functions read "
                                "what EnvRollout returns", fix="train with EnvRollout")
        return values.get(self.name)


def transcript_reward_input(prompt: Any, completion: Any, completion_ids: Sequence[int] | None,
                            row: Mapping[str, Any]) -> RewardInput:
    """A RewardInput from a rollout's ``transcript`` and ``env_spans`` columns.

    The transcript is split into assistant messages and env (``tool``) messages, so
    the TRL adapter marks env text as ``env_spans`` and detectors never read it as
    the agent's.
    """
    from thinkgym.rewards import build_reward_input

    text = row.get("transcript", completion if isinstance(completion, str) else "")
    messages, pos = [], 0
    for start, end in sorted(tuple(s) for s in row.get("env_spans") or ()):
        if start > pos:
            messages.append({"role": "assistant", "content": text[pos:start]})
        messages.append({"role": "tool", "content": text[start:end]})
        pos = end
    if pos < len(text) or not messages:
        messages.append({"role": "assistant", "content": text[pos:]})
    rest = {k: v for k, v in row.items() if k not in _ROLLOUT_COLUMNS}
    return build_reward_input(prompt, messages, completion_ids, rest)


def env_reward_funcs(env: Any, metrics: Sequence[str] = ()) -> tuple[list[Any], list[float]]:
    """TRL reward functions and ``reward_weights``: one per env component, then ``metrics``.

    Env components read the episode values the rollout computed (the env's own
    ledger); ``metrics`` are registered components scored on the transcripts at
    weight 0 (skipped when the env already has a component of that name).
    """
    from thinkgym.rewards import to_trl_reward_funcs

    composer = getattr(env.unwrapped, "composer", None)
    if composer is None:
        funcs, weights = to_trl_reward_funcs({_EpisodeComponent("env_reward"): 1.0})
    else:
        funcs, weights = to_trl_reward_funcs({_EpisodeComponent(n): float(composer.weights[n])
                                              for n in composer.names})
    taken = {f.__name__ for f in funcs}
    extra = [m for m in metrics if m not in taken]
    if extra:
        more, _ = to_trl_reward_funcs(extra, build_input=transcript_reward_input)
        funcs, weights = funcs + more, weights + [0.0] * len(more)
    return funcs, weights


class EnvRollout:
    """``rollout_func`` for ``GRPOTrainer``: G episodes per prompt group, with ``env_mask``."""

    def __init__(self, config: GRPOTrainConfig, tokenizer: Any, prompt_seeds: Mapping[str, int],
                 env: Any = None) -> None:
        from thinkgym.agents.llm import LLMPolicyConfig

        self.config = config
        self.tokenizer = tokenizer
        self.prompt_seeds = dict(prompt_seeds)
        self.env = env if env is not None else make_env(config)
        self._envs: list[Any] = [self.env]  # the group's env instances (batched rollout)
        self.policy_config = LLMPolicyConfig(
            model="<trainer>", temperature=config.temperature, top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            max_context_tokens=config.max_prompt_tokens + config.max_completion_tokens,
            system_prompt=config.system_prompt, num_threads=config.num_threads)
        self.calls = 0
        self.last_episodes: list[Any] = []
        self._policy: Any = None

    def _policy_for(self, model: Any) -> Any:
        from thinkgym.agents.llm import LLMPolicy

        if self._policy is None or self._policy.model is not model:
            self._policy = LLMPolicy(model, self.tokenizer, self.policy_config)
        return self._policy

    def _generator(self, step: int, env_seed: int, index: int) -> Any:
        import torch

        s = np.random.default_rng([self.config.seed, step, self.calls, env_seed, index])
        return torch.Generator().manual_seed(int(s.integers(2**62)))

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, list[Any]]:

        model = trainer.accelerator.unwrap_model(trainer.model)
        mode = "train" if model.training else "eval"
        g = trainer.num_generations if mode == "train" else trainer.num_generations_eval
        policy = self._policy_for(model)
        episodes = []
        for start in range(0, len(prompts), g):
            group = prompts[start:start + g]
            episodes += self._play(group, g, policy, trainer.state.global_step)
        self.calls += 1
        filtered = self._filter(episodes, g)
        self._log(trainer, mode, episodes, filtered, g)
        self.last_episodes = episodes
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids for e in episodes],
            "logprobs": [e.logprobs for e in episodes],
            "env_mask": [e.env_mask for e in episodes],
            "episode_components": [e.reward_components for e in episodes],
            "env_reward": [e.reward for e in episodes],
            "transcript": [e.text for e in episodes],
            "env_spans": [e.env_spans for e in episodes],
            "truncated": [e.truncated or e.context_truncated for e in episodes],
        }

    def _play(self, group: Sequence[Any], g: int, policy: Any, step: int) -> list[Any]:
        from thinkgym.training.rollout import clone_env, play_group

        prompt = group[0]
        if len(group) != g or any(p != prompt for p in group):
            raise EnvStateError("rollout_func expects each prompt repeated num_generations "
                                "times in a row", got=len(group),
                                fix="use TRL's RepeatSampler (the GRPOTrainer default)")
        if not isinstance(prompt, str) or prompt not in self.prompt_seeds:
            raise EnvStateError("prompt not from this run's dataset", got=str(prompt)[:80],
                                fix="build the dataset with build_dataset(config)")
        seed = self.prompt_seeds[prompt]
        gens = [self._generator(step, seed, i) for i in range(g)]
        envs = None
        if self.config.batched_rollout:
            while len(self._envs) < g:
                self._envs.append(clone_env(self.env))
            envs = self._envs[:g]
        episodes = play_group(self.env, policy, seed=seed, n=g, generators=gens, envs=envs,
                              max_prompt_tokens=self.config.max_prompt_tokens,
                              max_completion_tokens=self.config.max_completion_tokens)
        again, _ = self.env.reset(seed=seed)
        if again != prompt:
            raise EnvStateError("the env's prompt for this seed changed", got=seed,
                                fix="draw all episode randomness from self.np_random")
        return episodes

    def _filter(self, episodes: list[Any], g: int) -> int:
        if not self.config.filter_zero_variance:
            return 0
        n = 0
        for start in range(0, len(episodes), g):
            group = episodes[start:start + g]
            rewards = [e.reward for e in group]
            if max(rewards) - min(rewards) <= 1e-9:
                n += 1
                for e in group:
                    e.env_mask = [0] * len(e.env_mask)
        return n

    @staticmethod
    def _log(trainer: Any, mode: str, episodes: list[Any], filtered: int, g: int) -> None:
        from thinkgym.training.evaluate import never_parsed

        metrics = getattr(trainer, "_metrics", None)
        if metrics is None:
            return
        n = len(episodes)
        m = metrics[mode]
        m["rollout/turns"].append(sum(e.turns for e in episodes) / n)
        m["rollout/env_reward"].append(math.fsum(e.reward for e in episodes) / n)
        m["rollout/context_truncated"].append(sum(e.context_truncated for e in episodes) / n)
        m["rollout/decode_mismatch"].append(sum(not e.decode_matches for e in episodes) / n)
        m["rollout/zero_variance_filtered"].append(filtered / max(1, n // g))
        groups = [episodes[i:i + g] for i in range(0, n, g)]
        m["rollout/zero_variance_groups"].append(
            sum(max(e.reward for e in grp) - min(e.reward for e in grp) <= 1e-9
                for grp in groups) / max(1, len(groups)))
        failures = sum(never_parsed(e) for e in episodes)
        m["rollout/format_failures"].append(failures / n)
        if failures == n:  # every reward here is the no-action floor: say so, never silently
            logger.warning("step %d: none of the %d episodes produced a parseable action (all "
                           "rewards are format failures); see rollout/format_failures",
                           trainer.state.global_step, n)


def build_trainer(config: GRPOTrainConfig, model_path: str, callbacks: Sequence[Any] = (),
                  peft: Callable[[Any, Any], Any] | None = None) -> Any:
    """A stock ``trl.GRPOTrainer`` on ``config.env_id`` for the local model at ``model_path``.

    With ``curves_every > 0`` a callback redraws ``output_dir/curves.png`` from the
    trainer's log history (:mod:`thinkgym.training.curves`). ``peft``, if given, is
    called with the loaded model and tokenizer and returns the ``peft_config`` TRL
    wraps the model with (see :func:`thinkgym.training.scaleout.build_lora_trainer`).
    """
    from trl import GRPOTrainer

    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.training.curves import make_curves_callback

    model, tokenizer = load_model_and_tokenizer(model_path, rope_scaling=config.rope_scaling)
    env = make_env(config)
    dataset = build_dataset(config, env)
    funcs, weights = env_reward_funcs(env, config.metrics)
    rollout = EnvRollout(config, tokenizer, dict(zip(dataset["prompt"], dataset["env_seed"],
                                                     strict=True)), env)
    callbacks = list(callbacks)
    if config.curves_every:
        weighted = [f.__name__ for f, w in zip(funcs, weights, strict=True) if w]
        callbacks.append(make_curves_callback(
            Path(config.output_dir) / "curves.png", detectors=config.metrics,
            components=weighted, every=config.curves_every, title=f"GRPO on {config.env_id}"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*rollout_func.*experimental")
        return GRPOTrainer(model=model, reward_funcs=funcs, args=trl_args(config, weights),
                           train_dataset=dataset, processing_class=tokenizer,
                           rollout_func=rollout, callbacks=callbacks or None,
                           peft_config=None if peft is None else peft(model, tokenizer))


def copy_lineage(source: str | Path, target: str | Path) -> None:
    """Copy the tiny model's marker (``thinkgym_tiny.json``) from ``source`` to ``target``.

    The CLI sizes its defaults (learning rate, turn length) for models that
    descend from the tiny one; the marker follows them through SFT and GRPO.
    """
    import shutil

    marker = Path(source) / "thinkgym_tiny.json"
    if marker.is_file() and marker.resolve() != (Path(target) / marker.name).resolve():
        shutil.copy2(marker, Path(target) / marker.name)


def train_grpo(config: GRPOTrainConfig, model_path: str, *, progress: bool = True,
               resume_from_checkpoint: str | bool | None = None,
               callbacks: Sequence[Any] = ()) -> Path:
    """Train, then save the final model + tokenizer into ``config.output_dir``; return it.

    ``resume_from_checkpoint``: a ``checkpoint-N`` directory of an earlier run with
    the same config, or True for the latest one in ``output_dir``.
    """
    from thinkgym.training.sft import quiet_trainer

    trainer = build_trainer(config, model_path, callbacks)
    if not progress:
        quiet_trainer(trainer)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    out = Path(config.output_dir)
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    trainer.state.save_to_json(str(out / "trainer_state.json"))  # log history, for curves
    copy_lineage(model_path, out)
    return out
