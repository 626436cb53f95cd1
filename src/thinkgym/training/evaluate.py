"""Score a model on fixed env seeds, playing episodes exactly as the GRPO rollout does.

:func:`evaluate_policy` plays one episode per seed with
:func:`thinkgym.training.rollout.play_batch` (same prompt encoding, prefill,
budgets and stop tags as training, several episodes per forward pass) and
:func:`summarize_episodes` scores them:

* ``success`` is correctness where the env has it: the mean of the first env reward
  component present among :data:`SUCCESS_COMPONENTS` (``exact_match`` on SearchQA-v0,
  ``correctness`` on Reasoning-v0, ``task_completion`` on ToolCall-v0); only an env
  with none of them falls back to the fraction of episodes with a positive return
  (``success_metric`` names what was used). A well-formatted wrong answer earns format
  reward, so a positive return is not a success where correctness is measured;
* ``lenient``: the mean of the env's weight-0 ``lenient_match`` component, if it logs one;
* ``answers`` are the agent's own final answers and ``references`` the env's, per seed;
* ``format_failures``: episodes in which the agent never produced a parseable action
  (logged at WARNING level);
* ``cut_off``: the fraction of episodes that ended at a token budget.

Episode ``i`` samples from a ``torch.Generator`` derived from ``(seed, i)``, so a
call is reproducible.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SUCCESS_COMPONENTS", "EvalResult", "evaluate_policy", "never_parsed",
           "summarize_episodes"]

logger = logging.getLogger(__name__)

SUCCESS_COMPONENTS = ("exact_match", "correctness", "task_completion")
"""Correctness components, in order of preference (SearchQA-v0, Reasoning-v0, ToolCall-v0)."""

POSITIVE_RETURN = "positive_return"
"""``success_metric`` of an env with none of :data:`SUCCESS_COMPONENTS`."""

# Keys under which an env reports the answer the agent gave (never the reference):
# the common one, then Reasoning-v0's and ReasoningGym-v0's from before it existed.
_AGENT_ANSWER_KEYS = ("agent_answer", "boxed_answer", "extracted_answer")


@dataclass(frozen=True)
class EvalResult:
    """Success rate, mean return and diagnostics of a model on fixed seeds."""

    success: float
    """Mean of the ``success_metric`` component (or fraction of positive returns), in [0, 1]."""
    mean_reward: float
    """Mean episode return (the env's weighted reward sum)."""
    episodes: int
    """Episodes played (one per seed)."""
    mean_turns: float
    """Mean agent turns per episode."""
    mean_completion_tokens: float
    """Mean length of the assistant sequence (agent + env tokens)."""
    format_rate: float | None = None
    """Mean of the env's ``format`` component (0 where it did not apply), if it has one."""
    seconds: float = 0.0
    """Wall time of the evaluation."""
    components: dict[str, float] = field(default_factory=dict)
    """Mean of every env reward component over the episodes where it applied."""
    answers: tuple[str | None, ...] = ()
    """Each episode's final answer as the agent gave it (the last step's
    ``info["agent_answer"]``; before an env reports that, Reasoning-v0's ``boxed_answer`` or
    SearchQA-v0's ``answer``), None where there is none, in seed order."""
    references: tuple[tuple[str, ...], ...] = ()
    """Each episode's reference answers (Reasoning-v0 ``info["answer"]``, SearchQA-v0
    ``info["gold_answers"]``, ToolCall-v0 the task's answer; empty if unknown), in seed order."""
    success_metric: str = POSITIVE_RETURN
    """The component ``success`` averages (one of :data:`SUCCESS_COMPONENTS`), or
    ``"positive_return"`` for an env with none of them."""
    lenient: float | None = None
    """Mean of the env's weight-0 ``lenient_match`` component (0 where it did not apply), or
    None if the env does not log it."""
    format_failures: int = 0
    """Episodes in which the agent never produced a parseable action (see
    :func:`summarize_episodes`)."""
    cut_off: float = 0.0
    """Fraction of episodes that ended at a token budget: the completion budget ran out
    (``Episode.context_truncated``) or the last turn stopped at its length cap."""

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types (tuples become lists), e.g. for ``--json``."""
        out = dataclasses.asdict(self)
        out["answers"] = list(self.answers)
        out["references"] = [list(r) for r in self.references]
        return out


def evaluate_policy(model: Any, tokenizer: Any, env: Any, seeds: Sequence[int], *,
                    temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 512,
                    max_prompt_tokens: int = 2048, max_completion_tokens: int = 1024,
                    system_prompt: str | None = None, seed: int = 0, batch_size: int = 16,
                    progress: bool = False) -> EvalResult:
    """Play one episode per seed with ``model`` (temperature 0: greedy) and score it.

    Episodes are played ``batch_size`` at a time in lockstep
    (:func:`~thinkgym.training.rollout.play_batch`, on copies of ``env``); episode
    ``i`` samples from its own generator seeded by ``(seed, i)``, so a result does
    not depend on the batch size beyond floating-point noise. ``max_new_tokens`` caps
    each agent turn (512 fits the replies of real instruct models; the tiny model is
    trained with 64) and ``max_completion_tokens`` the whole multi-turn episode.
    Scored by :func:`summarize_episodes`.
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
    cut = [ep.context_truncated or ep.last_stop == "length" for ep in episodes]
    return summarize_episodes(episodes, seconds=seconds, cut_off=cut)


def summarize_episodes(episodes: Sequence[Any], *, seconds: float = 0.0,
                       cut_off: Sequence[bool] | None = None) -> EvalResult:
    """Score played :class:`~thinkgym.training.rollout.Episode` objects (see the module doc).

    ``cut_off`` flags each episode that ended at a token budget; by default an episode's
    ``context_truncated`` (:func:`evaluate_policy` also flags a last turn that stopped
    at its length cap, ``Episode.last_stop == "length"``).

    An episode is a format failure when none of its steps held a parseable action. A
    step's action parsed when the env reports an answer it read from it
    (``agent_answer``, Reasoning-v0's ``boxed_answer``, ReasoningGym-v0's
    ``extracted_answer`` not None); on SearchQA-v0 when ``info["action"]`` is not
    ``"invalid"`` (``action_error`` alone is not used: a search over the budget parsed,
    and carries one); on ToolCall-v0 when the step executed a call (``info["calls"]``:
    its JSON parsed, even if the tool then failed) or ended the episode (it terminates
    only on an ``<answer>``). Reasoning-v0 thus fails exactly when there is no single
    boxed answer. An episode without any step counts as a failure.
    """
    episodes = list(episodes)
    n = max(1, len(episodes))
    cut = [ep.context_truncated for ep in episodes] if cut_off is None else list(cut_off)
    if len(cut) != len(episodes):
        from thinkgym.errors import ConfigError

        raise ConfigError("one cut_off flag per episode", field="cut_off",
                          got=(len(cut), len(episodes)), fix="pass len(episodes) flags or None")
    comps: dict[str, list[float]] = {}
    logged: set[str] = set()  # components the env reports, applicable or not
    for ep in episodes:
        for name, value in ep.reward_components.items():
            logged.add(name)
            if value is not None:
                comps.setdefault(name, []).append(value)

    def mean_of(name: str) -> float:  # an episode where it never applied scores 0
        return math.fsum(ep.reward_components.get(name) or 0.0 for ep in episodes) / n

    metric = next((name for name in SUCCESS_COMPONENTS if name in logged), POSITIVE_RETURN)
    success = sum(ep.reward > 0 for ep in episodes) / n if metric == POSITIVE_RETURN \
        else mean_of(metric)
    failures = sum(never_parsed(ep) for ep in episodes)
    if failures:
        logger.warning("%d of %d episodes never produced a parseable action", failures,
                       len(episodes))
    return EvalResult(
        success=success, mean_reward=math.fsum(ep.reward for ep in episodes) / n,
        episodes=len(episodes), mean_turns=sum(ep.turns for ep in episodes) / n,
        mean_completion_tokens=sum(len(ep.completion_ids) for ep in episodes) / n,
        format_rate=mean_of("format") if "format" in logged else None, seconds=seconds,
        components={k: math.fsum(v) / len(v) for k, v in comps.items()},
        answers=tuple(_answer(ep) for ep in episodes),
        references=tuple(_references(ep) for ep in episodes), success_metric=metric,
        lenient=mean_of("lenient_match") if "lenient_match" in logged else None,
        format_failures=failures, cut_off=sum(map(bool, cut)) / n)


def _last_info(episode: Any) -> Mapping[str, Any]:
    return episode.infos[-1] if episode.infos else {}


def _answer(episode: Any) -> str | None:
    """The agent's own final answer; never the reference (Reasoning-v0's ``answer``)."""
    info = _last_info(episode)
    key = next((k for k in _AGENT_ANSWER_KEYS if k in info), None)
    # SearchQA-v0 puts the agent's answer span under "answer", beside "gold_answers".
    answer = info[key] if key else info.get("answer") if "gold_answers" in info else None
    return answer if isinstance(answer, str) else None


def _references(episode: Any) -> tuple[str, ...]:
    """The env's reference answers for ``episode`` (empty if it reports none)."""
    info = _last_info(episode)
    if "gold_answers" in info:
        return tuple(str(a) for a in info["gold_answers"] or ())
    task = info.get("task")  # ToolCall-v0
    if "answer" in info and any(k in info for k in _AGENT_ANSWER_KEYS):
        ref = info["answer"]  # the agent's answer has its own key: "answer" is the reference
    else:
        ref = task.get("answer") if isinstance(task, Mapping) else None
    return (str(ref),) if ref not in (None, "") else ()


def never_parsed(episode: Any) -> bool:
    """No step of ``episode`` held a parseable action (rule: :func:`summarize_episodes`)."""
    last = len(episode.infos) - 1
    return not any(_step_parsed(info, i == last and episode.terminated)
                   for i, info in enumerate(episode.infos))


def _step_parsed(info: Mapping[str, Any], ended_episode: bool) -> bool:
    if any(info.get(k) is not None for k in _AGENT_ANSWER_KEYS):
        return True
    if "action" in info:  # SearchQA-v0
        return info["action"] != "invalid"
    if "calls" in info:  # ToolCall-v0
        return bool(info["calls"]) or ended_episode
    return False

