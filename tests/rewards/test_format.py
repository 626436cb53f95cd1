from __future__ import annotations

import pytest

from thinkgym.errors import ConfigError, RegistryError
from thinkgym.protocols import RewardInput
from thinkgym.rewards import (
    FORMAT_PROTOCOLS,
    FormatReward,
    JsonValidity,
    TagProtocol,
    check_format,
)

CALL = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'


@pytest.mark.parametrize("text", [
    "<think>plan</think><answer>Paris</answer>",
    "<think>a</think>\n<search>capital of France</search>\n<information>Paris is ...</information>"
    "\n<think>b</think>\n<answer>Paris</answer>\n",
    "<think>a</think><search>q1</search><information>d1</information>"
    "<think>b</think><search>q2</search><information></information>"
    "<think>c</think><answer>x</answer>",
])
def test_search_protocol_accepts(text: str) -> None:
    assert check_format(text, "search").ok


@pytest.mark.parametrize(("text", "reason"), [
    ("<answer>Paris</answer>", "tag order"),                                 # no think
    ("<think>a</think>Paris", "text outside"),                              # bare answer
    ("<think>a</think><answer>Paris", "unclosed"),                          # unclosed
    ("<think>a<answer>P</answer></think><answer>P</answer>", "nested"),   # nested
    ("<think>a</think></think><answer>P</answer>", "stray"),               # stray close
    ("<think>a</think><answer> </answer>", "empty <answer>"),              # empty answer
    ("<think>a</think><answer>P</answer><answer>Q</answer>", "tag order"),  # two answers
    ("<think>a</think><search>q</search><answer>P</answer>", "tag order"),  # no information
    ("<think>a</think><answer>P</answer><think>b</think>", "tag order"),    # trailing think
])
def test_search_protocol_rejects(text: str, reason: str) -> None:
    check = check_format(text, "search")
    assert not check.ok
    assert any(word in check.reason for word in reason.split()), check.reason


def test_mid_episode_turn_pattern() -> None:
    assert check_format("<think>a</think><search>q</search>", "search", final=False).ok
    assert check_format("<think>a</think><search>q</search><information>d</information>",
                        "search", final=False).ok
    assert not check_format("<think>a</think>", "search", final=False).ok
    # a finished episode must end in an answer
    assert not check_format("<think>a</think><search>q</search>", "search").ok


def test_tool_protocol_and_json_inside_tool_call() -> None:
    good = f"<think>add</think>{CALL}<tool_response>3</tool_response><answer>3</answer>"
    assert check_format(good, "tool").ok
    assert check_format(f"{CALL}<tool_response>3</tool_response><answer>3</answer>", "tool").ok
    bad_json = ("<tool_call>{name: add}</tool_call><tool_response>e</tool_response>"
                "<answer>3</answer>")
    assert check_format(bad_json, "tool").reason == "tool_call is not valid JSON"
    no_name = '<tool_call>{"arguments": {}}</tool_call><tool_response>e</tool_response>'
    assert "name" in check_format(no_name + "<answer>3</answer>", "tool").reason
    args_list = '<tool_call>{"name": "f", "arguments": [1]}</tool_call>'
    assert not check_format(args_list + "<tool_response>e</tool_response><answer>3</answer>",
                            "tool").ok
    assert check_format(CALL, "tool", final=False).ok


def test_boxed_protocol() -> None:
    assert check_format(r"<think>2+2</think> The answer is \boxed{4}.", "boxed").ok
    assert check_format(r"The answer is \boxed{4}.", "boxed").ok
    assert not check_format("The answer is 4.", "boxed").ok
    assert not check_format(r"\boxed{4} or \boxed{5}", "boxed").ok
    assert check_format(r"\boxed{4} i.e. \boxed{4}", "boxed").ok


def test_think_answer_protocol() -> None:
    assert check_format("<think>x</think><answer>y</answer>", "think_answer").ok
    assert not check_format("<answer>y</answer>", "think_answer").ok


def test_format_component_values_and_not_applicable() -> None:
    fmt = FormatReward()
    good = RewardInput(completion="<think>x</think><answer>y</answer>", protocol="think_answer")
    bad = RewardInput(completion="y", protocol="think_answer")
    assert fmt(good) == 1.0
    assert fmt(bad) == 0.0
    assert fmt(RewardInput(completion="y")) is None          # no protocol
    assert fmt(RewardInput(completion="y", protocol="ctm")) is None
    with pytest.raises(RegistryError, match="unknown format protocol"):
        fmt(RewardInput(completion="y", protocol="serch"))


def test_format_is_not_farmable_per_turn_by_default() -> None:
    turn = RewardInput(completion="<think>a</think><search>q</search>", protocol="search",
                       done=False)
    assert FormatReward()(turn) is None
    assert FormatReward(score_turns=True)(turn) == 1.0
    bad_turn = RewardInput(completion="<search>q</search>", protocol="search", done=False)
    assert FormatReward(score_turns=True)(bad_turn) == 0.0


def test_json_validity_design_numbers() -> None:
    js = JsonValidity()
    assert js(RewardInput(answer='{"name": "Ann", "age": 3}')) == 0.5
    assert js(RewardInput(answer="{name: Ann}")) == -0.5
    assert js(RewardInput(answer="")) == -0.5
    assert js(RewardInput(completion="[1, 2]")) == 0.5
    assert JsonValidity(require_object=True)(RewardInput(completion="[1, 2]")) == -0.5


def test_user_protocol_registration() -> None:
    proto = TagProtocol("plan_act_test", {"plan": "P", "act": "X"}, episode=r"P(X)+")
    FORMAT_PROTOCOLS.register(proto.name, proto, replace=True)
    try:
        assert check_format("<plan>p</plan><act>a</act><act>b</act>", "plan_act_test").ok
        assert not check_format("<act>a</act>", "plan_act_test").ok
    finally:
        FORMAT_PROTOCOLS.unregister(proto.name)


def test_bad_protocol_definitions_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="letters"):
        TagProtocol("x", {"Think": "T"}, episode="T")
    with pytest.raises(ConfigError, match="bad pattern"):
        TagProtocol("x", {"think": "T"}, episode="T(")


def test_format_pays_nothing_for_a_boxed_example_copied_from_the_prompt() -> None:
    from thinkgym.protocols import RewardInput
    from thinkgym.rewards import FormatReward

    prompt = r"Give the answer in \boxed{}, e.g. \boxed{42}. Problem: 6 * 7 - 2?"
    copied = RewardInput(completion=r"Easy: \boxed{42}", prompt=prompt, protocol="boxed",
                         done=True)
    own = RewardInput(completion=r"6 * 7 - 2 = 40, so \boxed{40}", prompt=prompt,
                      protocol="boxed", done=True)
    assert FormatReward()(copied) == 0.0
    assert FormatReward()(own) == 1.0
