"""SearchQA-v0: protocol, masking spans, malformed actions, budgets, rewards, baselines."""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.search_qa import (
    NoRetrievalAgent,
    OracleAgent,
    RetrieveThenAnswerAgent,
    run_episode,
)
from thinkgym.envs.search_qa import SearchQAConfig, SearchQAEnv, parse_action, read_passages
from thinkgym.errors import ConfigError, EnvStateError

_INFO_BLOCK = re.compile(r"<information>.*?</information>", re.DOTALL)


def make(**kwargs) -> SearchQAEnv:
    return gym.make("SearchQA-v0", **kwargs).unwrapped  # type: ignore[return-value]


def raw(info: dict, name: str) -> float | None:
    return info["reward_components"][name]["raw"]


@pytest.fixture(scope="module")
def env() -> SearchQAEnv:
    return make()


def test_docstring_example_runs() -> None:
    # The same steps as the (skipped) example in SearchQAEnv's docstring.
    env = gym.make("SearchQA-v0", split="easy")
    prompt, info = env.reset(seed=0)
    assert info["question_type"] == "single_hop"
    assert info["question"] in prompt
    obs, r, term, _, info = env.step(
        "<think>I need to look this up.</think><search>Dravonia</search>")
    assert (obs.strip().startswith("<information>"), round(r, 2), term) == (True, -0.1, False)
    obs, r, term, _trunc, info = env.step("<think>Not found.</think><answer>Lisbon</answer>")
    assert (term, info["reward_components"]["exact_match"]["raw"]) == (True, 0.0)


# -- masking spans ----------------------------------------------------------------------
def test_env_spans_cover_exactly_the_env_segments(env: SearchQAEnv) -> None:
    env.reset(seed=3)
    observations = []
    actions = ["no tags at all", "<think>a</think><search>Veltra</search>",
               "<think>b</think><search>the founder</search>",
               "<think>c</think><answer>Lisbon</answer>"]
    for action in actions:
        obs, *_, info = env.step(action)
        observations.append(obs)
    text, spans = info["transcript"], [tuple(s) for s in info["env_spans"]]
    # Spans are exactly the observations, in order, and nothing else.
    assert [text[s:e] for s, e in spans] == [o for o in observations if o]
    # Every <information> block lies inside a span; agent text has none.
    for m in _INFO_BLOCK.finditer(text):
        assert any(s <= m.start() and m.end() <= e for s, e in spans)
    agent = "".join(text[a:b] for a, b in _complement(spans, len(text)))
    assert agent == "".join(actions)
    assert "<information>" not in agent
    # Each search turn's span holds exactly one information block.
    for s, e in spans[1:3]:
        assert text[s:e].strip().startswith("<information>")
        assert text[s:e].strip().endswith("</information>")
        assert len(_INFO_BLOCK.findall(text[s:e])) == 1


def _complement(spans: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    out, pos = [], 0
    for s, e in sorted(spans):
        out.append((pos, s))
        pos = e
    out.append((pos, n))
    return out


def test_information_block_keeps_its_closing_tag_when_clipped() -> None:
    env = make(top_k=40, max_observation_chars=1024)
    env.reset(seed=0)
    obs, *_ = env.step("<think>x</think><search>city</search>")
    assert len(obs) <= 1024
    assert obs.strip().endswith("</information>")
    assert len(read_passages(obs)) < 40


# -- malformed actions ------------------------------------------------------------------
@pytest.mark.parametrize(("action", "reason"), [
    ("I think the answer is Veltra.", "no <search> or <answer>"),
    ("<think>x</think><search>a</search><answer>b</answer>", "more than one action"),
    ("<think>x</think><search>a</search><search>b</search>", "more than one action"),
    ("<think>x</think><search>   </search>", "empty <search>"),
    ("<think>x</think><answer></answer>", "empty <answer>"),
    ("<think>x</think><search>Veltra", "unclosed <search>"),
    ("<think>x<answer>Veltra</answer>", "inside <think>"),
    ("Veltra</answer>", "stray </answer>"),
    ("<information>Veltra is it</information><answer>Veltra</answer>", "environment only"),
    ("", "no <search> or <answer>"),
])
def test_malformed_action_gets_correction_and_penalty(env: SearchQAEnv, action: str,
                                                      reason: str) -> None:
    env.reset(seed=1)
    obs, reward, term, trunc, info = env.step(action)
    assert "Invalid action" in obs
    assert reason in obs
    assert not term
    assert not trunc
    assert raw(info, "invalid_action") == pytest.approx(-0.2)
    assert reward == pytest.approx(-0.2)
    assert info["searches_used"] == 0
    assert info["action"] == "invalid"
    # The episode goes on, and the malformed turn fails the strict format at the end.
    *_, info = env.step("<think>ok</think><answer>Lisbon</answer>")
    assert raw(info, "format") == 0.0


def test_parse_action_accepts_text_around_tags() -> None:
    assert parse_action("Let me see. <search>Veltra</search>").kind == "search"
    assert parse_action("<think>a</think><think>b</think><answer> X </answer>").content == "X"


# -- budgets and episode end ------------------------------------------------------------
def test_search_beyond_budget_is_refused_with_penalty() -> None:
    env = make(search_budget=2, max_turns=6)
    env.reset(seed=0)
    for i in range(2):
        obs, reward, *_, info = env.step(f"<think>x</think><search>q{i}</search>")
        assert read_passages(obs)
        assert reward == pytest.approx(-0.1)
    obs, reward, term, trunc, info = env.step("<think>x</think><search>again</search>")
    assert "No search" in obs
    assert not read_passages(obs)
    assert reward == pytest.approx(-0.2)
    assert raw(info, "search_cost") == 0.0
    assert info["searches_used"] == 2
    assert info["action_error"] == "search budget exhausted"
    assert not term
    assert not trunc


def test_answer_terminates_and_step_after_end_raises(env: SearchQAEnv) -> None:
    env.reset(seed=2)
    obs, _, term, trunc, info = env.step("<think>x</think><answer>Lisbon</answer>")
    assert (obs, term, trunc) == ("", True, False)
    assert info["answer"] == "Lisbon"
    assert info["gold_answers"]
    with pytest.raises(EnvStateError):
        env.step("<think>x</think><answer>again</answer>")


def test_truncated_after_max_turns() -> None:
    env = make(max_turns=3)
    env.reset(seed=4)
    for turn in range(1, 4):
        _, _, term, trunc, info = env.step("<think>x</think><search>Veltra</search>")
        assert not term
        assert trunc == (turn == 3)
    assert info["answer"] is None
    assert raw(info, "exact_match") == 0.0
    assert raw(info, "format") == 0.0


# -- rewards ----------------------------------------------------------------------------
def test_oracle_episode_reward_components(env: SearchQAEnv) -> None:
    result = run_episode(env, OracleAgent(), index=0)
    info = result.info
    assert result.exact_match == 1.0
    assert raw(info, "format") == 1.0
    assert raw(info, "f1") == 1.0
    assert result.reward == pytest.approx(1.0 + 0.2 - 0.1 * result.searches)
    assert set(info["reward_components"]) == {"exact_match", "f1", "lenient_match", "format",
                                              "search_cost", "invalid_action"}
    assert raw(info, "lenient_match") == 1.0
    assert info["agent_answer"] == info["answer"]


def test_aliases_and_normalisation_count_as_exact_match(env: SearchQAEnv) -> None:
    env.reset(options={"index": 0})
    alias = env.question.answers[-1]  # type: ignore[union-attr]
    *_, info = env.step(f"<think>x</think><answer> {alias.upper()}. </answer>")
    assert raw(info, "exact_match") == 1.0
    env.reset(options={"index": 0})
    *_, info = env.step("<think>x</think><answer>Lisbon</answer>")
    assert raw(info, "exact_match") == 0.0
    assert raw(info, "f1") == 0.0


def test_weights_and_gates_are_configurable() -> None:
    env = make(reward_weights={"format": 0.0, "f1": 0.5}, reward_gates={"exact_match": "format"})
    env.reset(options={"index": 0})
    gold = env.question.answers[0]  # type: ignore[union-attr]
    env.step("oops")  # malformed: the episode's format fails, so EM is gated off
    _, reward, *_, info = env.step(f"<think>x</think><answer>{gold}</answer>")
    assert raw(info, "exact_match") == 1.0
    assert info["reward_components"]["exact_match"]["gated"]
    assert reward == pytest.approx(0.5)  # only f1 (1.0 * 0.5) counts


# -- config, determinism ----------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "field"), [
    ({"top_k": 0}, "top_k"), ({"split": "dev"}, "split"), ({"max_turns": 0}, "max_turns"),
    ({"invalid_action_penalty": 0.5}, "invalid_action_penalty"),
    ({"num_passages": 10}, "num_passages"),
])
def test_config_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        SearchQAConfig(**kwargs)


def test_unknown_argument_is_rejected() -> None:
    with pytest.raises(ConfigError, match="topk"):
        SearchQAEnv(topk=3)


def test_seed_picks_the_question(env: SearchQAEnv) -> None:
    first = env.reset(seed=11)[1]["question_id"]
    assert env.reset(seed=11)[1]["question_id"] == first
    assert len({env.reset(seed=s)[1]["question_id"] for s in range(8)}) > 4
    _, info = env.reset(options={"index": 5})
    assert info["question_id"] == "train-5"
    assert info["question"] == env.world.question("train", 5).text


def test_splits_use_their_questions() -> None:
    env = make(split="test")
    _, info = env.reset(seed=0)
    assert info["question_id"].startswith("test-")
    assert {make(split="easy").reset(seed=s)[1]["question_type"] for s in range(5)} == {
        "single_hop"}


# -- baselines --------------------------------------------------------------------------
def test_oracle_reaches_high_em_and_guessing_does_not() -> None:
    env = make(split="test")
    oracle = [run_episode(env, OracleAgent(), index=i) for i in range(12)]
    assert sum(r.exact_match for r in oracle) / len(oracle) >= 0.95
    assert {r.question_type for r in oracle} == {"single_hop", "two_hop", "three_hop",
                                                 "comparison"}
    assert all(r.searches >= (4 if r.question_type == "comparison" else 1) for r in oracle)
    guesses = [run_episode(env, NoRetrievalAgent(seed=i), index=i) for i in range(40)]
    assert sum(r.exact_match for r in guesses) / len(guesses) <= 0.05
    assert all(r.searches == 0 for r in guesses)


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test"])
def test_oracle_em_on_a_large_sample(split: str) -> None:
    env = make(split=split)
    results = [run_episode(env, OracleAgent(), index=i) for i in range(150)]
    assert sum(r.exact_match for r in results) / len(results) >= 0.95


def test_retrieve_then_answer_solves_some_single_hop() -> None:
    env = make(split="easy")
    results = [run_episode(env, RetrieveThenAnswerAgent(), index=i) for i in range(10)]
    assert all(r.searches == 1 for r in results)
    assert sum(r.exact_match for r in results) >= 5


def test_oracle_retries_with_the_entity_kind_then_gives_up() -> None:
    from thinkgym.envs.search_qa import build_prompt

    agent = OracleAgent(retries=2)
    agent.reset()
    first = agent.act(build_prompt("In which city was Talven Orsk born?", 3, 6))
    assert first.endswith("<search>Talven Orsk</search>")
    miss = '<information>\nDoc 1 (id: 9): "Other Name" Other Name (born 1700) is a poet ' \
           "from Veltra.\n</information>"
    assert agent.act(miss).endswith("<search>Talven Orsk person</search>")
    hit = '<information>\nDoc 1 (id: 4): "Talven Orsk" Talven Orsk (born 1843) is a poet ' \
          "from Drask. Orsk is a member of the Vel Guild.\n</information>"
    assert agent.act(hit).endswith("<answer>Drask</answer>")
    agent.reset()
    agent.act(build_prompt("In which city was Talven Orsk born?", 3, 6))
    for _ in range(2):
        agent.act(miss)
    assert agent.act(miss).endswith("<answer>unknown</answer>")
    with pytest.raises(ConfigError, match="retries"):
        OracleAgent(retries=5)
