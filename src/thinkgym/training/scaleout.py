"""Scale-out of GRPO to DeepSeek-R1-Distill-Qwen-1.5B: LoRA, vLLM flags, memory arithmetic, launch.

* :class:`LoRASettings` / :func:`lora_config` — a ``peft.LoraConfig`` over every
  linear layer of a Qwen2 block; :func:`build_lora_trainer` hands it to the stock
  ``GRPOTrainer`` through TRL's ``peft_config`` (the single-GPU route for 1.5B).
* :class:`VLLMSettings` / :func:`vllm_grpo_kwargs` — vLLM generation flags as
  TRL ``GRPOConfig`` fields (``use_vllm``, ``vllm_mode``, ...). thinkgym's
  multi-turn :class:`~thinkgym.training.grpo.EnvRollout` still generates with
  transformers, so :class:`~thinkgym.training.grpo.GRPOTrainConfig` refuses
  ``use_vllm``; these kwargs serve a stock single-turn ``GRPOTrainer`` or a
  custom ``rollout_func`` (see docs/training.md).
* :func:`param_count`, :func:`lora_param_count`, :func:`model_state_bytes` — the
  memory arithmetic of docs/training.md (full fine-tuning of 1.5B in fp32 with
  Adam: 16 bytes x 1.78e9 parameters = 28.4 GB before activations).
* Accelerate launch configs live in the repository at ``configs/accelerate/``
  (:data:`ACCELERATE_CONFIGS`); ``python -m thinkgym.training.scaleout`` is the
  script they launch.

    >>> round(model_state_bytes(param_count(R1_DISTILL_1_5B)) / 1e9, 1)
    28.4
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from thinkgym.errors import ConfigError, check_int_fields

__all__ = ["ACCELERATE_CONFIGS", "QWEN2_LINEAR", "R1_DISTILL_1_5B", "LoRASettings", "Qwen2Shape",
           "VLLMSettings", "build_lora_trainer", "lora_config", "lora_param_count", "main",
           "model_state_bytes", "param_count", "protocol_token_indices", "vllm_grpo_kwargs"]

logger = logging.getLogger(__name__)

ACCELERATE_CONFIGS = {
    "ddp": "configs/accelerate/ddp.yaml",
    "zero2": "configs/accelerate/deepspeed_zero2.yaml",
    "zero3": "configs/accelerate/deepspeed_zero3.yaml",
}
"""``accelerate launch --config_file`` files, as paths relative to the repository root."""

QWEN2_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of a Qwen2 decoder block (attention, then MLP)."""


@dataclass(frozen=True)
class Qwen2Shape:
    """The sizes of a Qwen2-architecture causal LM (enough to count its parameters)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tie_embeddings: bool

    @classmethod
    def of(cls, config: Any) -> Qwen2Shape:
        """The shape of a transformers ``Qwen2Config``."""
        return cls(config.hidden_size, config.intermediate_size, config.num_hidden_layers,
                   config.num_attention_heads, config.num_key_value_heads, config.vocab_size,
                   bool(config.tie_word_embeddings))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``(in, out)`` features of each linear layer of one block."""
        kv = self.kv_heads * (self.hidden // self.heads)
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


R1_DISTILL_1_5B = Qwen2Shape(hidden=1536, intermediate=8960, layers=28, heads=12, kv_heads=2,
                             vocab=151936, tie_embeddings=False)
"""deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (its config.json; lm_head not tied)."""


def param_count(shape: Qwen2Shape) -> int:
    """Parameters: embeddings, blocks (q/k/v biases, two RMSNorms), final norm, head."""
    linear = shape.linear_shapes()
    block = sum(i * o for i, o in linear.values())
    block += sum(linear[n][1] for n in ("q_proj", "k_proj", "v_proj"))  # Qwen2's qkv biases
    block += 2 * shape.hidden
    embed = shape.vocab * shape.hidden
    return embed * (1 if shape.tie_embeddings else 2) + shape.layers * block + shape.hidden


def model_state_bytes(num_params: int, *, trainable: int | None = None, num_gpus: int = 1,
                      zero_stage: int = 0, frozen_bytes: int = 2) -> int:
    """Bytes per GPU of weights, gradients and Adam state (activations and buffers excluded).

    Full fine-tuning (``trainable=None``) costs 16 bytes per parameter either way: fp32
    weights, gradients and two Adam moments (4 + 4 + 8), or mixed precision's bf16 weights
    and gradients plus fp32 master weights and moments (2 + 2 + 12). ZeRO-1 shards the 12,
    ZeRO-2 also the gradients, ZeRO-3 also the weights, over ``num_gpus``. With LoRA
    (``trainable`` given) the frozen weights cost ``frozen_bytes`` each (2: bf16) and only
    the adapters pay the 16.
    """
    if num_gpus < 1 or zero_stage not in (0, 1, 2, 3):
        raise ConfigError("num_gpus >= 1 and zero_stage in 0..3", field="zero_stage",
                          got=(num_gpus, zero_stage), fix="pass e.g. num_gpus=4, zero_stage=2")
    if trainable is not None:
        return num_params * frozen_bytes + 16 * trainable
    n = num_gpus
    weights, grads, optim = 2 * num_params, 2 * num_params, 12 * num_params
    if zero_stage == 0:
        return weights + grads + optim
    shard = optim / n + (grads / n if zero_stage >= 2 else grads)
    return int(shard + (weights / n if zero_stage == 3 else weights))


@dataclass(frozen=True)
class LoRASettings:
    """A LoRA adapter on the linear layers (peft ``LoraConfig`` fields of the same meaning)."""

    r: int = 16
    """Rank of each adapter."""
    alpha: int = 32
    """Scale numerator: the update is ``alpha / r * B A``."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    target_modules: tuple[str, ...] = QWEN2_LINEAR
    """Module names to adapt (default: every linear layer of a Qwen2 block)."""
    train_protocol_tokens: bool = True
    """Also train the input-embedding rows of the protocol tags as peft *trainable tokens*
    (untied models only, see :func:`protocol_token_indices`): tags that
    ``ensure_protocol_tags`` added to a real tokenizer (``<search>``, ``<answer>``, ...)
    start as untrained rows (a few thousand parameters, not the 151k-row matrix)."""
    modules_to_save: tuple[str, ...] = ()
    """Modules trained in full (e.g. ``("embed_tokens",)``); ``lm_head`` is refused: TRL's
    fused log-prob head reads the original ``lm_head.weight``, so a trained copy would be
    silently ignored by the loss."""

    def __post_init__(self) -> None:
        check_int_fields(self, {"r": 1, "alpha": 1})
        if not 0 <= self.dropout < 1:
            raise ConfigError("must lie in [0, 1)", field="dropout", got=self.dropout,
                              fix="pass e.g. dropout=0.05")
        if isinstance(self.target_modules, str) or not self.target_modules:
            raise ConfigError("must be a non-empty tuple of module names", field="target_modules",
                              got=self.target_modules, fix=f"pass e.g. {QWEN2_LINEAR}")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))
        if "lm_head" in self.modules_to_save:
            raise ConfigError("lm_head cannot be trained through peft under TRL's GRPO",
                              field="modules_to_save", got=self.modules_to_save,
                              fix="drop 'lm_head' (TRL's fused log-prob head reads the frozen "
                                  "original); train it with full fine-tuning or in SFT")


def protocol_token_indices(model: Any, tokenizer: Any,
                           tags: Sequence[str] | None = None) -> dict[str, list[int]]:
    """Input-embedding rows to train for the protocol tags: ``{"embed_tokens": ids}``.

    Empty for a model with tied input/output embeddings: peft would then wrap
    ``lm_head`` too, and TRL's GRPO reads ``lm_head.weight`` directly in its fused
    log-prob head (TRL 1.16), which fails on the wrapper. For the same reason the
    output rows of an untied model are not trained here (see docs/training.md).
    Tags that are not single tokens of ``tokenizer`` are skipped.
    """
    from thinkgym.agents.llm import PROTOCOL_TAGS

    if getattr(model.config, "tie_word_embeddings", False):
        logger.warning("tied embeddings: protocol-tag rows are not trained as peft trainable "
                       "tokens (TRL's fused LM head cannot read a wrapped lm_head)")
        return {}
    ids = set()
    for tag in tags if tags is not None else PROTOCOL_TAGS:
        encoded = tokenizer.encode(tag, add_special_tokens=False)
        if len(encoded) == 1:
            ids.add(int(encoded[0]))
    return {"embed_tokens": sorted(ids)} if ids else {}


def lora_config(settings: LoRASettings | None = None,
                token_indices: dict[str, list[int]] | None = None) -> Any:
    """``peft.LoraConfig`` (causal LM) of ``settings``; ``token_indices`` rows train too."""
    from peft import LoraConfig

    s = settings or LoRASettings()
    return LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout,
                      target_modules=list(s.target_modules), bias="none", task_type="CAUSAL_LM",
                      modules_to_save=list(s.modules_to_save) or None,
                      trainable_token_indices=token_indices or None)


def lora_param_count(shape: Qwen2Shape, settings: LoRASettings | None = None) -> int:
    """Trainable adapter parameters: ``r * (in + out)`` per adapted linear layer (no extras)."""
    s = settings or LoRASettings()
    linear = shape.linear_shapes()
    unknown = [m for m in s.target_modules if m not in linear]
    if unknown:
        raise ConfigError("not a Qwen2 linear layer", field="target_modules", got=unknown,
                          fix=f"count only {QWEN2_LINEAR}")
    return shape.layers * sum(s.r * sum(linear[m]) for m in s.target_modules)


@dataclass(frozen=True)
class VLLMSettings:
    """vLLM generation for TRL's GRPO (GPU only; ``pip install vllm``)."""

    mode: Literal["colocate", "server"] = "colocate"
    """``"colocate"``: vLLM shares each training GPU; ``"server"``: a separate ``trl
    vllm-serve`` process on its own GPU(s)."""
    gpu_memory_utilization: float = 0.3
    """Colocate: the GPU memory fraction vLLM may take."""
    tensor_parallel_size: int = 1
    """Colocate: GPUs one vLLM engine spans."""
    max_model_length: int | None = None
    """Colocate: vLLM's context length (None: the model's)."""
    enable_sleep_mode: bool = False
    """Colocate: offload vLLM's weights and cache while training (saves memory, costs time)."""
    server_host: str = "127.0.0.1"
    """Server: host of ``trl vllm-serve``."""
    server_port: int = 8000
    """Server: its port."""
    server_timeout: float = 240.0
    """Server: seconds to wait for it to come up."""

    def __post_init__(self) -> None:
        if self.mode not in ("colocate", "server"):
            raise ConfigError("unknown vLLM mode", field="mode", got=self.mode,
                              fix="use 'colocate' or 'server'")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError("must lie in (0, 1]", field="gpu_memory_utilization",
                              got=self.gpu_memory_utilization, fix="pass e.g. 0.3")
        if isinstance(self.tensor_parallel_size, bool) or self.tensor_parallel_size < 1:
            raise ConfigError("must be an int >= 1", field="tensor_parallel_size",
                              got=self.tensor_parallel_size, fix="pass e.g. 1")


def vllm_grpo_kwargs(settings: VLLMSettings | None = None) -> dict[str, Any]:
    """TRL ``GRPOConfig`` keyword arguments that turn on vLLM generation as ``settings`` say."""
    s = settings or VLLMSettings()
    out: dict[str, Any] = {"use_vllm": True, "vllm_mode": s.mode}
    if s.mode == "colocate":
        out.update(vllm_gpu_memory_utilization=s.gpu_memory_utilization,
                   vllm_tensor_parallel_size=s.tensor_parallel_size,
                   vllm_enable_sleep_mode=s.enable_sleep_mode)
        if s.max_model_length is not None:
            out["vllm_max_model_length"] = s.max_model_length
    else:
        out.update(vllm_server_host=s.server_host, vllm_server_port=s.server_port,
                   vllm_server_timeout=s.server_timeout)
    return out


def build_lora_trainer(config: Any, model_path: str, lora: LoRASettings | None = None) -> Any:
    """:func:`~thinkgym.training.grpo.build_trainer` with LoRA adapters from ``lora``.

    TRL wraps the model with ``peft.get_peft_model`` from ``peft_config``; only the
    adapters (and ``modules_to_save``) train. With ``beta > 0`` TRL uses the base
    model (adapters disabled) as the reference, so no second copy is loaded.
    """
    from thinkgym.training.grpo import build_trainer

    settings = lora or LoRASettings()

    def peft(model: Any, tokenizer: Any) -> Any:
        tokens = (protocol_token_indices(model, tokenizer) if settings.train_protocol_tokens
                  else None)
        return lora_config(settings, tokens)

    return build_trainer(config, model_path, peft=peft)


def main(argv: Sequence[str] | None = None) -> int:
    """The script the accelerate configs launch: GRPO on a text env, full or LoRA."""
    from thinkgym.training.grpo import GRPOTrainConfig, build_trainer

    p = argparse.ArgumentParser(prog="python -m thinkgym.training.scaleout",
                                description="GRPO on a thinkgym text env (accelerate-launchable)")
    p.add_argument("--model", required=True, help="local model directory")
    p.add_argument("--env", default="SearchQA-v0")
    p.add_argument("--split", default="easy", help="SearchQA-v0 split")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps")
    p.add_argument("--prompts", type=int, default=256, help="dataset rows (env seeds)")
    p.add_argument("--generations", type=int, default=8, help="episodes per prompt (G)")
    p.add_argument("--prompts-per-step", type=int, default=2, help="prompt groups per step")
    p.add_argument("--lr", type=float, default=1e-6, help="learning rate (LoRA: try 1e-5)")
    p.add_argument("--max-new-tokens", type=int, default=GRPOTrainConfig.max_new_tokens,
                   help="tokens per agent turn")
    p.add_argument("--max-completion-tokens", type=int,
                   default=GRPOTrainConfig.max_completion_tokens,
                   help="tokens of the whole multi-turn episode (agent + env)")
    p.add_argument("--bf16", action="store_true", help="bf16 (GPU; match the accelerate file)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters only")
    p.add_argument("--lora-r", type=int, default=LoRASettings.r)
    p.add_argument("--output-dir", default="runs/grpo-scaleout")
    args = p.parse_args(argv)
    env_kwargs = {"split": args.split} if args.env == "SearchQA-v0" else {}
    config = GRPOTrainConfig(
        env_id=args.env, env_kwargs=env_kwargs, num_prompts=args.prompts,
        num_generations=args.generations, prompts_per_step=args.prompts_per_step,
        max_steps=args.steps, learning_rate=args.lr, bf16=args.bf16,
        max_new_tokens=args.max_new_tokens, max_completion_tokens=args.max_completion_tokens,
        gradient_checkpointing=args.gradient_checkpointing, output_dir=args.output_dir)
    if args.lora:
        lora = LoRASettings(r=args.lora_r, alpha=2 * args.lora_r)
        trainer = build_lora_trainer(config, args.model, lora)
    else:
        trainer = build_trainer(config, args.model)
    trainer.train()
    trainer.save_model(args.output_dir)
    trainer.processing_class.save_pretrained(args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
