"""ToolUse-v0, and user tools in SearchQA-v0, ToolCall-v0 and Reasoning-v0 (issue 16, 1-3)."""

from __future__ import annotations

import json
import time
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.tools import ToolException
from langchain_core.tools import tool as lc_tool

import thinkgym
from thinkgym.envs.common.tool_turns import FaultConfig
from thinkgym.errors import ConfigError, RegistryError, RewardError, VerifierError
from thinkgym.tools import FunctionTool, RetryPolicy

TASKS = [{"prompt": "Shout 'hi', then count the words of 'a b c'.", "answer": "HI 3"},
         {"prompt": "What is 6 times 7?", "answer": "42"}]


@lc_tool
def shout(text: str) -> str:
    """Upper-case the text."""
    if text == "explode":
        raise ToolException("cannot shout that")
    return text.upper()


def count_words(text: str) -> int:
    """Count the words of a text.

    Args:
        text: The text to count.
    """
    return len(text.split())


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def responses(obs: str) -> list[dict[str, Any]]:
    parts = obs.split("<tool_response>")[1:]
    return [json.loads(p.split("</tool_response>")[0]) for p in parts]


def make(**kwargs: Any) -> Any:
    kwargs.setdefault("tasks", TASKS)
    return gym.make("ToolUse-v0", **kwargs)


# -- done-when: a LangChain tool and a plain function, end to end ---------------------------
def test_langchain_tool_and_plain_function_in_tool_use_end_to_end() -> None:
    env = make(tools=[shout, count_words], verifier="exact_match")
    prompt, info = env.reset(seed=0, options={"index": 0})
    assert '"name":"shout"' in prompt
    assert '"name":"count_words"' in prompt
    assert "Count the words of a text." in prompt
    assert "<tool_call>" in prompt
    obs, reward, term, trunc, info = env.step(call("shout", text="hi") +
                                              call("count_words", text="a b c"))
    got = responses(obs)
    assert [r["content"] for r in got] == ["HI", 3]
    assert not term
    assert not trunc
    assert reward == pytest.approx(0.0)
    obs, reward, term, _, info = env.step(f"<answer>{got[0]['content']} {got[1]['content']}"
                                          "</answer>")
    assert term
    assert info["correct"] == 1.0
    assert info["reward_components"]["correctness"]["raw"] == 1.0
    assert info["reward_components"]["format"]["raw"] == 1.0


def test_langchain_tool_and_plain_function_in_search_qa_end_to_end() -> None:
    env = gym.make("SearchQA-v0", split="easy", tools=[shout], extra_tools=[count_words])
    prompt, _ = env.reset(seed=0)
    assert '"name":"shout"' in prompt
    assert '"name":"count_words"' in prompt
    question = env.unwrapped.question
    obs, r, term, _, info = env.step("<think>shout it</think>" + call("shout", text="veltra"))
    assert responses(obs) == [{"name": "shout", "content": "VELTRA"}]
    assert not term
    assert info["action"] == "tool_call"
    assert r == pytest.approx(0.0)
    obs, r, term, _, info = env.step("<think>count</think>" + call("count_words", text="a b"))
    assert responses(obs)[0]["content"] == 2
    obs, r, term, _, info = env.step("<think>look up</think><search>"
                                     f"{question.text}</search>")
    assert "<information>" in obs
    obs, r, term, _, info = env.step(f"<think>done</think><answer>{question.answers[0]}"
                                     "</answer>")
    assert term
    assert info["reward_components"]["exact_match"]["raw"] == 1.0
    assert info["reward_components"]["format"]["raw"] == 1.0  # T(CRT)(CRT)(SIT)A


def test_search_qa_without_tools_is_unchanged() -> None:
    plain = gym.make("SearchQA-v0", split="easy")
    prompt, _ = plain.reset(seed=3)
    assert "tool_call" not in prompt
    _, _, _, _, info = plain.step(call("shout", text="x"))
    assert info["action_error"] == "no <search> or <answer> tag"
    assert "tool_efficiency" not in info["reward_components"]


def test_search_qa_user_tool_named_search_clashes() -> None:
    def search(query: str) -> str:
        """My search."""
        return query

    with pytest.raises(ConfigError, match=r"'search'.*<search> action"):
        gym.make("SearchQA-v0", extra_tools=[search])


# -- mixing tool kinds; tasks from anywhere ------------------------------------------------
def test_names_function_tools_langchain_and_functions_mix() -> None:
    env = make(tools=["calculator", FunctionTool(count_words, name="wc"), shout],
               extra_tools=[count_words]).unwrapped
    assert sorted(env.tools) == ["calculator", "count_words", "shout", "wc"]


def test_tasks_from_jsonl_and_from_a_dataset(tmp_path: Any) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in TASKS) + "\n")
    assert make(tasks=str(path)).unwrapped.tasks == tuple(TASKS)
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(TASKS)
    env = make(tasks=ds)
    _, info = env.reset(seed=0, options={"index": 1})
    assert info["task"] == TASKS[1]


def test_callable_and_registered_verifiers() -> None:
    def close_enough(answer: str, task: dict) -> float:
        return 0.5 if answer.strip() == task["answer"] else 0.0

    env = make(verifier=close_enough)
    env.reset(seed=0, options={"index": 1})
    *_, info = env.step("<answer>42</answer>")
    assert info["correct"] == 0.5
    env = make(verifier="numeric", tasks=[{"prompt": "pi?", "answer": "3.14159",
                                           "abs_tol": 0.01}])
    env.reset(seed=0)
    assert env.step("<answer>3.14</answer>")[4]["correct"] == 1.0


def test_seeded_episodes_are_identical_and_rewards_configurable() -> None:
    a, b = make(), make()
    assert a.reset(seed=5) == b.reset(seed=5)
    env = make(rewards={"format": 0.0, "tokens": 0.0})
    env.reset(seed=0)
    *_, info = env.step("<answer>x</answer>")
    assert info["reward_components"]["format"]["weight"] == 0.0
    assert "tokens" in info["reward_components"]


# -- bad input ----------------------------------------------------------------------------
def test_unknown_tool_name_lists_known_ones_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"tools\[1\].*'calculater'.*did you mean "
                                          r"'calculator'.*Known tools: calculator"):
        make(tools=[count_words, "calculater"])


def test_unsupported_tool_type_says_which_types_are_accepted() -> None:
    with pytest.raises(ConfigError, match=r"tools\[0\].*type int.*LangChain BaseTool"):
        make(tools=[3])
    with pytest.raises(ConfigError, match="must be a list"):
        make(tools="calculator")


def test_untyped_function_and_duplicate_names_are_config_errors() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ConfigError, match="no type annotation"):
        make(tools=[untyped])
    with pytest.raises(ConfigError, match=r"two tools are called 'count_words'.*tools\[0\].*"
                                          r"tools\[1\]"):
        make(tools=[count_words, FunctionTool(count_words)])
    with pytest.raises(ConfigError, match=r"extra_tools.*clashes.*'count_words'"):
        make(tools=[count_words], extra_tools=[count_words])


def test_tasks_missing_a_verifier_field_name_the_index_and_field() -> None:
    with pytest.raises(ConfigError, match=r"tasks\[1\] has no field 'answer'"):
        make(tasks=[{"prompt": "a", "answer": "1"}, {"prompt": "b"}])
    with pytest.raises(ConfigError, match=r"tasks\[0\] has no field 'must_contain'"):
        make(verifier="contains_all")
    with pytest.raises(ConfigError, match=r"tasks\[0\] has no field 'prompt'"):
        make(tasks=[{"question": "a", "answer": "1"}])
    with pytest.raises(ConfigError, match="no such task file"):
        make(tasks="/nonexistent/tasks.jsonl")
    with pytest.raises(RegistryError, match="unknown verifier 'exact_mach'; did you mean "
                                            "'exact_match'"):
        make(verifier="exact_mach")


def test_a_verifier_that_raises_is_a_named_error_not_a_zero() -> None:
    def broken(answer: str, task: dict) -> bool:
        raise KeyError("gold")

    env = make(verifier=broken)
    env.reset(seed=0)
    with pytest.raises(VerifierError, match="verifier 'broken' raised KeyError") as err:
        env.step("<answer>1</answer>")
    assert isinstance(err.value, RewardError)


# -- tool faults (item 3) -----------------------------------------------------------------
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "done"


def raising(x: int) -> int:
    """Always fails."""
    raise RuntimeError("database is on fire")


class Odd:
    def __repr__(self) -> str:
        return "Odd()"


def odd(x: int) -> Any:
    """Returns a non-string, non-JSON object."""
    return {"value": Odd(), "emoji": "\U0001F600", "ctrl": "\x00"}


def huge(n: int) -> str:
    """Returns a huge string."""
    return "x" * n


def test_user_tool_failures_are_observations_and_count_in_the_ledger() -> None:
    env = make(tools=[slow, raising, odd, huge, shout], tool_timeout=0.2,
               max_observation_chars=2048)
    env.reset(seed=0)
    obs, reward, term, trunc, info = env.step(
        call("slow", seconds=5) + call("raising", x=1) + call("odd", x=1)
        + call("huge", n=10**6))
    assert not term
    assert not trunc
    got = responses(obs)
    assert "no answer within 0.2 s" in got[0]["error"]
    assert "RuntimeError: database is on fire" in got[1]["error"]
    assert got[2]["content"]["emoji"] == "\U0001F600"  # escaped in the text, same JSON
    assert got[3]["content"].endswith("[truncated]")
    assert len(obs) <= 2048
    assert env.observation_space.contains(obs)
    comps = info["reward_components"]
    assert comps["tool_failures"]["raw"] == 2.0
    assert comps["tool_efficiency"]["raw"] == -2.0
    assert reward < 0
    obs, *_ = env.step(call("shout", text="explode"))
    assert "cannot shout that" in responses(obs)[0]["error"]


def test_retries_fallbacks_and_injected_faults_apply_to_user_tools() -> None:
    attempts = []

    def flaky(x: int) -> int:
        """Fails twice, then works."""
        attempts.append(x)
        if len(attempts) < 3:
            raise ConnectionError("blip")
        return x

    def backup(x: int) -> int:
        """A backup."""
        return -x

    retried = FunctionTool(flaky, retry=RetryPolicy(max_attempts=3, initial_delay=0.0))
    chain = FunctionTool(raising, name="primary").with_fallbacks([FunctionTool(backup)])
    env = make(tools=[retried, chain, count_words],
               faults={"count_words": FaultConfig(error_rate=1.0)})
    env.reset(seed=0)
    obs, *_, info = env.step(call("flaky", x=7) + call("primary", x=2)
                             + call("count_words", text="a"))
    got = responses(obs)
    assert got[0]["content"] == 7
    assert got[1]["content"] == -2
    assert "HTTP 503" in got[2]["error"]
    assert [c["injected"] for c in info["calls"]] == [False, False, True]
    # Injected faults are not the agent's doing: no tool_efficiency penalty, but logged.
    assert info["reward_components"]["tool_efficiency"]["raw"] == 0.0
    assert info["reward_components"]["tool_failures"]["raw"] == 1.0


# -- the other envs take user tools -------------------------------------------------------
def test_tool_call_extra_tools_and_replacing_the_tool_set() -> None:
    env = gym.make("ToolCall-v0", extra_tools=[count_words], faults={}).unwrapped
    assert "count_words" in env.tools
    assert "calculator" in env.tools
    env.reset(seed=0)
    assert '"name":"count_words"' in env._prompt
    obs, *_ = env.step(call("count_words", text="x y"))
    assert responses(obs)[0]["content"] == 2

    def calculator(expression: str) -> str:
        """My calculator."""
        return "7"

    with pytest.raises(ConfigError, match=r"clashes with the built-in tool 'calculator' of "
                                          r"ToolCall-v0"):
        gym.make("ToolCall-v0", extra_tools=[calculator])
    replaced = gym.make("ToolCall-v0", tools=["search_product", "check_inventory",
                                              "create_order", calculator]).unwrapped
    assert replaced.tools["calculator"].description == "My calculator."
    assert set(replaced.faults) == set(replaced.tools)


def test_reasoning_with_tools_is_multi_turn() -> None:
    env = gym.make("Reasoning-v0", difficulty=1, kinds=("arithmetic",), tools=["calculator"])
    prompt, info = env.reset(seed=0)
    assert '"name":"calculator"' in prompt
    obs, _, term, trunc, step_info = env.step(call("calculator", expression="1 + 1"))
    assert responses(obs) == [{"name": "calculator", "content": 2}]
    assert not term
    assert not trunc
    obs, _r, term, _, step_info = env.step(f"So \\boxed{{{info['answer']}}}")
    assert term
    assert step_info["correct"]
    plain = gym.make("Reasoning-v0", difficulty=1, kinds=("arithmetic",))
    assert plain.reset(seed=0)[0] != prompt  # no tools: the old prompt, one turn
    assert plain.step(call("calculator", expression="1"))[2]


# -- Gymnasium contracts with user tools --------------------------------------------------
def test_check_env_and_vector_envs_with_user_tools() -> None:
    env = make(tools=[shout, count_words])
    check_env(env.unwrapped, skip_render_check=True)
    for mode in ("sync", "async"):
        envs = thinkgym.make_vec("ToolUse-v0", num_envs=2, vectorization_mode=mode,
                                 tools=[shout, count_words], tasks=TASKS)
        try:
            envs.reset(seed=[1, 2])
            obs, rewards, *_ = envs.step([call("shout", text="a"), "<answer>42</answer>"])
            assert responses(obs[0])[0]["content"] == "A"
            assert len(rewards) == 2
        finally:
            envs.close()


_FUZZ_ENV = None


def _fuzz_env() -> Any:
    global _FUZZ_ENV
    if _FUZZ_ENV is None:
        _FUZZ_ENV = make(tools=[shout, count_words, raising, odd, huge], max_turns=3)
    return _FUZZ_ENV


_pieces = st.sampled_from([
    "<tool_call>", "</tool_call>", "<answer>", "</answer>", "<think>", "</think>",
    "<tool_response>", '{"name": "shout", "arguments": {"text": "a"}}',
    '{"name": "count_words", "arguments": {"text": 3}}', '{"name": "nope", "arguments": {}}',
    '{"name": "raising", "arguments": {"x": 1}}', '{"name": "huge", "arguments": {"n": 99999}}',
    "{'name': 'odd', 'arguments': {'x': 1,}}", '{"name": ', "[]", "null", "```json", "\\",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(st.one_of(st.text(max_size=60), st.lists(_pieces, max_size=8).map(
    "".join)), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_fuzzed_actions_never_crash(actions: list[str], seed: int) -> None:
    env = _fuzz_env()
    env.reset(seed=seed)
    for action in actions:
        obs, reward, term, trunc, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float)
        assert "reward_components" in info
        if term or trunc:
            break


def test_plug_in_a_tool_example_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "examples" / "plug_in_a_tool.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    assert out[-3:] == ["city_temperature -> 68.0", "to_celsius -> 20.0",
                        "terminated=True correct=1.0 reward=1.10"]


def test_ctm_as_tool_example_beats_answering_directly() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "examples" / "ctm_as_tool.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=True, timeout=300).stdout.splitlines()
    direct = float(out[-2].split("accuracy")[1].split()[0])
    thinking = float(out[-1].split("accuracy")[1].split()[0])
    assert direct == 0.0
    assert thinking >= 0.5  # 16 bits exactly right: the CTM reads a whole string
