from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.llm import load_model_and_tokenizer
from thinkgym.agents.tiny import tiny_model_path
from thinkgym.errors import ConfigError
from thinkgym.training.evaluate import _answer, evaluate_policy


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


def test_answers_come_from_the_last_info() -> None:
    from types import SimpleNamespace

    assert _answer(SimpleNamespace(infos=[{"answer": "a"}, {"answer": "Lisbon"}])) == "Lisbon"
    assert _answer(SimpleNamespace(infos=[{"answer": "a"}, {}])) is None
    assert _answer(SimpleNamespace(infos=[{"answer": 3}])) is None
    assert _answer(SimpleNamespace(infos=[])) is None
