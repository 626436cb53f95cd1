"""MAGPolicy: a MAG block and a detection head on a causal LM's hidden states.

Two channels share the LM's last hidden states ``h`` ``(B, T, H)``:

* **generation** — the LM's own head, ``softmax(lm_head(h_t))``: the next token;
* **detection** — ``h`` is projected to the block width, run through the
  :class:`~thinkgym.agents.mag.block.MAGBlock` (persistent tokens, sliding window,
  gated neural memory), and at the position where a reasoning step ends the
  :class:`~thinkgym.agents.mag.detection.DetectionHead` reads the block's output,
  the normalised entropy ``H`` of the generation channel's distribution there and
  the fraction of the step budget used, and estimates ``(V(s), U(s))``. The stop
  rule is ``V - U < base_threshold * (1 + H)``.

Offline (training, evaluation on logged episodes) a whole episode goes through in
one call (:meth:`MAGPolicy.forward`); every quantity at a step's end depends only on
tokens up to it (causal LM, causal window, memory read before its chunk is
written), so this equals the online path. Online (:meth:`MAGPolicy.start` then
:meth:`MAGPolicy.step` per reasoning step) the LM keeps its KV cache and the block
keeps its memory and window across calls; :meth:`MAGPolicy.reset` drops both.

Works with any ``transformers`` causal LM with ``base_model`` and an output
embedding: the tiny Qwen2 model, SmolLM2-135M-Instruct (Llama), R1-Distill (Qwen2).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from thinkgym.agents.mag.block import MAGBlock, MAGConfig
from thinkgym.agents.mag.detection import (
    DetectionHead,
    dynamic_threshold,
    normalized_entropy,
    stop_decision,
)
from thinkgym.errors import CheckpointError, ConfigError

__all__ = ["Detection", "HaltDecision", "MAGPolicy", "MAGPolicyConfig", "episode_tokens"]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "mag.pt"
CONFIG_FILE = "mag_config.json"


@dataclass(frozen=True)
class MAGPolicyConfig:
    """The MAG block's config, the head's width and the stop threshold."""

    block: MAGConfig = field(default_factory=MAGConfig)
    """The MAG block (a dict of :class:`MAGConfig` fields is accepted)."""
    head_hidden: int = 64
    """Hidden width of the detection head."""
    base_threshold: float = 0.1
    """``base_threshold`` of ``tau = base_threshold * (1 + H)``, in reward units (>= 0)."""

    def __post_init__(self) -> None:
        if isinstance(self.block, dict):
            object.__setattr__(self, "block", MAGConfig(**self.block))
        if not (isinstance(self.base_threshold, int | float) and self.base_threshold >= 0):
            raise ConfigError("must be >= 0", field="base_threshold", got=self.base_threshold,
                              fix="pass e.g. base_threshold=0.1")


@dataclass
class Detection:
    """The detection channel at the gathered step ends, each ``(B, K)``."""

    value: Tensor
    """``V(s)``."""
    stop_value: Tensor
    """``U(s)``: the value of stopping now."""
    entropy: Tensor
    """Normalised entropy ``H`` of the generation channel's next-token distribution."""


@dataclass(frozen=True)
class HaltDecision:
    """One online decision: stop or not, and why."""

    stop: bool
    value: float
    stop_value: float
    entropy: float
    threshold: float


def episode_tokens(tokenizer: Any, prompt: str, steps: Sequence[tuple[str, str]],
                   ) -> tuple[list[int], list[int], list[int]]:
    """``(ids, step ends, agent mask)`` of an episode, laid out as the GRPO rollout does.

    The chat-templated prompt, then per step the agent's action and the env's answer,
    each tokenised on its own. ``step ends[k]`` is the index of the last token of step
    ``k``; ``agent mask`` is 1 on action tokens. The online path (:meth:`MAGPolicy.start`
    / :meth:`MAGPolicy.step`) tokenises the same way, so positions agree.
    """
    from thinkgym.agents.llm import encode_prompt

    enc = encode_prompt(tokenizer, prompt)
    ids = list(enc.ids) + list(enc.prefill_ids)
    mask = [0] * len(ids)
    ends = []
    for action, observation in steps:
        a = tokenizer.encode(action, add_special_tokens=False)
        o = tokenizer.encode(observation, add_special_tokens=False)
        ids += a + o
        mask += [1] * len(a) + [0] * len(o)
        ends.append(len(ids) - 1)
    return ids, ends, mask


class MAGPolicy(nn.Module):
    """A causal LM (generation channel) + MAG block and detection head (detection channel).

    Args:
        lm: a ``transformers`` causal LM (``lm.base_model`` gives hidden states).
        tokenizer: its tokenizer (needed for the online :meth:`start` / :meth:`step`).
        config: block, head and threshold settings.
    """

    def __init__(self, lm: Any, tokenizer: Any = None, config: MAGPolicyConfig | None = None,
                 ) -> None:
        super().__init__()
        self.config = config or MAGPolicyConfig()
        self.lm = lm
        self.tokenizer = tokenizer
        d = self.config.block.d_model
        self.in_proj = nn.Linear(int(lm.config.hidden_size), d)
        self.block = MAGBlock(self.config.block)
        self.head = DetectionHead(d + 2, self.config.head_hidden)
        self._cache: Any = None

    # -- parameters --------------------------------------------------------------------------
    def generation_parameters(self) -> Iterator[nn.Parameter]:
        """The LM's parameters (the generation channel)."""
        return self.lm.parameters()

    def detection_parameters(self) -> Iterator[nn.Parameter]:
        """The projection, MAG block and head (the detection channel)."""
        for module in (self.in_proj, self.block, self.head):
            yield from module.parameters()

    # -- offline -----------------------------------------------------------------------------
    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The LM's last hidden states ``(B, T, H)`` (after its final norm)."""
        out = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state

    def detect(self, hidden: Tensor, positions: Tensor, step_fraction: Tensor,
               attention_mask: Tensor | None = None) -> Detection:
        """Detection at ``positions`` ``(B, K)`` from hidden states ``(B, T, H)``, fresh memory.

        ``step_fraction`` ``(B, K)``: steps taken / step budget at each position.
        """
        x = self.in_proj(hidden.to(self.in_proj.weight.dtype))
        z, _ = self.block.forward_with_state(x, None, attention_mask)  # (B, T, d)
        return self._head(hidden, z, positions, step_fraction)

    def _head(self, hidden: Tensor, z: Tensor, positions: Tensor,
              step_fraction: Tensor) -> Detection:
        idx = positions.clamp(min=0)
        zs = z.gather(1, idx.unsqueeze(-1).expand(-1, -1, z.shape[-1]))  # (B, K, d)
        hs = hidden.gather(1, idx.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # (B, K, H)
        with torch.no_grad():  # H is an input of the decision, not a training target
            entropy = normalized_entropy(self.lm.get_output_embeddings()(hs))
        feats = torch.cat([zs, entropy.unsqueeze(-1).to(zs.dtype),
                           step_fraction.unsqueeze(-1).to(zs.dtype)], dim=-1)
        value, stop_value = self.head(feats)
        return Detection(value, stop_value, entropy)

    def forward(self, input_ids: Tensor, positions: Tensor, step_fraction: Tensor,
                attention_mask: Tensor | None = None) -> Detection:
        """:meth:`detect` on the LM's hidden states of ``input_ids`` ``(B, T)``."""
        return self.detect(self.hidden_states(input_ids, attention_mask), positions,
                           step_fraction, attention_mask)

    def decide(self, detection: Detection) -> Tensor:
        """Stop mask ``(B, K)``: ``V - U < base_threshold * (1 + H)``."""
        return stop_decision(detection.value, detection.stop_value, detection.entropy,
                             self.config.base_threshold)

    # -- online ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the episode: the LM's KV cache and the block's memory and window."""
        self._cache = None
        self.block.reset()

    def _feed(self, ids: Sequence[int]) -> tuple[Tensor, Tensor]:
        new = torch.tensor([list(ids)], device=self.in_proj.weight.device)
        out = self.lm(input_ids=new, cache=self._cache, use_cache=True,
                      output_hidden_states=True, logits_to_keep=1)
        self._cache = out.past_key_values
        hidden = out.hidden_states[-1]  # after the final norm, as base_model's last state
        z = self.block(self.in_proj(hidden.to(self.in_proj.weight.dtype)))  # state persists
        return hidden, z

    @torch.no_grad()
    def start(self, prompt: str) -> None:
        """Start an episode with the env's prompt (chat-templated as in training)."""
        if self.tokenizer is None:
            raise ConfigError("the online path needs the tokenizer", field="tokenizer",
                              got=None, fix="MAGPolicy(lm, tokenizer, config)")
        self.reset()
        ids, _, _ = episode_tokens(self.tokenizer, prompt, [])
        self._feed(ids)

    @torch.no_grad()
    def step(self, action: str, observation: str, step_fraction: float) -> HaltDecision:
        """Read one step (the agent's action, the env's answer); decide whether to stop."""
        if self._cache is None:
            raise ConfigError("step() before start()", field="prompt", got=None,
                              fix="call start(prompt) at the episode's first observation")
        ids = (self.tokenizer.encode(action, add_special_tokens=False)
               + self.tokenizer.encode(observation, add_special_tokens=False))
        hidden, z = self._feed(ids)
        last = torch.tensor([[hidden.shape[1] - 1]])
        det = self._head(hidden, z, last, torch.tensor([[float(step_fraction)]]))
        tau = float(dynamic_threshold(self.config.base_threshold, det.entropy)[0, 0])
        return HaltDecision(bool(self.decide(det)[0, 0]), float(det.value[0, 0]),
                            float(det.stop_value[0, 0]), float(det.entropy[0, 0]), tau)

    # -- persistence -------------------------------------------------------------------------
    def detection_state_dict(self) -> dict[str, Tensor]:
        return {f"{name}.{k}": v for name in ("in_proj", "block", "head")
                for k, v in getattr(self, name).state_dict().items()}

    def save(self, out: str | Path, *, lm_source: str | None = None,
             save_lm: bool = False) -> Path:
        """Write ``mag.pt`` + ``mag_config.json`` (and the LM + tokenizer with ``save_lm``).

        ``lm_source`` records where the (unchanged) LM comes from when it is not saved.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.detection_state_dict(), out / WEIGHTS_FILE)
        meta = {"config": dataclasses.asdict(self.config),
                "lm": "." if save_lm else lm_source}
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        if save_lm:
            self.lm.save_pretrained(out)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(out)
        return out

    @classmethod
    def load(cls, path: str | Path, lm: Any = None, tokenizer: Any = None) -> MAGPolicy:
        """A policy saved by :meth:`save`; the LM from ``lm`` or from the recorded source."""
        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"no {CONFIG_FILE} in {path}", got=str(path),
                                  fix="point at a directory written by MAGPolicy.save "
                                  "(thinkgym train mag)")
        meta = json.loads((path / CONFIG_FILE).read_text())
        if lm is None:
            from thinkgym.agents.llm import load_model_and_tokenizer

            source = meta.get("lm")
            if source is None:
                raise CheckpointError("the MAG checkpoint records no LM", got=str(path),
                                      fix="pass lm= and tokenizer=")
            lm, tokenizer = load_model_and_tokenizer(path if source == "." else source)
        policy = cls(lm, tokenizer, MAGPolicyConfig(**meta["config"]))
        state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        for name in ("in_proj", "block", "head"):
            prefix = f"{name}."
            getattr(policy, name).load_state_dict(
                {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return policy
