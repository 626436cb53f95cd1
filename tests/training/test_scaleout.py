from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import yaml

from thinkgym.agents.tiny import tiny_model_path
from thinkgym.envs.common.text_env import TextEnv
from thinkgym.errors import ConfigError
from thinkgym.protocols import RewardInput
from thinkgym.rewards import Composer, FunctionComponent
from thinkgym.training.grpo import GRPOTrainConfig
from thinkgym.training.scaleout import (
    ACCELERATE_CONFIGS,
    R1_DISTILL_1_5B,
    LoRASettings,
    Qwen2Shape,
    VLLMSettings,
    build_lora_trainer,
    lora_config,
    lora_param_count,
    main,
    model_state_bytes,
    param_count,
    protocol_token_indices,
    vllm_grpo_kwargs,
)

REPO = Path(__file__).resolve().parents[2]
ENV_ID = "ToyTextScaleout-v0"
EXPECTED = {"ddp": ("MULTI_GPU", None), "zero2": ("DEEPSPEED", 2), "zero3": ("DEEPSPEED", 3)}


class ToyEnv(TextEnv):
    """One turn of free text; reward = distinct characters / 10."""

    def __init__(self) -> None:
        super().__init__(max_observation_chars=4096, max_action_chars=4096)
        self.composer = Composer({FunctionComponent(
            "chars", lambda inp: len(set(inp.completion)) / 10): 1.0})

    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        return f"Task {int(self.np_random.integers(50))}. Write anything.\n", {}

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        result = self.composer.score(RewardInput(completion=action), turn=0)
        return "", result.total, True, False, {"reward_components": result.components}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=ToyEnv)


# -- accelerate configs ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_accelerate_config_parses_and_validates(name: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = REPO / ACCELERATE_CONFIGS[name]
    raw = yaml.safe_load(path.read_text())
    unknown = set(raw) - set(ClusterConfig.__dataclass_fields__)
    assert not unknown, f"{path.name}: keys accelerate does not know: {unknown}"
    config = load_config_from_file(str(path))  # accelerate's own loader (rejects extra keys)
    dist, stage = EXPECTED[name]
    assert config.distributed_type.value == dist
    assert config.mixed_precision == "bf16"
    parser = launch_command_parser()
    launch_flags = {a.dest for a in parser._actions}
    for key in config.deepspeed_config or {}:
        assert key in launch_flags, f"{key} is not an accelerate launch setting"
    args = parser.parse_args(["--config_file", str(path), "-m", "thinkgym.training.scaleout",
                              "--model", "m"])
    args, _, _ = _validate_launch_command(args)
    assert args.use_deepspeed == (dist == "DEEPSPEED")
    assert args.multi_gpu == (dist == "MULTI_GPU")
    if stage is not None:
        assert int(args.zero_stage) == stage
        assert args.offload_optimizer_device == "none"


def test_zero_stage_settings_build_a_deepspeed_plugin() -> None:
    from accelerate.utils import DeepSpeedPlugin

    for name in ("zero2", "zero3"):
        ds = yaml.safe_load((REPO / ACCELERATE_CONFIGS[name]).read_text())["deepspeed_config"]
        plugin = DeepSpeedPlugin(zero_stage=ds["zero_stage"], gradient_clipping=ds[
            "gradient_clipping"], offload_optimizer_device=ds["offload_optimizer_device"],
            offload_param_device=ds["offload_param_device"])
        assert plugin.deepspeed_config["zero_optimization"]["stage"] == ds["zero_stage"]


def test_every_config_file_is_listed() -> None:
    on_disk = {p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*")
               if p.suffix in (".yaml", ".yml", ".json")}
    assert on_disk == set(ACCELERATE_CONFIGS.values())
    for rel in on_disk:
        if rel.endswith(".json"):
            json.loads((REPO / rel).read_text())


# -- memory arithmetic -----------------------------------------------------------------------
def test_r1_distill_parameter_count_and_full_finetune_memory() -> None:
    n = param_count(R1_DISTILL_1_5B)
    assert n == 1_777_088_000  # the published size of DeepSeek-R1-Distill-Qwen-1.5B
    assert model_state_bytes(n) / 1e9 == pytest.approx(28.43, abs=0.01)
    zero2 = model_state_bytes(n, num_gpus=4, zero_stage=2)
    zero3 = model_state_bytes(n, num_gpus=4, zero_stage=3)
    assert zero2 == pytest.approx(2 * n + 14 * n / 4)
    assert zero3 == pytest.approx(16 * n / 4)
    lora = lora_param_count(R1_DISTILL_1_5B)
    assert lora == 18_464_768
    assert model_state_bytes(n, trainable=lora) / 1e9 < 4


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return str(tiny_model_path())


@pytest.fixture(scope="module")
def untied_path(tiny_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model with separate input and output embeddings, like R1-Distill-1.5B."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from thinkgym.agents.llm import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(tiny_path)
    model.config.tie_word_embeddings = False
    untied = Qwen2ForCausalLM(model.config)
    out = tmp_path_factory.mktemp("untied")
    untied.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_path).save_pretrained(out)
    return str(out)


def test_counts_match_the_real_tiny_model_and_peft(untied_path: str) -> None:
    from peft import get_peft_model

    from thinkgym.agents.llm import PROTOCOL_TAGS, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(untied_path)
    shape = Qwen2Shape.of(model.config)
    assert not shape.tie_embeddings
    assert param_count(shape) == sum(p.numel() for p in model.parameters())
    settings = LoRASettings(r=4, alpha=8)
    tokens = protocol_token_indices(model, tokenizer)
    assert list(tokens) == ["embed_tokens"]
    assert len(tokens["embed_tokens"]) == len(PROTOCOL_TAGS)
    peft_model = get_peft_model(model, lora_config(settings, tokens))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    rows = len(PROTOCOL_TAGS) * shape.hidden
    assert trainable == lora_param_count(shape, settings) + rows


def test_tied_model_gets_no_token_rows(tiny_path: str) -> None:
    from thinkgym.agents.llm import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(tiny_path)
    assert param_count(Qwen2Shape.of(model.config)) == sum(p.numel() for p in model.parameters())
    assert protocol_token_indices(model, tokenizer) == {}


# -- LoRA trainer ----------------------------------------------------------------------------
def grpo_config(tmp_path: Path, **kw: Any) -> GRPOTrainConfig:
    base = {"env_id": ENV_ID, "num_prompts": 4, "num_generations": 2, "prompts_per_step": 2,
            "max_steps": 1, "max_new_tokens": 8, "max_completion_tokens": 32,
            "learning_rate": 5e-2, "output_dir": str(tmp_path / "run"), "seed": 0,
            "metrics": ()}
    return GRPOTrainConfig(**{**base, **kw})


def test_lora_grpo_step_trains_only_the_adapters(tmp_path: Path, untied_path: str) -> None:
    trainer = build_lora_trainer(grpo_config(tmp_path), untied_path, LoRASettings(r=4, alpha=8))
    named = dict(trainer.model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable
    assert all("lora_" in n or "trainable_tokens" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)  # the protocol-tag rows
    before = {n: p.detach().clone() for n, p in named.items()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not p.equal(before[n])}
    assert changed
    assert changed <= trainable  # the base weights are frozen


def test_scaleout_script_runs_one_lora_step(tmp_path: Path, tiny_path: str) -> None:
    out = tmp_path / "script"
    code = main(["--model", tiny_path, "--env", ENV_ID, "--steps", "1", "--prompts", "2",
                 "--generations", "2", "--prompts-per-step", "1", "--max-new-tokens", "8",
                 "--max-completion-tokens", "32", "--lora", "--lora-r", "2", "--lr", "1e-3",
                 "--output-dir", str(out)])
    assert code == 0
    assert (out / "adapter_config.json").is_file()  # peft saved the adapter, not the model


# -- vLLM flags and bad input ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_vllm_flags_are_grpo_config_fields(mode: str) -> None:
    from trl import GRPOConfig

    kwargs = vllm_grpo_kwargs(VLLMSettings(mode=mode, max_model_length=4096))
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(kwargs) <= fields
    assert kwargs["use_vllm"] is True
    args = GRPOConfig(output_dir="unused", report_to="none", bf16=False, **kwargs)
    assert args.vllm_mode == mode


@pytest.mark.parametrize(("cls", "kw", "field"), [
    (LoRASettings, {"r": 0}, "r"), (LoRASettings, {"dropout": 1.0}, "dropout"),
    (LoRASettings, {"target_modules": "q_proj"}, "target_modules"),
    (LoRASettings, {"modules_to_save": ("lm_head",)}, "modules_to_save"),
    (VLLMSettings, {"mode": "remote"}, "mode"),
    (VLLMSettings, {"gpu_memory_utilization": 0.0}, "gpu_memory_utilization")])
def test_bad_settings_are_config_errors(cls: type, kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        cls(**kw)
    assert err.value.field == field
    assert err.value.fix


def test_lora_count_refuses_unknown_modules() -> None:
    with pytest.raises(ConfigError, match="not a Qwen2 linear layer"):
        lora_param_count(R1_DISTILL_1_5B, LoRASettings(target_modules=("c_attn",)))
