"""ToolCall-v0: repair rules, bad input, fault injection, state verification, baselines."""

from __future__ import annotations

import doctest
import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents.tool_call import (
    AlwaysCallPolicy,
    OracleToolCallPolicy,
    RandomToolCallPolicy,
    TemplateToolCallPolicy,
    last_tool_response,
)
from thinkgym.envs.common import call_repair
from thinkgym.envs.common.call_repair import TEXT_RULES, CallParseError, ParsedCall, parse_tool_call
from thinkgym.envs.tool_call import (
    FaultConfig,
    ToolCallEnv,
    scoring,
    store,
    store_tasks,
    store_tools,
)
from thinkgym.envs.tool_call import env as tool_call
from thinkgym.errors import ConfigError
from thinkgym.rewards import check_format

NO_FAULTS: dict[str, Any] = {"faults": {}}


_ENVS: dict[str, ToolCallEnv] = {}


def _env(**kwargs: Any) -> ToolCallEnv:
    """One env per configuration, shared by the tests (each test resets it with its seed);
    building the text spaces is the slow part of construction."""
    key = repr(sorted(kwargs.items()))
    if key not in _ENVS:
        _ENVS[key] = ToolCallEnv(**kwargs)
    return _ENVS[key]


def _call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _play(env: gym.Env, policy: Any, seed: int) -> dict[str, Any]:
    obs, _ = env.reset(seed=seed)
    policy.reset()
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        done = terminated or truncated
    return info


# -- repair rules: one case per rule, plus strings that must survive untouched ---------------------
REPAIR_CASES = [
    ("code_fence", '```json\n{"name": "t", "arguments": {"q": "a"}}\n```', {"q": "a"}),
    ("smart_quotes", "{“name”: “t”, “arguments”: {“q”: “a”}}", {"q": "a"}),
    ("single_quotes", "{'name': 't', 'arguments': {'q': 'it\\'s \"x\"'}}", {"q": "it's \"x\""}),
    ("python_literals", '{"name": "t", "arguments": {"a": True, "b": False, "c": None}}',
     {"a": True, "b": False, "c": None}),
    ("unquoted_keys", '{name: "t", arguments: {q: "a", max_n: 3}}', {"q": "a", "max_n": 3}),
    ("trailing_commas", '{"name": "t", "arguments": {"q": ["a", "b",],},}', {"q": ["a", "b"]}),
    ("missing_closers", '{"name": "t", "arguments": {"q": [1, 2', {"q": [1, 2]}),
    ("surrounding_text", 'Calling now: {"name": "t", "arguments": {"q": 1}}} ok?', {"q": 1}),
    ("single_item_list", '[{"name": "t", "arguments": {"q": 1}}]', {"q": 1}),
    ("function_wrapper", '{"type": "function", "function": {"name": "t", "arguments": {"q": 1}}}',
     {"q": 1}),
    ("key_aliases", '{"tool": "t", "parameters": {"q": 1}}', {"q": 1}),
    ("arguments_as_string", '{"name": "t", "arguments": "{\\"q\\": 1}"}', {"q": 1}),
    ("missing_arguments", '{"name": "t"}', {}),
]


@pytest.mark.parametrize(("rule", "text", "arguments"), REPAIR_CASES,
                         ids=[c[0] for c in REPAIR_CASES])
def test_each_repair_rule_fixes_its_slip(rule: str, text: str, arguments: dict) -> None:
    parsed = parse_tool_call(text)
    assert isinstance(parsed, ParsedCall), parsed
    assert parsed.name == "t"
    assert parsed.arguments == arguments
    assert rule in parsed.repairs


def test_every_rule_has_a_case() -> None:
    covered = {c[0] for c in REPAIR_CASES}
    assert {name for name, _ in TEXT_RULES} | {n for n, _ in call_repair.STRUCTURE_RULES} \
        == covered


def test_valid_json_needs_no_repair_even_with_lookalikes_inside_strings() -> None:
    text = ('{"name": "t", "arguments": {"q": "True, None, {a: 1,}, \'x\' ```", '
            '"r": "“quoted”"}}')
    parsed = parse_tool_call(text)
    assert parsed == ParsedCall("t", {"q": "True, None, {a: 1,}, 'x' ```", "r": "“quoted”"})


@pytest.mark.parametrize(("name", "text_rule"), [
    r for r in TEXT_RULES if r[0] in ("single_quotes", "python_literals", "unquoted_keys",
                                      "trailing_commas")])
def test_token_rules_leave_string_contents_alone(name: str, text_rule: Any) -> None:
    broken = '{"name": "t", "arguments": {"q": "keep True, {a: 1,} \'x\'"},}'
    fixed = text_rule(broken)
    assert '"keep True, {a: 1,} \'x\'"' in fixed


@pytest.mark.parametrize(("text", "problem"), [
    ("search for mugs", "not JSON"),
    ('{"name" "t"}', "not valid JSON even after repair"),
    ('{"arguments": {}}', '"name" string'),
    ('{"name": "t", "arguments": [1]}', '"arguments" must be a JSON object'),
    ('{"name": "t", "arguments": {}, "extra": 1}', "unexpected keys"),
    ("[1, 2]", "must be a JSON object"),
    ("[" * 3000, "nested deeper than"),
    ('{"name": "t", "arguments": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than"),
])
def test_unrepairable_calls_say_what_is_wrong(text: str, problem: str) -> None:
    result = parse_tool_call(text)
    assert isinstance(result, CallParseError)
    assert problem in result.problem


# -- bad input becomes an observation and a documented penalty -------------------------------------
def _components(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v["raw"] for k, v in info["reward_components"].items()}


@pytest.mark.parametrize(("action", "penalty_field", "message"), [
    ("I would like to search.", "no_action_penalty", "no <tool_call> or <answer>"),
    ("<tool_call>{\"name\": \"calculator\"", "no_action_penalty", "unclosed"),
    ("<tool_call>not json at all</tool_call>", "malformed_penalty", "malformed tool call"),
    ("<tool_call>{\"name\" \"x\"}</tool_call>", "malformed_penalty", "not valid JSON"),
])
def test_malformed_actions_get_an_observation_and_the_documented_penalty(
        action: str, penalty_field: str, message: str) -> None:
    env = _env(**NO_FAULTS)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert message in obs
    assert obs.startswith("<tool_response>")
    assert not terminated
    assert not truncated
    assert _components(info)["action_penalty"] == getattr(env.config, penalty_field)
    assert reward == pytest.approx(getattr(env.config, penalty_field))


def test_too_many_calls_in_one_turn_are_refused_with_a_penalty() -> None:
    env = _env(max_calls_per_turn=2, **NO_FAULTS)
    env.reset(seed=0)
    obs, _, _, _, info = env.step(_call("calculator", expression="1+1") * 5)
    assert obs.count("<tool_response>") == 3
    assert "3 call(s) not executed: at most 2 calls per turn" in obs
    assert _components(info)["action_penalty"] == pytest.approx(3 * env.config.excess_call_penalty)
    assert len(info["calls"]) == 2


def test_huge_tool_outputs_and_arguments_keep_the_observation_in_its_space() -> None:
    env = _env(**NO_FAULTS)
    env.reset(seed=0)
    obs, *_ = env.step(_call("calculator", expression="7**3000") * 4)
    assert env.observation_space.contains(obs)
    assert obs.count("[truncated]") == 4
    obs, *_ = env.step(_call("create_order", product_id="x" * 3000, quantity=1,
                             customer_id="C001"))
    assert env.observation_space.contains(obs)
    assert "unknown product_id" in last_tool_response(obs)["error"]


@pytest.mark.parametrize(("action", "message"), [
    (_call("search_produc", query="mug"), "did you mean 'search_product'"),
    (_call("create_order", product_id="P001", quantity="two", customer_id="C001"),
     "'quantity'"),
    (_call("check_inventory"), "missing required argument 'product_id'"),
    (_call("check_inventory", product_id="P999"), "unknown product_id"),
])
def test_tool_errors_are_rendered_and_cost_tool_efficiency(action: str, message: str) -> None:
    env = _env(**NO_FAULTS)
    env.reset(seed=0)
    obs, _, terminated, _, info = env.step(action)
    response = last_tool_response(obs)
    assert response is not None
    assert message in response["error"]
    assert not terminated
    assert info["calls"][0]["ok"] is False
    assert _components(info)["tool_efficiency"] == -1.0


def test_episode_is_truncated_after_max_turns_and_step_after_end_raises() -> None:
    env = _env(max_turns=3, **NO_FAULTS)
    env.reset(seed=0)
    for turn in range(3):
        _, _, terminated, truncated, info = env.step("hmm")
        assert not terminated
        assert truncated == (turn == 2)
    assert info["metrics"]["task_completed"] == 0.0
    from thinkgym.errors import EnvStateError
    with pytest.raises(EnvStateError):
        env.step("<answer>1</answer>")


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown ToolCall-v0 argument"):
        _env(max_turn=3)
    with pytest.raises(ConfigError, match="error_rate"):
        FaultConfig(error_rate=1.5)
    with pytest.raises(ConfigError, match="faults"):
        _env(faults={"teleport": {"error_rate": 0.5}})
    with pytest.raises(ConfigError, match="task_kinds"):
        _env(task_kinds=("haggle",))


_TOKENS = ["<tool_call>", "</tool_call>", "<answer>", "</answer>", "<think>", "{", "}", "[", "]",
           '"name"', '"arguments"', ":", ",", '"calculator"', '"create_order"', '"expression"',
           '"9**9**9"', '"1/0"', '"product_id"', '"P001"', '"quantity"', "-1", "1e999", "True",
           "'", '"', "\\", "```", " ", "\n", '"customer_id"', '"C001"', "null"]


@pytest.fixture(scope="module")
def fuzz_env() -> ToolCallEnv:
    return ToolCallEnv()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join), min_size=1,
                max_size=4))
def test_no_action_text_crashes_an_episode(fuzz_env: ToolCallEnv, actions: list[str]) -> None:
    env = fuzz_env
    env.reset(seed=len(actions))
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward)
        json.dumps(info)
        if terminated or truncated:
            break


# -- transcript, spans, several calls per turn, format ---------------------------------------------
def test_several_calls_per_turn_each_get_a_response_span() -> None:
    env = _env(task_kinds=("stock_value",), **NO_FAULTS)
    _, info = env.reset(seed=4)
    plan = info["task"]["calls"]
    action = "<think>look up both</think>" + "".join(_call(c["name"], **c["arguments"])
                                                       for c in plan[:2])
    obs, _, _, _, info = env.step(action)
    spans = info["env_spans"]
    assert len(spans) == 2
    texts = [info["transcript"][s:e] for s, e in spans]
    assert "".join(texts) == obs
    assert all(t.startswith("<tool_response>") and t.endswith("</tool_response>") for t in texts)
    assert info["transcript"][: spans[0][0]] == action
    units = json.loads(texts[1][len("<tool_response>"):-len("</tool_response>")])
    assert units["content"]["units"] > 0  # responses are machine-readable JSON
    _, _, _, _, info = env.step(_call(plan[2]["name"], **plan[2]["arguments"]))
    _, _, terminated, _, info = env.step(f"<answer>{env.task.answer}</answer>")
    assert terminated
    assert info["metrics"]["task_completed"] == 1.0
    assert check_format(info["transcript"], tool_call.FORMAT_PROTOCOL).ok
    assert _components(info)["format"] == 1.0


def test_a_repaired_call_runs_but_loses_the_format_reward() -> None:
    env = _env(task_kinds=("price_lookup",), **NO_FAULTS)
    _, info = env.reset(seed=1)
    query = info["task"]["calls"][0]["arguments"]["query"]
    obs, _, _, _, step_info = env.step(f"<tool_call>{{'name': 'search_product', "
                                       f"'arguments': {{'query': '{query}',}},}}</tool_call>")
    assert tuple(step_info["calls"][0]["repairs"]) == ("single_quotes", "trailing_commas")
    price = last_tool_response(obs)["content"][0]["price"]
    _, _, _, _, info = env.step(f"<answer>{price}</answer>")
    assert info["metrics"]["task_completed"] == 1.0
    assert info["metrics"]["repaired_calls"] == 1
    assert _components(info)["format"] == 0.0


# -- fault injection -------------------------------------------------------------------------------
def _trace(seed: int, faults: dict[str, Any] | None = None, steps: int = 6) -> list[str]:
    env = _env(faults=faults if faults is not None else dict(tool_call.DEFAULT_FAULTS),
               task_kinds=("calculation",))
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for _ in range(steps):
        obs, *_ = env.step(_call("calculator", expression="6 * 7") * 2)
        trace.append(obs)
    return trace


def test_fault_injection_is_deterministic_under_the_seed() -> None:
    heavy = {"calculator": {"error_rate": 0.3, "timeout_rate": 0.3}}
    first, again, other = _trace(3, heavy), _trace(3, heavy), _trace(4, heavy)
    assert first == again
    assert first[1:] != other[1:]
    text = "".join(first)
    assert "temporarily unavailable" in text
    assert "no answer within" in text
    assert '"content": 42' in text


def test_world_and_task_do_not_depend_on_the_fault_settings() -> None:
    assert _trace(5, {}, steps=0) == _trace(5, {"calculator": {"error_rate": 0.9}}, steps=0)


def test_fault_rates_are_honoured() -> None:
    assert all("unavailable" in o for o in _trace(1, {"calculator": {"error_rate": 1.0}})[1:])
    assert all("42" in o and "error" not in o
               for o in _trace(1, {"calculator": {"error_rate": 0.0}})[1:])
    down = _trace(1, {"calculator": {"outage_rate": 1.0}})
    assert all(o.count("down for maintenance") == 2 for o in down[1:])


def test_injected_faults_do_not_count_against_tool_efficiency() -> None:
    env = _env(faults={"calculator": {"error_rate": 1.0}}, task_kinds=("calculation",))
    env.reset(seed=0)
    _, reward, _, _, info = env.step(_call("calculator", expression="1+1"))
    assert info["calls"][0]["injected"] is True
    assert _components(info)["tool_efficiency"] is None
    assert reward == 0.0


def test_oracle_retries_transient_faults_and_falls_back_during_an_outage() -> None:
    env = gym.make("ToolCall-v0", task_kinds=("calculation", "stock_value", "order_cost"),
                   faults={"calculator": {"outage_rate": 1.0},
                           "search_product": {"error_rate": 0.5},
                           "check_inventory": {"timeout_rate": 0.5}}, max_turns=12)
    oracle = OracleToolCallPolicy(env)
    faults = recovered = outages = 0
    for seed in range(20):
        info = _play(env, oracle, seed)
        assert info["metrics"]["task_completed"] == 1.0
        faults += info["metrics"]["injected_faults"]
        recovered += info["metrics"]["faults_recovered"]
        # The calculator is down all episode: the oracle's one call of it is refused.
        outages += any(c["name"] == "calculator" for c in info["task"]["calls"])
    assert faults > 20
    # Transient faults are recovered by a successful retry; the calculator outages are routed
    # around (the task completes) but are not recoveries: the calculator never answered.
    assert outages > 0
    assert recovered == faults - outages


def test_answering_after_a_fault_without_calling_again_is_not_a_recovery() -> None:
    env = _env(faults={"calculator": {"error_rate": 1.0}}, task_kinds=("calculation",))
    _, info = env.reset(seed=0)
    expression = info["task"]["calls"][0]["arguments"]["expression"]
    env.step(_call("calculator", expression=expression))
    _, _, _, _, info = env.step(f"<answer>{info['task']['answer']}</answer>")
    m = info["metrics"]
    assert m["task_completed"] == 1.0
    assert (m["injected_faults"], m["faults_recovered"]) == (1, 0)


def test_a_policy_that_makes_no_calls_recovers_nothing() -> None:
    env = gym.make("ToolCall-v0", faults={n: {"error_rate": 1.0} for n in tool_call.DEFAULT_FAULTS})
    for seed in range(10):
        env.reset(seed=seed)
        _, _, _, _, info = env.step("<answer>42</answer>")
        assert info["metrics"]["faults_recovered"] == 0
        assert info["metrics"]["failures_recovered"] == 0


# -- state verification through the env ------------------------------------------------------------
def test_orders_are_verified_in_the_world_not_in_the_answer() -> None:
    env = _env(task_kinds=("direct_order",), **NO_FAULTS)
    _, info = env.reset(seed=2)
    args = dict(info["task"]["calls"][0]["arguments"])
    _, _, _, _, info = env.step("<answer>O0001</answer>")  # claims an order it never placed
    assert info["metrics"]["task_completed"] == 0.0

    _, info = env.reset(seed=2)
    wrong = {**args, "quantity": args["quantity"] + 1}
    before = env.world.total_stock(args["product_id"])
    obs, *_ = env.step(_call("create_order", **wrong))
    if "error" not in last_tool_response(obs):
        assert env.world.total_stock(args["product_id"]) == before - wrong["quantity"]
        _, _, _, _, info = env.step("<answer>O0001</answer>")
        assert info["metrics"]["task_completed"] == 0.0

    _, info = env.reset(seed=2)
    obs, *_ = env.step(_call("create_order", **args))
    order_id = last_tool_response(obs)["content"]["order_id"]
    assert env.world.orders[-1].quantity == args["quantity"]
    _, _, _, _, info = env.step(f"<answer>{order_id}</answer>")
    assert info["metrics"]["task_completed"] == 1.0


# -- baselines -------------------------------------------------------------------------------------
def test_oracle_completes_nearly_every_task_with_default_faults() -> None:
    env = gym.make("ToolCall-v0")
    oracle = OracleToolCallPolicy(env)
    results = [_play(env, oracle, seed)["metrics"] for seed in range(60)]
    assert sum(m["task_completed"] for m in results) / len(results) >= 0.98
    assert all(m["tool_name_accuracy"] == 1.0 for m in results)
    assert all(m["arg_exact_match"] in (None, 1.0) for m in results)
    assert {m["task_kind"] for m in results} == set(store_tasks.TASK_KINDS)


def test_template_policy_solves_every_kind_from_the_observations_alone() -> None:
    env = gym.make("ToolCall-v0")
    policy = TemplateToolCallPolicy()
    results = [_play(env, policy, seed)["metrics"] for seed in range(80)]
    assert {m["task_kind"] for m in results} == set(store_tasks.TASK_KINDS)
    assert sum(m["task_completed"] for m in results) / len(results) >= 0.95
    assert sum(m["faults_recovered"] for m in results) > 0


def test_template_policy_does_not_read_the_task() -> None:
    # The policy gets no env handle; stores differ by seed, so a right answer each time
    # must come from the tool results.
    env = _env(task_kinds=("price_lookup",), **NO_FAULTS)
    policy = TemplateToolCallPolicy()
    answers = set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        action = policy.act(obs)
        assert '"search_product"' in action
        obs, *_ = env.step(action)
        action = policy.act(obs)
        _, _, _, _, info = env.step(action)
        assert info["metrics"]["task_completed"] == 1.0
        answers.add(action)
    assert len(answers) > 1


def test_template_policy_falls_back_to_its_own_arithmetic_during_an_outage() -> None:
    env = _env(faults={"calculator": {"outage_rate": 1.0}}, task_kinds=("calculation",))
    info = _play(env, TemplateToolCallPolicy(), seed=1)
    assert info["metrics"]["task_completed"] == 1.0
    # One refused call, no retry during an outage, and no recovery credited for it.
    assert (info["metrics"]["injected_faults"], info["metrics"]["faults_recovered"]) == (1, 0)


def test_always_call_overcalls_and_random_rarely_completes() -> None:
    env = gym.make("ToolCall-v0", **NO_FAULTS)
    always, rand = AlwaysCallPolicy(env), RandomToolCallPolicy(seed=0)
    over = [_play(env, always, s)["metrics"] for s in range(30)]
    assert all(m["calls_over_min"] == 1 for m in over)
    zero_call = [m for m in over if m["min_calls"] == 0]
    assert zero_call
    assert all(m["tool_name_accuracy"] == 0.0 for m in zero_call)
    random_done = [_play(env, rand, s)["metrics"]["task_completed"] for s in range(60)]
    assert sum(random_done) / len(random_done) < 0.2


@pytest.mark.parametrize("module", [tool_call, scoring, call_repair, store,
                                    store_tasks, store_tools])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
