"""LLMPolicy: a transformers causal LM acting in the text envs (DeepSeek-R1-Distill by default).

Loading never downloads: a model is a local directory written by
``save_pretrained`` or a repo id already in the local Hugging Face cache
(``local_files_only=True``); anything else raises
:class:`~thinkgym.errors.CheckpointError` naming the paths tried and how to point
at a local copy (``--model PATH``). ``rope_scaling`` is passed through to the model
config for long contexts. A tokenizer without a pad token gets ``pad = eos``.

Protocol tags (``<search>``, ``<answer>``, ...) are plain text by default: the
vocabulary is never resized, the agent writes a tag as whatever tokens its
tokenizer splits it into, and tags are found in decoded text (the envs parse
text; the turn-stop rule below reads the decoded tail). Adding the tags as new
tokens is an explicit option (``add_protocol_tokens=True``): their embedding rows
start untrained and identical, so a pretrained model cannot tell ``<search>`` from
``<answer>`` until it is fine-tuned — fine for a model trained from scratch, fatal
for an instruct model used as is.

Generation is a small token-by-token sampler over the model's KV cache
(:class:`DecodeSession`): temperature / top-p sampling with a ``torch.Generator``,
the log-probability of every sampled token (``log_softmax(logits / T)``, as
TRL scores it), and stops at EOS, at ``max_new_tokens`` or after a protocol closing
tag (``</search>``, ``</answer>``, ``</tool_call>``) — the stop-string rule is
checked on the decoded tail of the turn, so it also works when a tag is split
over several tokens. A session keeps its cache across turns: env text is fed in
one forward pass, never re-encoding the prefix. :class:`BatchDecodeSession` does the
same for several episodes at once (one padded cache, one forward pass per token
for all of them).

The prompt is the env's text as the user message of the model's own chat
template. Only a reasoning model whose template itself ends the generation prompt
with ``<think>`` (R1-Distill: ``<think>\\n``) gets a *prefill*: that opener is split
off as forced text the model did not sample and prefixed to the first action, so
the env sees a complete ``<think>`` block. An instruct model's template (SmolLM2,
Qwen2.5-Instruct, ...) has no such opener and nothing is forced. TRL no longer truncates
prompts, so :func:`encode_prompt` does: over budget, user text is cut from the
left (its end, where the question sits, is kept) while the system prompt and the
template framing are kept whole, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thinkgym.errors import CheckpointError, ConfigError, InvalidAction, check_int_fields
from thinkgym.rewards.masking import tokenizer_offsets

__all__ = [
    "DEFAULT_MODEL_ID",
    "PROTOCOL_TAGS",
    "STOP_STRINGS",
    "BatchDecodeSession",
    "DecodeSession",
    "EncodedPrompt",
    "LLMPolicy",
    "LLMPolicyConfig",
    "Turn",
    "TurnBuilder",
    "encode_prompt",
    "ensure_protocol_tags",
    "load_model_and_tokenizer",
    "resolve_model_dir",
    "sample_token",
    "with_rope_scaling",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
PROTOCOL_TAGS = ("<think>", "</think>", "<search>", "</search>", "<information>",
                 "</information>", "<answer>", "</answer>", "<tool_call>", "</tool_call>",
                 "<tool_response>", "</tool_response>")
"""Tags of the text envs' protocols; each must be one token of the tokenizer."""
STOP_STRINGS = ("</search>", "</answer>", "</tool_call>")
"""Closing tags after which the agent's turn ends and the env answers."""

_USER_MARK = "\ue000thinkgym-user-content\ue000"
_PREFILL = re.compile(r"<think>\s*\Z")
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
SMALL_MODEL_PARAMS = 50_000_000
"""Below this size, token-by-token generation runs on one torch thread (see ``num_threads``)."""


@dataclass(frozen=True)
class LLMPolicyConfig:
    """Model, sampling and context settings of :class:`LLMPolicy`."""

    model: str = DEFAULT_MODEL_ID
    """Local model directory, or a repo id already in the local Hugging Face cache."""
    temperature: float = 0.6
    """Sampling temperature (0 = greedy); R1-Distill is tuned for 0.5-0.7."""
    top_p: float = 0.95
    """Nucleus sampling mass, in (0, 1]."""
    max_new_tokens: int = 512
    """Tokens the agent may write per turn."""
    max_context_tokens: int = 4096
    """Prompt + episode so far + the next turn must fit; older turns are dropped first."""
    stop_strings: tuple[str, ...] = STOP_STRINGS
    """A turn ends right after any of these strings."""
    system_prompt: str | None = None
    """Optional system message (R1-Distill recommends none: instructions go in the prompt)."""
    rope_scaling: Mapping[str, Any] | None = None
    """Passed to the model config, e.g. ``{"rope_type": "yarn", "factor": 4.0}``."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights' dtype (float32 on CPU: bf16 matmuls are slow there)."""
    device: str = "cpu"
    """Torch device of the model."""
    seed: int | None = None
    """Seed of the sampling generator (None: torch's global RNG)."""
    num_threads: int | None = None
    """Torch threads while generating; None: 1 for models under 50M parameters, else unchanged."""
    protocol_tags: tuple[str, ...] = PROTOCOL_TAGS
    """Tags added as tokens when ``add_protocol_tokens`` is on."""
    add_protocol_tokens: bool = False
    """Add the protocol tags missing from the vocabulary as new tokens and resize the
    embeddings (off: tags stay plain text, which a pretrained model can already write)."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("must be a non-empty path or repo id", field="model", got=self.model,
                              fix="pass --model PATH (a local save_pretrained directory)")
        if not (isinstance(self.temperature, int | float) and self.temperature >= 0):
            raise ConfigError("must be >= 0", field="temperature", got=self.temperature,
                              fix="pass e.g. temperature=0.6 (0 for greedy)")
        if not (isinstance(self.top_p, int | float) and 0 < self.top_p <= 1):
            raise ConfigError("must lie in (0, 1]", field="top_p", got=self.top_p,
                              fix="pass e.g. top_p=0.95")
        check_int_fields(self, {"max_new_tokens": 1, "max_context_tokens": 1})
        if self.max_new_tokens >= self.max_context_tokens:
            raise ConfigError("max_new_tokens must be < max_context_tokens",
                              field="max_new_tokens", got=(self.max_new_tokens,
                                                           self.max_context_tokens),
                              fix="raise max_context_tokens or lower max_new_tokens")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError("unknown dtype", field="dtype", got=self.dtype,
                              fix="use 'float32', 'bfloat16' or 'float16'")
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        object.__setattr__(self, "protocol_tags", tuple(self.protocol_tags))


# -- loading ---------------------------------------------------------------------------------
def resolve_model_dir(model: str | Path) -> Path:
    """The local directory of ``model``: a directory, or a repo id in the local HF cache."""
    from thinkgym.agents.models import resolve_alias

    if (alias_dir := resolve_alias(str(model))) is not None:
        return alias_dir  # a known alias (thinkgym.agents.models), converted once and cached
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"no config.json in the model directory {path.resolve()}",
                                  got=str(model), fix="point --model at a directory written by "
                                  "save_pretrained (config.json, tokenizer and weight files)")
        return path
    tried = [f"the directory {path.resolve()}"]
    if _REPO_ID.match(str(model)):
        from huggingface_hub import constants, snapshot_download

        try:
            return Path(snapshot_download(str(model), local_files_only=True))
        except (OSError, ValueError):
            tried.append(f"the Hugging Face cache {constants.HF_HUB_CACHE} "
                         f"(models--{str(model).replace('/', '--')})")
    repo = model if _REPO_ID.match(str(model)) else DEFAULT_MODEL_ID
    raise CheckpointError(
        f"model not found locally; tried {' and '.join(tried)} (thinkgym never downloads at "
        "run time)", got=str(model),
        fix=f"download it once where there is network (`huggingface-cli download {repo} "
        "--local-dir DIR`), copy DIR here and pass --model DIR")


def ensure_protocol_tags(tokenizer: Any, model: Any = None,
                         tags: Sequence[str] = PROTOCOL_TAGS) -> list[str]:
    """Add the ``tags`` that are not single tokens; resize ``model``'s embeddings if needed."""
    missing = [t for t in tags if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
    if not missing:
        return []
    logger.warning("the tokenizer has no single token for %s: adding them as tokens and resizing "
                   "the embeddings (the new rows start untrained; fine-tune before relying on "
                   "them)", missing)
    tokenizer.add_tokens(missing)
    if model is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return missing


def with_rope_scaling(config: Any, rope_scaling: Mapping[str, Any]) -> dict[str, Any]:
    """``config``'s RoPE parameters updated with ``rope_scaling`` (``rope_theta`` kept).

    transformers 5 keeps RoPE settings in ``config.rope_parameters``; the old
    ``rope_scaling`` dict (``type`` or ``rope_type``, ``factor``, ...) is merged into it.
    """
    scaling = dict(rope_scaling)
    if "type" in scaling:
        scaling.setdefault("rope_type", scaling.pop("type"))
    if "rope_type" not in scaling:
        raise ConfigError("rope_scaling needs a rope_type", field="rope_scaling", got=scaling,
                          fix='pass e.g. {"rope_type": "yarn", "factor": 4.0}')
    return {**dict(getattr(config, "rope_parameters", None) or {}), **scaling}


def load_model_and_tokenizer(
    model: str | Path = DEFAULT_MODEL_ID, *, rope_scaling: Mapping[str, Any] | None = None,
    dtype: str = "float32", device: str = "cpu", protocol_tags: Sequence[str] = PROTOCOL_TAGS,
    add_protocol_tokens: bool = False,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local directory or the local HF cache (never the network).

    ``model`` may also be a model alias (see :mod:`thinkgym.agents.models`). The
    ``protocol_tags`` are added as tokens only with ``add_protocol_tokens=True``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_dir(model)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if rope_scaling is not None:
        config.rope_parameters = with_rope_scaling(config, rope_scaling)
    lm = AutoModelForCausalLM.from_pretrained(path, config=config, local_files_only=True,
                                              dtype=getattr(torch, dtype))
    # transformers types ``to`` as ``@wraps(nn.Module.to)``, so mypy sees an unbound function
    # whose first parameter is the model; at runtime it is an ordinary bound method.
    lm = lm.to(device)  # type: ignore[arg-type]
    if tokenizer.pad_token is None:
        logger.warning("tokenizer of %s has no pad token: using eos %r", path, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    if add_protocol_tokens:
        ensure_protocol_tags(tokenizer, lm, protocol_tags)
    return lm, tokenizer


# -- prompts ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedPrompt:
    """A chat-templated prompt, split where sampling starts."""

    ids: tuple[int, ...]
    """Template + system + user text, up to the assistant prefill."""
    prefill_ids: tuple[int, ...] = ()
    """Forced assistant opener (R1: ``<think>\\n``); belongs to the completion, never sampled."""
    prefill_text: str = ""
    """Text of ``prefill_ids``."""
    truncated_tokens: int = 0
    """User-text tokens cut from the left to fit the budget."""


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def encode_prompt(tokenizer: Any, prompt: str, *, system_prompt: str | None = None,
                  max_tokens: int | None = None) -> EncodedPrompt:
    """Chat-template ``prompt``; over ``max_tokens`` (ids + prefill), cut user text on the left."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": _USER_MARK})
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
    else:
        rendered = (system_prompt + "\n\n" if system_prompt else "") + _USER_MARK
    if rendered.count(_USER_MARK) != 1:
        raise ConfigError("the chat template must place the user message once", got=rendered,
                          field="tokenizer.chat_template", fix="use a standard chat template")
    before, after = rendered.split(_USER_MARK)
    m = _PREFILL.search(after)
    prefill = after[m.start():] if m else ""
    after = after[: m.start()] if m else after
    prefill_ids = tuple(_encode(tokenizer, prefill))
    ids = _encode(tokenizer, before + prompt + after)
    if max_tokens is None or len(ids) + len(prefill_ids) <= max_tokens:
        return EncodedPrompt(tuple(ids), prefill_ids, prefill)
    head, user, tail = _encode(tokenizer, before), _encode(tokenizer, prompt), _encode(
        tokenizer, after)
    room = max_tokens - len(head) - len(tail) - len(prefill_ids)
    if room < 1:
        raise ConfigError("the prompt budget cannot hold the system prompt and template",
                          field="max_tokens", got=(max_tokens, len(head) + len(tail)),
                          fix="raise the prompt/context budget or shorten the system prompt")
    cut = len(user) - room
    logger.warning("prompt of %d tokens exceeds the budget of %d: cutting %d tokens of user text "
                   "from the left (system prompt and template kept)",
                   len(ids) + len(prefill_ids), max_tokens, cut)
    return EncodedPrompt(tuple(head + user[cut:] + tail), prefill_ids, prefill, cut)


# -- sampling --------------------------------------------------------------------------------
def sample_token(logits: Any, temperature: float, top_p: float,
                 generator: Any = None) -> tuple[int, float]:
    """``(token, logprob)``: logprob under ``log_softmax(logits / T)`` (before top-p)."""
    import torch

    logits = logits.detach().float().cpu()
    if temperature == 0:
        logp = torch.log_softmax(logits, -1)
        tok = int(torch.argmax(logp))
        return tok, float(logp[tok])
    logp = torch.log_softmax(logits / temperature, -1)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = (sorted_p.cumsum(0) - sorted_p) < top_p  # the top token is always kept
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    tok = int(torch.multinomial(probs, 1, generator=generator))
    return tok, float(logp[tok])


@dataclass
class Turn:
    """One agent turn: the sampled tokens, their logprobs and why it stopped."""

    ids: list[int]
    logprobs: list[float]
    text: str
    """``decode(ids, skip_special_tokens=True)``."""
    stop: Literal["stop_string", "eos", "length"]


@dataclass
class DecodeSession:
    """A growing token context and its KV cache; new tokens are fed lazily, in one pass."""

    model: Any
    ids: list[int] = field(default_factory=list)
    _cache: Any = None
    _fed: int = 0
    _logits: Any = None

    def extend(self, ids: Sequence[int]) -> None:
        """Append tokens the model did not sample (env text); fed on the next sample."""
        self.ids.extend(int(i) for i in ids)

    def next_logits(self) -> Any:
        """Logits after the last token (feeds any tokens not yet seen)."""
        import torch

        new = self.ids[self._fed:]
        if new:
            device = next(self.model.parameters()).device
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([new], device=device),
                                 past_key_values=self._cache, use_cache=True, logits_to_keep=1)
            self._cache, self._fed, self._logits = out.past_key_values, len(self.ids), \
                out.logits[0, -1]
        if self._logits is None:
            raise ConfigError("a decode session needs at least one token", field="ids", got=[],
                              fix="start it with the encoded prompt")
        return self._logits

    def sample(self, tokenizer: Any, max_new_tokens: int, *, temperature: float, top_p: float,
               stop_strings: Sequence[str] = STOP_STRINGS, eos_ids: Sequence[int] = (),
               generator: Any = None) -> Turn:
        """Sample one turn: stop at an eos id, after a stop string, or at ``max_new_tokens``."""
        turn = TurnBuilder(tokenizer, max_new_tokens, stop_strings, eos_ids)
        while not turn.stopped:
            tok, lp = sample_token(self.next_logits(), temperature, top_p, generator)
            self.ids.append(tok)
            turn.add(tok, lp)
        return turn.finish()


class TurnBuilder:
    """The tokens of one turn as they are sampled, and the rule for when the turn ends.

    A turn stops at an eos id, right after a stop string (checked on the decoded tail,
    so a tag split over several tokens is found), or at ``max_new_tokens``.
    """

    def __init__(self, tokenizer: Any, max_new_tokens: int,
                 stop_strings: Sequence[str] = STOP_STRINGS, eos_ids: Sequence[int] = ()) -> None:
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens
        self.stop_strings, self.eos = tuple(stop_strings), frozenset(eos_ids)
        self.window = max((len(t) for t in self.stop_strings), default=0)  # <= 1 token/char
        self.ids: list[int] = []
        self.logprobs: list[float] = []
        self.stop: Literal["stop_string", "eos", "length"] | None = \
            "length" if max_new_tokens <= 0 else None

    @property
    def stopped(self) -> bool:
        return self.stop is not None

    def add(self, tok: int, logprob: float) -> bool:
        """Record a sampled token; True once the turn is over."""
        self.ids.append(tok)
        self.logprobs.append(logprob)
        tail = self.tokenizer.decode(self.ids[-self.window:], skip_special_tokens=False) \
            if self.window and tok not in self.eos else ""
        if tok in self.eos:
            self.stop = "eos"
        elif tail and any(t in tail for t in self.stop_strings):
            self.stop = "stop_string"
        elif len(self.ids) >= self.max_new_tokens:
            self.stop = "length"
        return self.stopped

    def finish(self) -> Turn:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)
        return Turn(self.ids, self.logprobs, text, self.stop or "length")


class BatchDecodeSession:
    """Several growing token contexts (rows) sharing one padded KV cache.

    The batched form of :class:`DecodeSession` for playing episodes in lockstep: one
    forward pass feeds every live row's unseen tokens (one sampled token, or a whole
    env observation), right-padded to the longest. Pad slots stay in the cache with
    attention mask 0 and do not advance a row's positions, so each row attends to
    exactly its own tokens at their own positions, as it would alone. Finished rows
    are dropped from the cache (:meth:`drop`).
    """

    def __init__(self, model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> None:
        if not rows or any(not r for r in rows):
            raise ConfigError("a batch decode session needs at least one token per row",
                              field="rows", got=[len(r) for r in rows],
                              fix="start every row with its encoded prompt")
        self.model, self.pad_id = model, int(pad_id)
        self.ids: list[list[int]] = [[int(i) for i in r] for r in rows]
        self.live: list[int] = list(range(len(rows)))
        """Rows still in the cache, in cache order."""
        self._fed = [0] * len(rows)
        self._mask: Any = None  # (live rows, cache slots) 1 = real token, 0 = pad
        self._cache: Any = None

    def extend(self, row: int, ids: Sequence[int]) -> None:
        """Append tokens to ``row`` (sampled or env text); fed on the next forward."""
        self.ids[row].extend(int(i) for i in ids)

    def drop(self, rows: Sequence[int]) -> None:
        """Remove finished rows from the cache (their ids stay readable)."""
        import torch

        gone = set(rows)
        keep = [i for i, r in enumerate(self.live) if r not in gone]
        if len(keep) == len(self.live):
            return
        self.live = [self.live[i] for i in keep]
        if self._cache is not None and self.live:
            index = torch.tensor(keep)
            self._cache.batch_select_indices(index)
            self._mask = self._mask[index]

    def next_logits(self) -> dict[int, Any]:
        """Logits after each live row's last token, feeding all unseen tokens in one pass."""
        import torch

        if not self.live:
            return {}
        new = [self.ids[r][self._fed[r]:] for r in self.live]
        width = max(len(n) for n in new)
        if width == 0:
            raise ConfigError("every live row has been fed: sample or extend before asking "
                              "for logits again", field="rows", got=self.live,
                              fix="append the sampled token with extend(row, [token])")
        device = next(self.model.parameters()).device
        chunk = torch.full((len(new), width), self.pad_id, dtype=torch.long)
        chunk_mask = torch.zeros((len(new), width), dtype=torch.long)
        positions = torch.zeros((len(new), width), dtype=torch.long)
        for i, (r, n) in enumerate(zip(self.live, new, strict=True)):
            chunk[i, :len(n)] = torch.tensor(n, dtype=torch.long)
            chunk_mask[i, :len(n)] = 1
            positions[i] = self._fed[r] + torch.arange(width)
        mask = chunk_mask if self._mask is None else torch.cat([self._mask, chunk_mask], 1)
        last = [max(len(n) - 1, 0) for n in new]
        keep = sorted(set(last))
        with torch.no_grad():
            out = self.model(input_ids=chunk.to(device), attention_mask=mask.to(device),
                             position_ids=positions.to(device), past_key_values=self._cache,
                             use_cache=True, logits_to_keep=torch.tensor(keep, device=device))
        self._cache, self._mask = out.past_key_values, mask
        logits: dict[int, Any] = {}
        for i, (r, n) in enumerate(zip(self.live, new, strict=True)):
            self._fed[r] += len(n)
            if n:
                logits[r] = out.logits[i, keep.index(last[i])]
        return logits


def eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """The tokenizer's eos id plus the generation config's (R1 lists one, Qwen2.5 several)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update([gen] if isinstance(gen, int) else (gen or []))
    return tuple(sorted(ids))


@contextlib.contextmanager
def generation_threads(model: Any, requested: int | None) -> Iterator[None]:
    """Run on ``requested`` torch threads (None: 1 for small models), restoring the setting."""
    import torch

    n = requested
    if n is None and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        n = 1  # batch-1 decoding of a tiny model is all overhead: extra threads only contend
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# -- the policy ------------------------------------------------------------------------------
class LLMPolicy:
    """``act(observation) -> action text`` with a causal LM; one episode per ``reset()``.

    The first observation of an episode is the env's prompt; later ones are env
    text, appended to the same assistant sequence. Context over
    ``max_context_tokens`` drops the oldest turns (never the prompt), with a warning.
    """

    def __init__(self, model: Any, tokenizer: Any, config: LLMPolicyConfig | None = None) -> None:
        import torch

        self.config = config or LLMPolicyConfig()
        self.model, self.tokenizer = model, tokenizer
        if self.config.add_protocol_tokens:
            ensure_protocol_tags(tokenizer, model, self.config.protocol_tags)
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.generator = None
        if self.config.seed is not None:
            self.generator = torch.Generator().manual_seed(self.config.seed)
        self.reset()

    @classmethod
    def load(cls, config: LLMPolicyConfig | None = None, **overrides: Any) -> LLMPolicy:
        """Load ``config.model`` locally (see :func:`load_model_and_tokenizer`)."""
        config = dataclasses.replace(config or LLMPolicyConfig(), **overrides)
        model, tokenizer = load_model_and_tokenizer(
            config.model, rope_scaling=config.rope_scaling, dtype=config.dtype,
            device=config.device, protocol_tags=config.protocol_tags,
            add_protocol_tokens=config.add_protocol_tokens)
        model.eval()
        return cls(model, tokenizer, config)

    def reset(self) -> None:
        """Forget the episode's context."""
        self._session: DecodeSession | None = None
        self._head = 0

    def encode_prompt(self, prompt: str, max_tokens: int | None = None) -> EncodedPrompt:
        """The env prompt through the chat template (see :func:`encode_prompt`)."""
        return encode_prompt(self.tokenizer, prompt, system_prompt=self.config.system_prompt,
                             max_tokens=max_tokens)

    def encode_text(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of env text, tokenised exactly as written."""
        return tokenizer_offsets(text, self.tokenizer)

    def start(self, ids: Sequence[int]) -> DecodeSession:
        """A fresh decode session over ``ids`` (the model's train/eval mode is left as is)."""
        return DecodeSession(self.model, [int(i) for i in ids])

    def generate(self, session: DecodeSession, max_new_tokens: int | None = None,
                 generator: Any = None) -> Turn:
        """Sample one turn in ``session`` with this policy's sampling settings."""
        c = self.config
        with generation_threads(self.model, c.num_threads):
            return session.sample(self.tokenizer, max_new_tokens or c.max_new_tokens,
                                  temperature=c.temperature, top_p=c.top_p,
                                  stop_strings=c.stop_strings, eos_ids=self.eos_ids,
                                  generator=generator if generator is not None else
                                  self.generator)

    def act(self, observation: Any) -> str:
        if not isinstance(observation, str):
            raise InvalidAction("LLMPolicy reads text observations",
                                got=type(observation).__name__, fix="use it with a text env")
        c = self.config
        prefix = ""
        if self._session is None:
            enc = self.encode_prompt(observation, c.max_context_tokens - c.max_new_tokens)
            self._session = self.start(enc.ids + enc.prefill_ids)
            self._head, prefix = len(enc.ids) + len(enc.prefill_ids), enc.prefill_text
        else:
            self._session.extend(self.encode_text(observation)[0])
            self._fit_context()
        return prefix + self.generate(self._session).text

    def _fit_context(self) -> None:
        session = self._session
        if session is None:
            return
        c = self.config
        over = len(session.ids) + c.max_new_tokens - c.max_context_tokens
        if over <= 0:
            return
        logger.warning("episode context over %d tokens: dropping the %d oldest tokens after the "
                       "prompt", c.max_context_tokens, over)
        ids = session.ids[: self._head] + session.ids[self._head + over:]
        self._session = self.start(ids)
