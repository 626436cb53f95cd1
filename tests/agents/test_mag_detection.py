from __future__ import annotations

import math

import pytest
import torch

from thinkgym.agents.mag.detection import (
    dynamic_threshold,
    normalized_entropy,
    stop_decision,
    td_targets,
)


def test_threshold_is_base_times_one_plus_entropy() -> None:
    h = torch.tensor([0.0, 0.25, 1.0])
    assert torch.allclose(dynamic_threshold(0.2, h), torch.tensor([0.2, 0.25, 0.4]))


def test_entropy_is_normalised_to_unit_interval() -> None:
    assert float(normalized_entropy(torch.zeros(50))) == pytest.approx(1.0)
    peaked = torch.full((50,), -1e4)
    peaked[3] = 0.0
    assert float(normalized_entropy(peaked)) == pytest.approx(0.0, abs=1e-6)
    two = torch.full((8,), -1e4)
    two[:2] = 0.0
    assert float(normalized_entropy(two)) == pytest.approx(math.log(2) / math.log(8))


def test_stop_when_continuing_gains_less_than_the_threshold() -> None:
    value = torch.tensor([1.0, 1.0, 1.0])
    stop_value = torch.tensor([0.95, 0.85, 0.85])
    entropy = torch.tensor([0.0, 0.0, 1.0])
    # gains 0.05, 0.15, 0.15 against tau = 0.1, 0.1, 0.2
    assert stop_decision(value, stop_value, entropy, 0.1).tolist() == [True, False, True]


def test_td_targets_bootstrap_discount_and_pad() -> None:
    ret = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    valid = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    nxt = torch.tensor([[0.7, 0.9, 5.0], [0.2, 0.8, 9.0]])
    v, u = td_targets(ret, valid, nxt, gamma=0.5, step_cost=0.1)
    # V = max(U, -lambda + gamma * V_next); the last valid step has no next; padding is 0
    expected = torch.tensor([[max(0.0, -0.1 + 0.5 * 0.9), max(0.0, -0.1 + 0.5 * 5.0), 1.0],
                             [max(1.0, -0.1 + 0.5 * 0.8), 0.0, 0.0]])
    assert torch.allclose(v, expected)
    assert torch.equal(u, ret * valid)


def test_td_targets_do_not_backpropagate_into_the_bootstrap() -> None:
    nxt = torch.tensor([[0.5, 2.0]], requires_grad=True)
    v, _ = td_targets(torch.zeros(1, 2), torch.ones(1, 2), nxt, gamma=1.0, step_cost=0.0)
    assert not v.requires_grad
