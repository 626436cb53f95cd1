"""One multi-turn text-env episode as a single assistant sequence: token ids, env mask, logprobs.

The R1-Distill chat template strips earlier ``<think>`` blocks from assistant
turns, so an episode is never re-rendered as chat messages: the prompt is
templated once and everything after it — the agent's turns and the env's text
(retrieved passages, tool responses, corrective messages) — is one assistant
sequence, the ``completion`` GRPO trains on.

* agent tokens are the tokens the policy sampled (never re-tokenised), with their
  logprobs and ``env_mask = 1``;
* env text (what ``step`` returned) is tokenised exactly as it appears in the
  transcript, fed to the model's KV cache in one pass, with ``env_mask = 0`` and
  logprob 0; the env's ``info["env_spans"]`` are checked to cover it;
* the template's assistant prefill (R1: ``<think>\\n``) opens the completion with
  ``env_mask = 0`` (forced, not sampled) and is prefixed to the first action, so
  the env sees the whole ``<think>`` block;
* when the env ends the episode an eos token is appended (``env_mask = 0``), so
  TRL counts the sequence as finished; an episode cut by the token budget ends
  without one;
* ``decode(completion_ids, skip_special_tokens=True)`` must equal the transcript
  (prefill + actions + env text): checked, with a warning on any mismatch.

:func:`play_batch` plays several episodes (a GRPO group, or evaluation seeds) in
lockstep on separate env instances: one batched forward pass per sampled token
through a padded KV cache (:class:`~thinkgym.agents.llm.BatchDecodeSession`),
giving the same episodes as :func:`play_episode` with the same generators.

Budgets: the prompt is cut to ``max_prompt_tokens`` by
:func:`thinkgym.agents.llm.encode_prompt`; the completion never exceeds
``max_completion_tokens``. Env text that does not fit is truncated with a warning
and the episode ends there (``context_truncated``) — never a crash.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkgym.agents.llm import (
    BatchDecodeSession,
    LLMPolicy,
    TurnBuilder,
    generation_threads,
    sample_token,
)
from thinkgym.envs.common.text_env import TextEnv
from thinkgym.errors import ConfigError, EnvStateError
from thinkgym.rewards.masking import span_token_mask

__all__ = ["Episode", "clone_env", "episode_components", "play_batch", "play_episode", "play_group"]

logger = logging.getLogger(__name__)


@dataclass
class Episode:
    """A played episode, ready for GRPO (``prompt_ids`` + ``completion_ids`` + masks)."""

    prompt_ids: list[int]
    """Chat-templated prompt, up to the assistant prefill."""
    completion_ids: list[int]
    """The whole assistant sequence: prefill, agent tokens, env tokens, final eos."""
    logprobs: list[float]
    """Sampling logprob of each agent token; 0.0 for env and forced tokens."""
    env_mask: list[int]
    """1 for tokens the policy sampled (trained), 0 for env and forced tokens."""
    reward: float
    """Episode return: the exact sum of the env's step rewards."""
    reward_components: dict[str, float | None]
    """Per component, the sum over turns of its raw value where its gate was open (None if
    never applicable): ``sum(weight * value)`` over components equals ``reward``."""
    text: str
    """``decode(completion_ids, skip_special_tokens=True)``."""
    env_spans: list[tuple[int, int]]
    """Character spans of env-written text inside ``text`` (the env's ``info["env_spans"]``)."""
    seed: int | None
    """Env seed of the episode."""
    turns: int = 0
    """Agent turns played."""
    terminated: bool = False
    """The env terminated the episode."""
    truncated: bool = False
    """The env truncated the episode (its own budget)."""
    context_truncated: bool = False
    """The token budget ran out (env text cut or no room for another turn)."""
    last_stop: str | None = None
    """Why the last agent turn stopped: ``"stop_string"``, ``"eos"`` or ``"length"`` (its
    token cap); None before any turn, and for rendered (not sampled) episodes."""
    prompt_truncated_tokens: int = 0
    """Prompt tokens cut from the left to fit ``max_prompt_tokens``."""
    decode_matches: bool = True
    """``text`` equals the env's transcript (prefill included)."""
    infos: list[dict[str, Any]] = field(default_factory=list)
    """The env's ``info`` of every step."""

    @property
    def agent_tokens(self) -> int:
        """Number of sampled tokens (the ones that get loss)."""
        return sum(self.env_mask)


def clone_env(env: Any) -> Any:
    """A separate instance of ``env``: ``gym.make`` of its spec, else a deep copy.

    ``gym.make`` shares what the env caches per process (SearchQA-v0's world and
    retrieval index). Wrappers added by hand after ``gym.make`` are not in the spec and
    are not reproduced: play such envs one at a time (``batched_rollout=False``).
    """
    import copy

    import gymnasium as gym

    spec = getattr(env, "spec", None)
    return gym.make(spec) if spec is not None else copy.deepcopy(env)


def episode_components(infos: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Sum of each component's raw value over turns where it applied and its gate was open."""
    values: dict[str, list[float]] = {}
    for info in infos:
        for name, comp in (info.get("reward_components") or {}).items():
            acc = values.setdefault(name, [])
            if comp.get("raw") is not None:
                acc.append(0.0 if comp.get("gated") else float(comp["raw"]))
    return {n: (math.fsum(v) if v else None) for n, v in values.items()}


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _check_spans(obs_offsets: list[tuple[int, int]], start: int,
                 spans: Sequence[Sequence[int]]) -> None:
    shifted = [(a + start, b + start) for a, b in obs_offsets]
    if any(span_token_mask(shifted, spans)):
        logger.warning("env text at %d is not inside info['env_spans'] (a TextEnv contract "
                       "violation); it stays masked", start)


class _Recorder:
    """Builds an :class:`Episode`: completion tokens, masks, and the two texts to check.

    ``transcript`` is what the env's transcript must be; ``seen`` is what the model
    saw (they differ only when env text was cut to fit the budget).
    """

    def __init__(self, ep: Episode, policy: LLMPolicy, session: Any, prefill: str,
                 budget: int) -> None:
        self.ep, self.policy, self.session, self.budget = ep, policy, session, budget
        self.transcript = self.seen = prefill
        self.clipped = False  # the env cut an action to its max_action_chars

    @property
    def room(self) -> int:
        return self.budget - len(self.ep.completion_ids)

    def add_agent(self, turn: Any) -> None:
        self.ep.completion_ids += turn.ids
        self.ep.logprobs += turn.logprobs
        self.ep.env_mask += [1] * len(turn.ids)
        self.transcript += turn.text
        self.seen += turn.text

    def add_env(self, ids: list[int]) -> None:
        self.ep.completion_ids += ids
        self.ep.logprobs += [0.0] * len(ids)
        self.ep.env_mask += [0] * len(ids)
        self.session.extend(ids)

    def add_observation(self, obs: str, info: Mapping[str, Any], done: bool) -> None:
        self.clipped = self.clipped or bool(info.get("action_truncated"))
        if obs:
            ids, offsets = self.policy.encode_text(obs)
            if not self.clipped:
                _check_spans(offsets, len(self.transcript), info.get("env_spans", ()))
            self.transcript += obs
            if len(ids) > self.room or (len(ids) == self.room and not done):
                # room == 0: the agent's own turn used up the budget; nothing to warn about
                log = logger.warning if self.room else logger.debug
                log("env text of %d tokens does not fit the %d tokens left of the completion "
                    "budget: truncated, episode ended", len(ids), self.room)
                self.ep.context_truncated = True
                ids = ids[: self.room]
                self.seen += self.policy.tokenizer.decode(ids, skip_special_tokens=True,
                                                          clean_up_tokenization_spaces=False)
            else:
                self.seen += obs
            self.add_env(ids)
        if not self.clipped and info.get("transcript", self.transcript) != self.transcript:
            raise EnvStateError("the env's transcript is not its actions and observations in "
                                "order", got=info["transcript"][-200:],
                                fix="return only the new env text from step() and record it "
                                "with TextEnv.emit (see thinkgym.envs.common.text_env)")

    def close(self) -> None:
        """Append eos (masked) so TRL sees a finished sequence, if there is room."""
        eos = self.policy.tokenizer.eos_token_id
        if eos is not None and self.room > 0 and self.ep.completion_ids[-1:] != [eos]:
            self.add_env([eos])


class _Run:
    """One episode being played: env, recorder, and what the next turn may use."""

    def __init__(self, env: Any, policy: LLMPolicy, seed: int | None, max_prompt_tokens: int,
                 max_completion_tokens: int, per_turn: int) -> None:
        if not isinstance(getattr(env, "unwrapped", env), TextEnv):
            raise ConfigError("play_episode needs a thinkgym TextEnv", field="env",
                              got=type(env).__name__,
                              fix="use SearchQA-v0, ToolCall-v0, Reasoning-v0")
        if max_completion_tokens < 1 or max_prompt_tokens < 2:
            raise ConfigError("token budgets must be positive", field="max_completion_tokens",
                              got=(max_prompt_tokens, max_completion_tokens),
                              fix="pass e.g. max_prompt_tokens=2048, max_completion_tokens=1024")
        self.env, self.policy, self.per_turn = env, policy, per_turn
        prompt, _ = env.reset(seed=seed)
        enc = policy.encode_prompt(prompt, max_prompt_tokens)
        n = len(enc.prefill_ids)
        self.ep = Episode(
            prompt_ids=list(enc.ids), completion_ids=list(enc.prefill_ids), logprobs=[0.0] * n,
            env_mask=[0] * n, reward=0.0, reward_components={}, text="", env_spans=[],
            seed=seed, prompt_truncated_tokens=enc.truncated_tokens)
        self.context = list(enc.ids) + list(enc.prefill_ids)
        self.prefill = self.prefix = enc.prefill_text
        self.budget = max_completion_tokens
        self.rewards: list[float] = []
        self.rec: _Recorder | None = None
        self.done = False

    def attach(self, session: Any) -> None:
        """Record into ``session`` (anything with ``extend(ids)``) from now on."""
        self.rec = _Recorder(self.ep, self.policy, session, self.prefill, self.budget)

    def turn_limit(self) -> int:
        """Tokens the next turn may sample; 0 (and the episode marked done) when none fit."""
        assert self.rec is not None
        if not self.done and self.rec.room <= 0:
            self.ep.context_truncated, self.done = True, True
        return 0 if self.done else min(self.per_turn, self.rec.room)

    def step(self, turn: Any) -> None:
        """Record the agent's turn, step the env with it and record the observation."""
        assert self.rec is not None
        ep, rec = self.ep, self.rec
        rec.add_agent(turn)
        ep.last_stop = turn.stop
        obs, reward, ep.terminated, ep.truncated, info = self.env.step(self.prefix + turn.text)
        self.prefix = ""
        ep.turns += 1
        self.rewards.append(reward)
        ep.infos.append(info)
        rec.add_observation(obs, info, ep.terminated or ep.truncated)
        if ep.terminated or ep.truncated:
            rec.close()
        self.done = ep.context_truncated or ep.terminated or ep.truncated

    def finish(self) -> Episode:
        assert self.rec is not None
        ep = self.ep
        ep.reward = math.fsum(self.rewards)
        ep.reward_components = episode_components(ep.infos)
        ep.env_spans = [(int(a), int(b)) for a, b in
                        (ep.infos[-1].get("env_spans", ()) if ep.infos else ())]
        _check_decode(ep, self.policy.tokenizer, self.rec.seen)
        return ep


class _Row:
    """One row of a :class:`BatchDecodeSession`, seen as a session with ``extend(ids)``."""

    def __init__(self, session: BatchDecodeSession, row: int) -> None:
        self.session, self.row = session, row

    def extend(self, ids: Sequence[int]) -> None:
        self.session.extend(self.row, ids)


def play_episode(
    env: Any, policy: LLMPolicy, *, seed: int | None = None, generator: Any = None,
    max_prompt_tokens: int = 2048, max_completion_tokens: int = 1024,
    max_new_tokens: int | None = None,
) -> Episode:
    """Play one episode of a :class:`TextEnv` with ``policy``; see the module docstring."""
    run = _Run(env, policy, seed, max_prompt_tokens, max_completion_tokens,
               max_new_tokens or policy.config.max_new_tokens)
    session = policy.start(run.context)
    run.attach(session)
    with _eval_mode(policy.model):
        while limit := run.turn_limit():
            run.step(policy.generate(session, limit, generator))
    return run.finish()


def play_batch(
    envs: Sequence[Any], policy: LLMPolicy, *, seeds: Sequence[int | None],
    generators: Sequence[Any] | None = None, max_prompt_tokens: int = 2048,
    max_completion_tokens: int = 1024, max_new_tokens: int | None = None,
) -> list[Episode]:
    """Episode ``i`` on ``envs[i]`` from ``seeds[i]``, all played in lockstep.

    Each forward pass of the model advances every unfinished episode by one sampled
    token (or feeds its new env text), through one :class:`BatchDecodeSession`:
    the same episodes as :func:`play_episode` with the same generators, up to
    floating-point differences between batched and single-row forward passes, for a
    fraction of the time on small models. The envs must be distinct objects.
    """
    n = len(envs)
    if len(seeds) != n or len({id(e) for e in envs}) != n:
        raise ConfigError("one distinct env and one seed per episode", field="envs",
                          got=(n, len({id(e) for e in envs}), len(seeds)),
                          fix="pass n separate env instances (e.g. gym.make n times)")
    gens = list(generators) if generators is not None else [None] * n
    if len(gens) != n:
        raise ConfigError("one generator per episode", field="generators", got=len(gens),
                          fix=f"pass {n} generators or None")
    if n == 0:
        return []
    per_turn = max_new_tokens or policy.config.max_new_tokens
    runs = [_Run(e, policy, s, max_prompt_tokens, max_completion_tokens, per_turn)
            for e, s in zip(envs, seeds, strict=True)]
    pad = policy.tokenizer.pad_token_id
    session = BatchDecodeSession(policy.model, [r.context for r in runs],
                                 pad if pad is not None else 0)
    c = policy.config

    def new_turn(limit: int) -> TurnBuilder:
        return TurnBuilder(policy.tokenizer, limit, c.stop_strings, policy.eos_ids)

    turns: dict[int, TurnBuilder] = {}
    for i, run in enumerate(runs):
        run.attach(_Row(session, i))
        if limit := run.turn_limit():
            turns[i] = new_turn(limit)
    session.drop([i for i in range(n) if i not in turns])
    with _eval_mode(policy.model), generation_threads(policy.model, c.num_threads):
        while turns:
            logits = session.next_logits()
            ended = []
            for i, turn in list(turns.items()):
                tok, lp = sample_token(logits[i], c.temperature, c.top_p,
                                       gens[i] if gens[i] is not None else policy.generator)
                session.extend(i, [tok])
                if not turn.add(tok, lp):
                    continue
                runs[i].step(turn.finish())
                if limit := runs[i].turn_limit():
                    turns[i] = new_turn(limit)
                else:
                    del turns[i]
                    ended.append(i)
            session.drop(ended)
    return [run.finish() for run in runs]


def _check_decode(ep: Episode, tokenizer: Any, seen: str) -> None:
    ep.text = tokenizer.decode(ep.completion_ids, skip_special_tokens=True,
                               clean_up_tokenization_spaces=False)
    ep.decode_matches = ep.text == seen
    if not ep.decode_matches:
        at = next((i for i, (a, b) in enumerate(zip(ep.text, seen, strict=False)) if a != b),
                  min(len(ep.text), len(seen)))
        logger.warning("decoded completion differs from the transcript at character %d "
                       "(%r vs %r): the tokenizer does not round-trip this text", at,
                       ep.text[at:at + 20], seen[at:at + 20])


def play_group(
    env: Any, policy: LLMPolicy, *, seed: int | None, n: int,
    generators: Sequence[Any] | None = None, envs: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[Episode]:
    """``n`` episodes from the same env seed (a GRPO group), each with its own generator.

    With ``envs`` (``n`` distinct instances of the env) the group is played in
    lockstep by :func:`play_batch`; otherwise one episode after another on ``env``.
    """
    if generators is not None and len(generators) != n:
        raise ConfigError("one generator per episode", field="generators",
                          got=len(generators), fix=f"pass {n} generators or None")
    if envs is not None:
        if len(envs) != n:
            raise ConfigError("one env per episode", field="envs", got=len(envs),
                              fix=f"pass {n} env instances or None")
        return play_batch(envs, policy, seeds=[seed] * n, generators=generators, **kwargs)
    gens = list(generators) if generators is not None else [None] * n
    return [play_episode(env, policy, seed=seed, generator=g, **kwargs) for g in gens]
