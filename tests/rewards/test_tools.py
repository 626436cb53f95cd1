from __future__ import annotations

import pytest

from thinkgym.errors import ConfigError
from thinkgym.protocols import RewardInput
from thinkgym.protocols import ToolCallRecord as Call
from thinkgym.rewards import SearchCost, ToolEfficiency


def test_search_cost_design_numbers() -> None:
    cost = SearchCost()
    assert cost(RewardInput(num_searches=0)) == 0.0
    assert cost(RewardInput(num_searches=1)) == pytest.approx(-0.1)
    assert cost(RewardInput(num_searches=4)) == pytest.approx(-0.4)


def test_search_cost_free_allowance_across_turns() -> None:
    cost = SearchCost(free_searches=2)
    # one search per turn; the first two are free
    per_turn = [cost(RewardInput(num_searches=1, prior_searches=k)) for k in range(4)]
    assert per_turn == pytest.approx([0.0, 0.0, -0.1, -0.1])
    assert sum(per_turn) == pytest.approx(cost(RewardInput(num_searches=4)))


def test_tool_efficiency_design_numbers() -> None:
    eff = ToolEfficiency()
    assert eff(RewardInput(tool_calls=(Call("add", expected=True),))) == pytest.approx(0.2)
    assert eff(RewardInput(tool_calls=(Call("mul", expected=False),))) == pytest.approx(-0.5)
    failed = Call("nope", ok=False, error="unknown tool", expected=False)
    assert eff(RewardInput(tool_calls=(failed,))) == pytest.approx(-1.0)
    assert eff(RewardInput(tool_calls=(Call("add"),))) == 0.0  # env cannot judge: neutral
    assert eff(RewardInput()) is None  # no calls: not applicable


def test_excess_calls_are_penalised_and_earn_no_bonus() -> None:
    eff = ToolEfficiency()
    calls = tuple(Call("add", expected=True) for _ in range(3))
    # first call is needed (+0.2); calls 2 and 3 are excess (-0.1 each, no bonus)
    assert eff(RewardInput(tool_calls=calls, min_tool_calls=1)) == pytest.approx(0.0)
    assert eff(RewardInput(tool_calls=calls, min_tool_calls=0)) == pytest.approx(-0.3)


def test_per_turn_scoring_sums_to_episode_scoring() -> None:
    eff = ToolEfficiency()
    calls = [Call("add", expected=True), Call("mul", expected=False),
             Call("add", ok=False, error="timeout"), Call("add", expected=True)]
    episode = eff(RewardInput(tool_calls=tuple(calls), min_tool_calls=2))
    turns = [eff(RewardInput(tool_calls=(c,), prior_tool_calls=k, min_tool_calls=2))
             for k, c in enumerate(calls)]
    assert sum(turns) == pytest.approx(episode)
    assert episode == pytest.approx(0.2 - 0.5 + (-1.0 - 0.1) + (-0.1))


def test_tool_magnitudes_are_validated() -> None:
    with pytest.raises(ConfigError, match="wrong_penalty"):
        ToolEfficiency(wrong_penalty=0.5)
    with pytest.raises(ConfigError, match="cost"):
        SearchCost(cost=-0.1)


def test_ctm_tick_cost_charges_reported_ticks_of_successful_ctm_calls() -> None:
    from thinkgym.rewards import CTMTickCost

    cost = CTMTickCost()
    calls = (Call("ctm_think", output="answer: 1\ncertainty: 0.9\nticks: 12"),
             Call("ctm_think", output="answer: 7\ncertainty: 0.5\nticks: 3"),
             Call("ctm_think", ok=False, error="bad input"),
             Call("calculator", output="ticks: 99"))
    assert cost(RewardInput(tool_calls=calls)) == pytest.approx(-0.15)
    assert cost(RewardInput(tool_calls=(Call("calculator", output="4"),))) is None
    with pytest.raises(ConfigError, match="cost"):
        CTMTickCost(cost=-1.0)
