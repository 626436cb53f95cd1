from __future__ import annotations

import logging
import math
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import pytest

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.llm import LLMPolicy, LLMPolicyConfig, load_model_and_tokenizer
from thinkgym.agents.tiny import tiny_model_path
from thinkgym.envs.common.text_env import TextEnv
from thinkgym.errors import ConfigError, EnvStateError
from thinkgym.protocols import RewardInput
from thinkgym.rewards import Composer, FunctionComponent
from thinkgym.training.rollout import (
    clone_env,
    episode_components,
    play_batch,
    play_episode,
    play_group,
)


def _chars(inp: RewardInput) -> float:
    return len(set(inp.completion)) / 10


def _thought(inp: RewardInput) -> float:
    return 1.0 if "<think>" in inp.completion else 0.0


class ToyEnv(TextEnv):
    """Each turn: any text; the env answers with an <information> block; ends after max_turns.

    Rewards: ``chars`` (distinct characters / 10, weight 1), ``bonus`` (0.5, gated by
    ``thought``: only turns containing ``<think>``), ``thought`` logged at weight 0.
    """

    def __init__(self, obs_chars: int = 20, max_turns: int = 2, final_text: str = "",
                 honest: bool = True) -> None:
        super().__init__(max_observation_chars=100_000, max_action_chars=100_000)
        self.obs_chars, self.max_turns, self.final_text = obs_chars, max_turns, final_text
        self.honest = honest
        self.composer = Composer(
            {FunctionComponent("chars", _chars): 1.0,
             FunctionComponent("bonus", lambda inp: 1.0): 0.5,
             FunctionComponent("thought", _thought): 0.0}, gates={"bonus": "thought"})

    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        self.turn = 0
        word = ("apple", "river", "stone", "cloud")[int(self.np_random.integers(4))]
        return f"Toy task about the {word}. Write anything.\n", {"word": word}

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self.turn += 1
        result = self.composer.score(RewardInput(completion=action), turn=self.turn - 1)
        done = self.turn >= self.max_turns
        text = self.final_text if done else (
            f"<information>note {self.turn}: " + "zeta " * (self.obs_chars // 5) + "</information>")
        obs = (self.emit(text) if text else "") if self.honest else text
        return obs, result.total, done, False, {"reward_components": result.components}


class ScriptedLM:
    """Stand-in causal LM sampling a fixed token script, one token per forward call."""

    def __init__(self, script: list[int], vocab: int) -> None:
        import torch

        self.script, self.vocab, self.calls = list(script), vocab, 0
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.training = False

    def parameters(self):
        return iter([self.weight])

    def eval(self):
        return self

    def __call__(self, input_ids, past_key_values=None, use_cache=True, logits_to_keep=1):
        import torch

        logits = torch.zeros(1, 1, self.vocab)
        logits[0, -1, self.script[min(self.calls, len(self.script) - 1)]] = 50.0
        self.calls += 1
        return SimpleNamespace(logits=logits, past_key_values=None)


@pytest.fixture(scope="module")
def tiny():
    return load_model_and_tokenizer(str(tiny_model_path()))


@pytest.fixture
def policy(tiny):
    model, tok = tiny
    return LLMPolicy(model, tok, LLMPolicyConfig(model="tiny", max_new_tokens=10,
                                                 temperature=1.0, top_p=1.0))


def gen(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def test_episode_layout_masks_logprobs_and_transcript(policy) -> None:
    tok = policy.tokenizer
    env = ToyEnv(max_turns=3)
    ep = play_episode(env, policy, seed=0, generator=gen(0), max_completion_tokens=500)
    n = len(ep.completion_ids)
    assert len(ep.logprobs) == len(ep.env_mask) == n
    assert ep.turns == 3
    assert ep.terminated
    assert not ep.context_truncated
    # prefill "<think>\n" opens the completion, forced (mask 0); a final eos closes it
    prefill = tok.encode("<think>\n", add_special_tokens=False)
    assert ep.completion_ids[: len(prefill)] == prefill
    assert ep.env_mask[: len(prefill)] == [0] * len(prefill)
    assert ep.completion_ids[-1] == tok.eos_token_id
    assert ep.env_mask[-1] == 0
    assert ep.agent_tokens == 3 * 10  # three full turns of sampled tokens
    assert all(lp == 0.0 for lp, m in zip(ep.logprobs, ep.env_mask, strict=True) if not m)
    assert all(lp < 0.0 for lp, m in zip(ep.logprobs, ep.env_mask, strict=True) if m)
    # decoding the completion reproduces the env's transcript exactly
    assert ep.decode_matches
    assert ep.text == ep.infos[-1]["transcript"]
    assert tok.decode(ep.prompt_ids).endswith("Write anything.\n<｜Assistant｜>")


def test_env_text_is_tokenised_as_in_the_transcript_and_masked(policy) -> None:
    tok = policy.tokenizer
    ep = play_episode(ToyEnv(max_turns=3), policy, seed=1, generator=gen(1))
    assert len(ep.env_spans) == 2
    masked_runs, run = [], []
    for i, m in enumerate(ep.env_mask):
        if m == 0:
            run.append(ep.completion_ids[i])
        elif run:
            masked_runs.append(run)
            run = []
    # runs of masked tokens: [prefill, env 1, env 2], then the trailing eos
    env_runs = masked_runs[1:]
    for (s, e), ids in zip(ep.env_spans, env_runs, strict=True):
        assert ids == tok.encode(ep.text[s:e], add_special_tokens=False)
        assert ep.text[s:e].startswith("<information>note")


def test_logprobs_are_the_models_at_the_sampling_temperature(tiny) -> None:
    import torch

    model, tok = tiny
    policy = LLMPolicy(model, tok, LLMPolicyConfig(model="tiny", max_new_tokens=6,
                                                   temperature=0.7, top_p=0.9))
    ep = play_episode(ToyEnv(max_turns=2), policy, seed=2, generator=gen(2))
    ids = torch.tensor([ep.prompt_ids + ep.completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(ep.prompt_ids) - 1:-1]
    ref = torch.log_softmax(logits / 0.7, -1).gather(
        1, torch.tensor(ep.completion_ids)[:, None])[:, 0]
    for i, m in enumerate(ep.env_mask):
        if m:
            assert ep.logprobs[i] == pytest.approx(float(ref[i]), abs=1e-4)


def test_components_sum_to_the_episode_return_with_gates(policy) -> None:
    env = ToyEnv(max_turns=3)
    ep = play_episode(env, policy, seed=3, generator=gen(3))
    weights = env.composer.weights
    total = math.fsum(weights[n] * v for n, v in ep.reward_components.items() if v is not None)
    assert total == pytest.approx(ep.reward, abs=1e-12)
    # the bonus is gated open only on the first turn (the prefill's <think>)
    assert ep.reward_components["bonus"] == 1.0
    assert ep.reward_components["thought"] == 1.0
    assert episode_components([{}, {"reward_components": {"x": {"raw": None, "gated": False}}}]) \
        == {"x": None}


def test_group_shares_the_env_seed_and_samples_differently(policy) -> None:
    env = ToyEnv()
    group = play_group(env, policy, seed=7, n=3, generators=[gen(0), gen(1), gen(2)])
    assert len({tuple(e.prompt_ids) for e in group}) == 1
    assert len({tuple(e.completion_ids) for e in group}) == 3
    again = play_episode(env, policy, seed=7, generator=gen(1))
    assert again.completion_ids == group[1].completion_ids
    assert again.reward == group[1].reward


def _same_episode(a, b) -> None:
    assert a.completion_ids == b.completion_ids
    assert a.env_mask == b.env_mask
    assert a.prompt_ids == b.prompt_ids
    assert a.reward == b.reward
    assert a.turns == b.turns
    assert (a.terminated, a.truncated, a.context_truncated) == \
        (b.terminated, b.truncated, b.context_truncated)
    assert a.text == b.text
    assert b.decode_matches
    assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4


@pytest.mark.parametrize("kwargs", [
    {},  # episodes of different lengths: rows finish at different forward passes
    {"obs_chars": 400, "max_turns": 4},  # one row's env text is cut by the budget
])
def test_batched_episodes_are_the_sequential_ones(policy, kwargs) -> None:
    seeds = [0, 1, 2, 3, 4]
    make = lambda s: ToyEnv(**{"max_turns": 1 + s % 3, **kwargs})  # noqa: E731
    envs = [make(s) for s in seeds]
    budget = 120 if kwargs else 1024
    alone = [play_episode(make(s), policy, seed=s, generator=gen(s),
                          max_completion_tokens=budget) for s in seeds]
    batched = play_batch(envs, policy, seeds=seeds, generators=[gen(s) for s in seeds],
                         max_completion_tokens=budget)
    for a, b in zip(alone, batched, strict=True):
        _same_episode(a, b)
    if kwargs:
        assert all(b.context_truncated for b in batched)
    else:
        assert len({len(b.completion_ids) for b in batched}) > 1


def test_batched_group_is_the_sequential_group(policy) -> None:
    env = ToyEnv(max_turns=3)
    gens = lambda: [gen(0), gen(1), gen(2)]  # noqa: E731
    seq = play_group(env, policy, seed=7, n=3, generators=gens())
    bat = play_group(env, policy, seed=7, n=3, generators=gens(),
                     envs=[env, clone_env(env), clone_env(env)])
    for a, b in zip(seq, bat, strict=True):
        _same_episode(a, b)


def test_batched_play_on_a_real_env_matches(policy) -> None:
    env = gym.make("Reasoning-v0")
    envs = [env] + [clone_env(env) for _ in range(3)]
    assert envs[1] is not env
    assert envs[1].spec == env.spec
    alone = [play_episode(env, policy, seed=s, generator=gen(s), max_completion_tokens=200)
             for s in range(4)]
    batched = play_batch(envs, policy, seeds=range(4), generators=[gen(s) for s in range(4)],
                         max_completion_tokens=200)
    for a, b in zip(alone, batched, strict=True):
        _same_episode(a, b)


def test_batched_play_needs_distinct_envs_and_matching_lengths(policy) -> None:
    env = ToyEnv()
    with pytest.raises(ConfigError, match="distinct env"):
        play_batch([env, env], policy, seeds=[0, 1])
    with pytest.raises(ConfigError, match="one generator"):
        play_batch([ToyEnv(), ToyEnv()], policy, seeds=[0, 1], generators=[gen(0)])
    with pytest.raises(ConfigError, match="one env per episode"):
        play_group(env, policy, seed=0, n=3, envs=[ToyEnv()])


def test_oversized_observation_is_truncated_with_a_warning(policy, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="thinkgym.training.rollout"):
        ep = play_episode(ToyEnv(obs_chars=20_000, max_turns=5), policy, seed=0,
                          generator=gen(0), max_completion_tokens=300)
    assert "does not fit" in caplog.text
    assert ep.context_truncated
    assert not ep.terminated
    assert len(ep.completion_ids) == 300
    assert ep.env_mask[-1] == 0  # ends inside the cut env text
    assert ep.decode_matches  # against what the model saw (the cut text)


def test_completion_budget_ends_the_episode_without_eos(policy) -> None:
    ep = play_episode(ToyEnv(max_turns=50, obs_chars=5), policy, seed=0, generator=gen(0),
                      max_completion_tokens=64)
    assert ep.context_truncated
    assert len(ep.completion_ids) <= 64
    assert ep.completion_ids[-1] != policy.tokenizer.eos_token_id


def test_overlong_prompt_is_cut_with_a_warning(policy, caplog) -> None:
    class LongPrompt(ToyEnv):
        def _reset_episode(self):
            prompt, info = super()._reset_episode()
            return "context " * 400 + prompt, info

    with caplog.at_level(logging.WARNING, logger="thinkgym.agents.llm"):
        ep = play_episode(LongPrompt(), policy, seed=0, generator=gen(0), max_prompt_tokens=64)
    assert "exceeds the budget" in caplog.text
    assert len(ep.prompt_ids) + 2 <= 64
    assert ep.prompt_truncated_tokens > 0
    assert policy.tokenizer.decode(ep.prompt_ids).endswith("Write anything.\n<｜Assistant｜>")


def test_env_breaking_the_transcript_contract_is_an_error(policy) -> None:
    with pytest.raises(EnvStateError, match="transcript"):
        play_episode(ToyEnv(honest=False, max_turns=3), policy, seed=0, generator=gen(0))


def test_final_env_text_is_kept_and_masked(policy) -> None:
    ep = play_episode(ToyEnv(max_turns=1, final_text="<information>bye</information>"), policy,
                      seed=0, generator=gen(0))
    assert ep.text.endswith("<information>bye</information>")
    assert ep.decode_matches
    assert ep.env_mask[-1] == 0


def test_whole_episode_is_one_assistant_turn_so_no_think_is_lost(tiny) -> None:
    _, tok = tiny
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    turn1, turn2 = "first plan</think>\n<search> q </search>", "<think>\nsecond plan</think>\n" \
        "<answer> x </answer>"
    lm = ScriptedLM(enc(turn1) + enc(turn2), len(tok))
    policy = LLMPolicy(lm, tok, LLMPolicyConfig(model="scripted", max_new_tokens=40))
    ep = play_episode(ToyEnv(max_turns=2), policy, seed=0)
    assert ep.env_mask.count(1) == len(enc(turn1)) + len(enc(turn2))
    full = tok.decode(ep.prompt_ids + ep.completion_ids)
    assert "first plan" in full
    assert "second plan" in full
    # re-rendering the same episode as chat messages loses the first turn's reasoning
    first_env = ep.text[ep.env_spans[0][0]:ep.env_spans[0][1]]
    as_chat = tok.apply_chat_template(
        [{"role": "user", "content": "Toy task"},
         {"role": "assistant", "content": "<think>\n" + turn1},
         {"role": "user", "content": first_env},
         {"role": "assistant", "content": turn2}], tokenize=False)
    assert "first plan" not in as_chat


REAL_TEXT_ENVS = {"Reasoning-v0": {}, "ToolCall-v0": {}, "SearchQA-v0": {"num_passages": 300}}


@pytest.mark.parametrize("env_id", REAL_TEXT_ENVS)
def test_real_envs_play_with_the_tiny_model(env_id, policy) -> None:
    if env_id not in gym.registry:
        pytest.skip(f"{env_id} is not registered yet")
    env = gym.make(env_id, **REAL_TEXT_ENVS[env_id])
    ep = play_episode(env, policy, seed=0, generator=gen(0), max_prompt_tokens=2048,
                      max_completion_tokens=160)
    assert ep.turns >= 1
    assert ep.decode_matches
    assert len(ep.completion_ids) <= 160
    for s, e in ep.env_spans:
        assert ep.text[s:e]  # env text sits where the env says it does
    weights = env.unwrapped.composer.weights
    total = math.fsum(weights[n] * v for n, v in ep.reward_components.items() if v is not None)
    assert total == pytest.approx(ep.reward, abs=1e-9)
