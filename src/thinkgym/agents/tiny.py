"""A tiny Qwen2-architecture model with an offline-trained tokenizer, for tests and CPU demos.

The tiny model goes through exactly the path a real model takes: it is saved with
``save_pretrained`` into a directory and loaded back with ``from_pretrained``
(:func:`thinkgym.agents.llm.load_model_and_tokenizer`), so code tested on it is
the code that runs DeepSeek-R1-Distill-Qwen-1.5B.

* **Tokenizer** — a Qwen2 byte-level BPE (``Qwen2Tokenizer``: Qwen2's split regex,
  NFC, byte-level alphabet) retrained with ``train_new_from_iterator`` on text of
  thinkgym's environments: prompts of the text envs, passages and questions of the
  knowledge world, and protocol samples (``<think>``/``<search>``/``<information>``/
  ``<answer>``/``<tool_call>``/``<tool_response>``). The R1-Distill special tokens
  are its special tokens, with ``pad == eos`` as in R1-Distill's own tokenizer.
  Training drops added tokens, so the protocol tags are added back afterwards as
  ordinary (non-special) tokens: they survive ``skip_special_tokens`` decoding.
* **Chat template** — TRL's copy of the R1-Distill template
  (``trl.chat_template_utils.deepseek_r1_distill_chat_template``): the generation
  prompt ends with ``<｜Assistant｜><think>\\n`` and earlier assistant turns lose
  their ``<think>`` block, which is why thinkgym plays a whole multi-turn episode
  in a single assistant turn.
* **Model** — ``Qwen2ForCausalLM`` from a small :class:`TinyModelConfig`, weights
  drawn from ``seed`` (the global torch RNG is left untouched).

Everything is cached under ``$THINKGYM_CACHE/tiny-model/<key>`` (default
``~/.cache/thinkgym/tiny-model``). The key hashes the config, the corpus text and
the transformers version, so the same inputs always give the same files.

    >>> from thinkgym.agents.tiny import TinyModelConfig
    >>> TinyModelConfig().hidden_size
    64
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkgym.errors import ConfigError, check_int_fields

__all__ = [
    "R1_SPECIAL_TOKENS",
    "TinyModelConfig",
    "build_tiny_model",
    "cache_root",
    "load_tiny_model",
    "tiny_corpus",
    "tiny_model_path",
]

logger = logging.getLogger(__name__)

R1_SPECIAL_TOKENS = {
    "bos": "<｜begin▁of▁sentence｜>",
    "eos": "<｜end▁of▁sentence｜>",
    "user": "<｜User｜>",
    "assistant": "<｜Assistant｜>",
}
"""The special tokens the R1-Distill chat template writes."""

_FORMAT_VERSION = 1  # bump when the build recipe changes


@dataclass(frozen=True)
class TinyModelConfig:
    """Size, tokenizer corpus and seed of the tiny model."""

    hidden_size: int = 64
    """Width of the residual stream."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (``hidden_size`` must be divisible by it)."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention as in Qwen2; divides ``num_heads``)."""
    intermediate_size: int = 128
    """Width of the MLP."""
    vocab_size: int = 1024
    """BPE vocabulary size before the special tokens and protocol tags are added."""
    max_position_embeddings: int = 4096
    """Longest context the rotary embedding is configured for."""
    seed: int = 0
    """Seed of the weights (the tokenizer depends only on the corpus)."""
    corpus_envs: tuple[str, ...] = ("Reasoning-v0", "ToolCall-v0")
    """Registered text envs whose prompts train the tokenizer (cheap-to-build envs)."""
    corpus_episodes: int = 24
    """Prompts drawn per env (seeds ``0 .. corpus_episodes - 1``)."""
    pad_equals_eos: bool = True
    """Use the eos token as pad token, as DeepSeek-R1-Distill's tokenizer does."""

    def __post_init__(self) -> None:
        check_int_fields(self, {"hidden_size": 8, "num_layers": 1, "num_heads": 1,
                                "num_kv_heads": 1, "intermediate_size": 8, "vocab_size": 300,
                                "max_position_embeddings": 64, "corpus_episodes": 1})
        if self.hidden_size % self.num_heads:
            raise ConfigError("hidden_size must be divisible by num_heads", field="num_heads",
                              got=(self.hidden_size, self.num_heads),
                              fix="pick num_heads dividing hidden_size, e.g. 4 for 64")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError("num_heads must be divisible by num_kv_heads", field="num_kv_heads",
                              got=(self.num_heads, self.num_kv_heads),
                              fix="pick num_kv_heads dividing num_heads, e.g. 2 for 4")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("must be a non-negative int", field="seed", got=self.seed,
                              fix="pass e.g. seed=0")
        object.__setattr__(self, "corpus_envs", tuple(self.corpus_envs))


def cache_root() -> Path:
    """``$THINKGYM_CACHE`` (default ``~/.cache/thinkgym``)."""
    return Path(os.environ.get("THINKGYM_CACHE", "~/.cache/thinkgym")).expanduser()


# -- corpus ----------------------------------------------------------------------------------
def _protocol_samples(world: Any) -> list[str]:
    """Agent/env text in each tag protocol, built from knowledge-world facts."""
    out = []
    for q in world.questions("easy", 24) + world.questions("train", 24):
        passage = world.passages[q.supporting_ids[0]]
        out.append(
            f"<think>\nI need to find out: {q.text} Let me search.\n</think>\n"
            f"<search> {q.text} </search>\n"
            f"<information>Doc 1 (id: {passage.id}): {passage.contents}</information>\n"
            f"<think>\nThe passage says it.\n</think>\n<answer> {q.answers[0]} </answer>")
    for i, p in enumerate(world.passages[:24]):
        call = json.dumps({"name": "search_product", "arguments": {"query": p.title}})
        result = json.dumps({"name": "calculator", "content": str(i * 7 + 3)})
        out.append(f"<think>\nLook it up.\n</think>\n<tool_call>{call}</tool_call>"
                   f"<tool_response>{result}</tool_response>\n<answer>{i * 7 + 3}</answer>")
        out.append(f"<think>\n{i} + {i * 3} = {i * 4}\n</think>\n"
                   f"So the answer is \\boxed{{{i * 4}}}.")
    return out


def tiny_corpus(config: TinyModelConfig | None = None) -> list[str]:
    """The tokenizer's training text: env prompts, world passages, protocol samples."""
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.envs.search_qa.knowledge import WorldConfig, build_world

    config = config or TinyModelConfig()
    texts: list[str] = []
    for env_id in config.corpus_envs:
        if env_id not in gym.registry:
            raise ConfigError("corpus env is not registered", field="corpus_envs", got=env_id,
                              fix=f"use registered text envs, e.g. {TinyModelConfig.corpus_envs}")
        env = gym.make(env_id)
        texts += [env.reset(seed=s)[0] for s in range(config.corpus_episodes)]
        env.close()
    world = build_world(WorldConfig(num_passages=200, seed=0))
    texts += [p.contents for p in world.passages]
    texts += _protocol_samples(world)
    return texts


# -- build -----------------------------------------------------------------------------------
def _train_tokenizer(corpus: list[str], config: TinyModelConfig) -> Any:
    from transformers import Qwen2Tokenizer
    from trl.chat_template_utils import deepseek_r1_distill_chat_template

    from thinkgym.agents.llm import PROTOCOL_TAGS

    base = Qwen2Tokenizer()  # Qwen2's pre-tokenizer and byte-level decoder, empty vocab
    special = list(R1_SPECIAL_TOKENS.values())
    tok = base.train_new_from_iterator(corpus, vocab_size=config.vocab_size,
                                       new_special_tokens=special)
    tok.add_tokens(list(PROTOCOL_TAGS))  # training dropped them; ordinary, not special
    tok.bos_token, tok.eos_token = R1_SPECIAL_TOKENS["bos"], R1_SPECIAL_TOKENS["eos"]
    tok.unk_token = None
    tok.pad_token = R1_SPECIAL_TOKENS["eos"] if config.pad_equals_eos else "<|endoftext|>"
    tok.chat_template = deepseek_r1_distill_chat_template
    tok.clean_up_tokenization_spaces = False
    tok.model_max_length = config.max_position_embeddings
    return tok


def _build_model(tokenizer: Any, config: TinyModelConfig) -> Any:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    model_config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Qwen2ForCausalLM(model_config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=0.6, top_p=0.95)
    return model


def _cache_key(config: TinyModelConfig, corpus: list[str]) -> str:
    import transformers

    h = hashlib.sha256()
    h.update(json.dumps({"config": dataclasses.asdict(config), "format": _FORMAT_VERSION,
                         "transformers": transformers.__version__}, sort_keys=True).encode())
    for text in corpus:
        h.update(hashlib.sha256(text.encode()).digest())
    return h.hexdigest()[:16]


def build_tiny_model(path: str | Path, config: TinyModelConfig | None = None,
                     corpus: list[str] | None = None) -> Path:
    """Train the tokenizer, build the model and ``save_pretrained`` both into ``path``."""
    config = config or TinyModelConfig()
    corpus = tiny_corpus(config) if corpus is None else corpus
    path = Path(path)
    tokenizer = _train_tokenizer(corpus, config)
    model = _build_model(tokenizer, config)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    (path / "thinkgym_tiny.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    return path


def tiny_model_path(config: TinyModelConfig | None = None,
                    cache_dir: str | Path | None = None) -> Path:
    """The directory of the tiny model for ``config``, built on first use (atomically)."""
    config = config or TinyModelConfig()
    corpus = tiny_corpus(config)
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "tiny-model"
    target = root / _cache_key(config, corpus)
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    logger.info("building the tiny model into %s", target)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        build_tiny_model(tmp, config, corpus)
        try:
            os.replace(tmp, target)  # atomic; loses the race harmlessly if another build won
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tiny_model(config: TinyModelConfig | None = None,
                    cache_dir: str | Path | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of the tiny model, loaded with ``from_pretrained`` (float32, CPU)."""
    from thinkgym.agents.llm import load_model_and_tokenizer

    return load_model_and_tokenizer(str(tiny_model_path(config, cache_dir)))
