from __future__ import annotations

import dataclasses
import json
import logging

import gymnasium as gym
import pytest

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.llm import load_model_and_tokenizer
from thinkgym.agents.tiny import tiny_model_path
from thinkgym.errors import ConfigError
from thinkgym.training.evaluate import evaluate_policy, summarize_episodes
from thinkgym.training.rollout import Episode, episode_components


@pytest.fixture(scope="module")
def tiny():
    return load_model_and_tokenizer(str(tiny_model_path()))


def test_result_does_not_depend_on_the_batch_size(tiny) -> None:
    model, tok = tiny
    env = gym.make("Reasoning-v0")
    kw = {"temperature": 1.0, "max_new_tokens": 12, "max_completion_tokens": 60, "seed": 3}
    one = evaluate_policy(model, tok, env, range(5), batch_size=1, **kw)
    four = evaluate_policy(model, tok, env, range(5), batch_size=4, **kw)
    again = evaluate_policy(model, tok, env, range(5), batch_size=4, **kw)
    assert one.episodes == four.episodes == 5
    assert one.mean_completion_tokens == four.mean_completion_tokens
    assert one.mean_reward == pytest.approx(four.mean_reward)
    assert len(one.answers) == 5
    assert one.answers == four.answers
    assert dataclasses.replace(four, seconds=0.0) == dataclasses.replace(again, seconds=0.0)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_batch_size_is_a_config_error(tiny, bad) -> None:
    model, tok = tiny
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate_policy(model, tok, gym.make("Reasoning-v0"), [0], batch_size=bad)


def _episode(infos: list[dict], *, reward: float = 0.0, terminated: bool = True,
             completion_ids: list[int] | None = None, env_mask: list[int] | None = None,
             context_truncated: bool = False, seed: int | None = None) -> Episode:
    ids = completion_ids or []
    return Episode(prompt_ids=[1], completion_ids=ids, logprobs=[0.0] * len(ids),
                   env_mask=env_mask or [0] * len(ids), reward=reward,
                   reward_components=episode_components(infos), text="", env_spans=[],
                   seed=seed, turns=len(infos), terminated=terminated,
                   context_truncated=context_truncated, infos=infos)


def _played(env, seed: int, script) -> Episode:
    """An episode of the real ``env`` whose agent writes ``script(reset_info)`` turn by turn."""
    _, reset_info = env.reset(seed=seed)
    infos, rewards, terminated, truncated = [], [], False, False
    for action in script(reset_info):
        _, reward, terminated, truncated, info = env.step(action)
        infos.append(info)
        rewards.append(reward)
        if terminated or truncated:
            break
    return dataclasses.replace(_episode(infos, reward=sum(rewards), terminated=terminated,
                                        seed=seed), truncated=truncated)


def _components(**raw) -> dict:
    return {"reward_components": {k: {"raw": v, "weight": 1.0, "weighted": 0.0, "gated": False}
                                  for k, v in raw.items()}}


def _script_play(monkeypatch, make):
    """``evaluate_policy`` plays ``make(env, seed, policy)`` instead of sampling the model."""
    def play_batch(envs, policy, *, seeds, **kwargs):
        return [make(env, seed, policy) for env, seed in zip(envs, seeds, strict=True)]

    monkeypatch.setattr("thinkgym.training.rollout.play_batch", play_batch)


def test_wrong_boxed_answer_is_not_a_success_on_reasoning(tiny, monkeypatch) -> None:
    model, tok = tiny
    wrong = "<think>guess</think> \\boxed{123456789}"
    _script_play(monkeypatch, lambda env, seed, _: _played(env, seed, lambda info: [wrong]))
    r = evaluate_policy(model, tok, gym.make("Reasoning-v0"), range(3), batch_size=2)
    assert r.mean_reward > 0  # the format reward: "return > 0" would call these successes
    assert (r.success, r.success_metric) == (0.0, "correctness")
    assert r.format_rate == 1.0
    assert r.format_failures == 0


def test_success_is_correctness_and_answers_are_the_agents(monkeypatch) -> None:
    env = gym.make("Reasoning-v0")
    right = _played(env, 0, lambda info: [f"\\boxed{{{info['answer']}}}"])
    wrong = _played(env, 1, lambda info: ["\\boxed{123456789}"])
    refs = (env.reset(seed=0)[1]["answer"], env.reset(seed=1)[1]["answer"])
    r = summarize_episodes([right, wrong])
    assert r.success == 0.5
    assert r.answers == (refs[0], "123456789")  # the agent's boxed answers, not the references
    assert r.references == ((refs[0],), (refs[1],))
    assert r.answers[1] != r.references[1][0]


def test_answers_come_from_the_last_info_and_never_the_reference() -> None:
    def answers(*infos: dict) -> tuple:
        return summarize_episodes([_episode([{"x": 0}, info]) for info in infos]).answers

    assert answers({"agent_answer": "Lisbon", "answer": "Porto"},  # env-reported answer wins
                   {"agent_answer": None, "boxed_answer": "3", "answer": "4"},
                   {"boxed_answer": "3", "answer": "4"},  # Reasoning-v0: answer is the ref
                   {"answer": "Lisbon", "gold_answers": ["Lisbon"]},  # SearchQA-v0
                   {"answer": "4"},  # unknown layout: it may be a reference, so no answer
                   {"agent_answer": 3}) == ("Lisbon", None, "3", "Lisbon", None, None)
    assert summarize_episodes([_episode([])]).answers == (None,)


def test_format_failures_count_episodes_without_a_parseable_action(caplog) -> None:
    reasoning, tools = gym.make("Reasoning-v0"), gym.make("ToolCall-v0", max_turns=2)
    call = '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>'
    episodes = [
        _played(reasoning, 0, lambda info: ["The answer is 5."]),  # no box: failure
        _played(reasoning, 1, lambda info: ["\\boxed{5}"]),
        _played(tools, 0, lambda info: ["hello", "hello"]),  # never a call or answer: failure
        _played(tools, 1, lambda info: ["hello", "<answer>x</answer>"]),
        _played(tools, 2, lambda info: [call, "hello"]),  # a call that parsed (then failed)
        _episode([{"action": "invalid", "action_error": "no <search> or <answer> tag"}] * 2,
                 terminated=False),  # SearchQA-v0 layout: failure
        _episode([{"action": "search", "action_error": "search budget exhausted"}],
                 terminated=False),  # over budget, but parsed
    ]
    assert [ep.terminated or ep.truncated for ep in episodes[:5]] == [True] * 5
    with caplog.at_level(logging.WARNING, logger="thinkgym.training.evaluate"):
        r = summarize_episodes(episodes)
    assert r.format_failures == 3
    assert "3 of 7 episodes never produced a parseable action" in caplog.text


def test_lenient_and_success_metric_follow_the_env_components() -> None:
    with_lenient = [_episode([_components(exact_match=1.0, lenient_match=1.0)], reward=1.0),
                    _episode([_components(exact_match=0.0, lenient_match=None)], reward=0.2),
                    _episode([_components(exact_match=0.0, lenient_match=1.0)], reward=0.2)]
    r = summarize_episodes(with_lenient)
    assert (r.success_metric, r.lenient) == ("exact_match", pytest.approx(2 / 3))
    assert r.success == pytest.approx(1 / 3)
    plain = summarize_episodes([_episode([_components(format=1.0)], reward=0.1),
                                _episode([_components(format=0.0)], reward=-0.1)])
    assert (plain.success_metric, plain.success, plain.lenient) == ("positive_return", 0.5, None)


def test_cut_off_counts_budget_and_length_capped_last_turns(tiny, monkeypatch) -> None:
    model, tok = tiny
    info = [{"boxed_answer": None, "answer": "5"}]
    episodes = [
        _episode(info, completion_ids=[7, 8], env_mask=[0, 1]),
        _episode(info, completion_ids=[7, 8], env_mask=[0, 1]),
        _episode(info, completion_ids=[7, 8], env_mask=[0, 1]),
        _episode(info, completion_ids=[7], env_mask=[0], context_truncated=True),
    ]
    # the sampler's reason for ending each last turn, as the rollout records it
    for ep, stop in zip(episodes, ("stop_string", "length", "eos", None), strict=True):
        ep.last_stop = stop
    cap = 4
    _script_play(monkeypatch, lambda env, seed, _: episodes[seed])
    r = evaluate_policy(model, tok, gym.make("Reasoning-v0"), range(4), max_new_tokens=cap)
    assert r.cut_off == 0.5
    assert summarize_episodes(episodes).cut_off == 0.25  # context_truncated only


def test_tiny_model_replies_are_cut_at_a_small_cap(tiny) -> None:
    model, tok = tiny
    r = evaluate_policy(model, tok, gym.make("Reasoning-v0"), range(2), temperature=0.0,
                        max_new_tokens=3, max_completion_tokens=60)
    assert r.cut_off == 1.0
    assert r.format_failures == 2  # three tokens hold no boxed answer
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert {"success", "success_metric", "lenient", "format_failures", "cut_off", "answers",
            "references"} <= set(d)
