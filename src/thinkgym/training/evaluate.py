"""Score a model on fixed env seeds, playing episodes exactly as the GRPO rollout does.

:func:`evaluate_policy` plays one episode per seed with
:func:`thinkgym.training.rollout.play_batch` (same prompt encoding, prefill,
budgets and stop tags as training, several episodes per forward pass) and
reports the success rate — the mean of the env's ``exact_match`` component when
it has one, else the fraction of episodes with a positive return — and the mean
return. Episode ``i`` samples from a ``torch.Generator`` derived from
``(seed, i)``, so a call is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EvalResult", "evaluate_policy"]


@dataclass(frozen=True)
class EvalResult:
    """Success rate and mean return of a model on fixed seeds."""

    success: float
    """Mean ``exact_match`` (or fraction of positive returns), in [0, 1]."""
    mean_reward: float
    """Mean episode return (the env's weighted reward sum)."""
    episodes: int
    """Episodes played (one per seed)."""
    mean_turns: float
    """Mean agent turns per episode."""
    mean_completion_tokens: float
    """Mean length of the assistant sequence (agent + env tokens)."""
    format_rate: float | None = None
    """Mean of the env's ``format`` component, if it has one."""
    seconds: float = 0.0
    """Wall time of the evaluation."""
    components: dict[str, float] = field(default_factory=dict)
    """Mean of every env reward component over the episodes where it applied."""
    answers: tuple[str | None, ...] = ()
    """Each episode's final ``info["answer"]`` (None where the env reports none), in seed order."""


def evaluate_policy(model: Any, tokenizer: Any, env: Any, seeds: Sequence[int], *,
                    temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 64,
                    max_prompt_tokens: int = 2048, max_completion_tokens: int = 1024,
                    system_prompt: str | None = None, seed: int = 0, batch_size: int = 16,
                    progress: bool = False) -> EvalResult:
    """Play one episode per seed with ``model`` (temperature 0: greedy) and score it.

    Episodes are played ``batch_size`` at a time in lockstep
    (:func:`~thinkgym.training.rollout.play_batch`, on copies of ``env``); episode
    ``i`` samples from its own generator seeded by ``(seed, i)``, so a result does
    not depend on the batch size beyond floating-point noise.
    """
    import time

    import torch
    from tqdm.auto import tqdm

    from thinkgym.agents.llm import LLMPolicy, LLMPolicyConfig
    from thinkgym.errors import ConfigError
    from thinkgym.training.rollout import clone_env, play_batch

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("must be a positive int", field="batch_size", got=batch_size,
                          fix="pass e.g. batch_size=16 (1 plays one episode at a time)")

    policy = LLMPolicy(model, tokenizer, LLMPolicyConfig(
        model="<in memory>", temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens,
        max_context_tokens=max_prompt_tokens + max_completion_tokens,
        system_prompt=system_prompt))
    seeds = list(seeds)
    envs = [env] + [clone_env(env) for _ in range(min(batch_size, len(seeds)) - 1)]
    start = time.perf_counter()
    episodes = []
    with tqdm(total=len(seeds), desc="evaluate", disable=not progress, leave=False) as bar:
        for at in range(0, len(seeds), batch_size):
            chunk = seeds[at:at + batch_size]
            gens = [torch.Generator().manual_seed(
                int(np.random.SeedSequence([seed, at + i]).generate_state(1)[0]))
                for i in range(len(chunk))]
            episodes += play_batch(envs[:len(chunk)], policy, seeds=chunk, generators=gens,
                                   max_prompt_tokens=max_prompt_tokens,
                                   max_completion_tokens=max_completion_tokens,
                                   max_new_tokens=max_new_tokens)
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    n = max(1, len(episodes))
    comps: dict[str, list[float]] = {}
    for ep in episodes:
        for name, value in ep.reward_components.items():
            if value is not None:
                comps.setdefault(name, []).append(value)
    means = {k: math.fsum(v) / len(v) for k, v in comps.items()}
    if "exact_match" in comps:
        success = math.fsum(ep.reward_components.get("exact_match") or 0.0
                            for ep in episodes) / n
    else:
        success = sum(ep.reward > 0 for ep in episodes) / n
    fmt = [ep.reward_components.get("format") or 0.0 for ep in episodes] if "format" in comps \
        else None
    return EvalResult(
        success=success, mean_reward=math.fsum(ep.reward for ep in episodes) / n,
        episodes=len(episodes), mean_turns=sum(ep.turns for ep in episodes) / n,
        mean_completion_tokens=sum(len(ep.completion_ids) for ep in episodes) / n,
        format_rate=math.fsum(fmt) / n if fmt is not None else None, seconds=seconds,
        components=means, answers=tuple(_answer(ep) for ep in episodes))


def _answer(episode: Any) -> str | None:
    answer = episode.infos[-1].get("answer") if episode.infos else None
    return answer if isinstance(answer, str) else None
