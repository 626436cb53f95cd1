"""The strict and loose rules on hand-made trajectories, and the streaming filter's window."""

from __future__ import annotations

import pytest
import torch

from thinkgym.ctm_core.selfplay.filters import Chunk, StreamingFilter, accept_pairs
from thinkgym.ctm_core.selfplay.storage import DataId
from thinkgym.ctm_core.state import TENSOR_FIELDS
from thinkgym.errors import ConfigError

# One row, ticks 0..6. Pair t compares ticks t, t+1, t+2.
LOSS = torch.tensor([[5.0, 4.0, 3.0, 3.5, 2.0, 2.0, 1.0]])
CERT = torch.tensor([[0.1, 0.2, 0.3, 0.2, 0.5, 0.6, 0.7]])
# t=0: L 5>4>3, C .1<.2<.3          -> strict and loose
# t=1: L 4>3 but 3<3.5 (worse at t+2 vs t+1); t+2 vs t: 3.5<4, .2 = .2 -> neither (tie in C)
# t=2: L 3<3.5 worse at t+1;          t+2 vs t: 2<3, .5>.3      -> loose only
# t=3: L 3.5>2 but 2=2 (tie);         t+2 vs t: 2<3.5, .6>.2    -> loose only
# t=4: L 2=2 tie;                     t+2 vs t: 1<2, .7>.5      -> loose only
STRICT = [True, False, False, False, False]
LOOSE = [True, False, True, True, True]


def test_rules_on_hand_made_trajectory() -> None:
    assert accept_pairs(LOSS, CERT, "strict")[0].tolist() == STRICT
    assert accept_pairs(LOSS, CERT, "loose")[0].tolist() == LOOSE


def test_strict_needs_certainty_to_rise_at_both_steps() -> None:
    loss = torch.tensor([[3.0, 2.0, 1.0]])
    assert accept_pairs(loss, torch.tensor([[0.1, 0.3, 0.2]]), "strict").tolist() == [[False]]
    assert accept_pairs(loss, torch.tensor([[0.1, 0.3, 0.2]]), "loose").tolist() == [[True]]
    assert accept_pairs(loss, torch.tensor([[0.3, 0.2, 0.1]]), "loose").tolist() == [[False]]


def test_every_strict_pair_is_loose() -> None:
    gen = torch.Generator().manual_seed(0)
    loss, cert = torch.rand(64, 40, generator=gen), torch.rand(64, 40, generator=gen)
    strict, loose = accept_pairs(loss, cert, "strict"), accept_pairs(loss, cert, "loose")
    assert bool((strict <= loose).all())
    assert int(strict.sum()) > 0
    assert int(loose.sum()) > int(strict.sum())


def test_bad_rule_and_shapes_raise() -> None:
    with pytest.raises(ConfigError, match="strict"):
        accept_pairs(LOSS, CERT, "lenient")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="losses"):
        accept_pairs(LOSS, CERT[:, :4], "strict")


def _chunks(loss: torch.Tensor, cert: torch.Tensor, sizes: list[int]) -> list[Chunk]:
    """Split a (B, T) trajectory into chunks along time; state z encodes (row, tick)."""
    rows, ticks = loss.shape
    z = (torch.arange(rows)[:, None] * 1000 + torch.arange(ticks)[None, :]).float()
    states = {name: z[..., None].expand(rows, ticks, 3).clone() for name in TENSOR_FIELDS}
    ids = [DataId("parity", {}, "train", i) for i in range(rows)]
    out, start = [], 0
    for n in sizes:
        part = {k: v[:, start:start + n] for k, v in states.items()}
        out.append(Chunk(7, start, part, loss[:, start:start + n], cert[:, start:start + n],
                         "w", "best", ids, last=start + n == ticks))
        start += n
    assert start == ticks
    return out


@pytest.mark.parametrize("sizes", [[7], [1, 6], [3, 4], [2, 2, 2, 1], [1] * 7])
@pytest.mark.parametrize("rule", ["strict", "loose"])
def test_streaming_equals_all_at_once(sizes: list[int], rule: str) -> None:
    gen = torch.Generator().manual_seed(1)
    loss = torch.cat([LOSS, torch.rand(3, 7, generator=gen)])
    cert = torch.cat([CERT, torch.rand(3, 7, generator=gen)])
    want = accept_pairs(loss, cert, rule)  # type: ignore[arg-type]
    filt = StreamingFilter(rule)  # type: ignore[arg-type]
    got = [p for c in _chunks(loss, cert, sizes) if (p := filt.push(c)) is not None]
    assert filt.evaluated == want.numel()  # every pair compared exactly once
    assert filt.accepted == int(want.sum())
    pairs = [(int(d.index), int(t)) for p in got for d, t in zip(p.data_ids, p.tick, strict=True)]
    assert sorted(pairs) == sorted(map(tuple, want.nonzero().tolist()))
    for p in got:  # State_t / State_{t+2} are the right ticks of the right rows
        code_t = p.state_t["z"][:, 0]
        code_t2 = p.state_t2["z"][:, 0]
        rows = torch.tensor([d.index for d in p.data_ids])
        assert torch.equal(code_t, (rows * 1000 + p.tick).float())
        assert torch.equal(code_t2, code_t + 2)
        assert torch.equal(p.losses[:, 0], loss[rows, p.tick])
        assert torch.equal(p.certainties[:, 2], cert[rows, p.tick + 2])


def test_a_new_rollout_drops_the_carry() -> None:
    filt = StreamingFilter("loose")
    first = _chunks(LOSS, CERT, [4, 3])
    filt.push(first[0])  # rollout 7, ticks 0-3, not last
    fresh = _chunks(LOSS, CERT, [7])[0]
    fresh.rollout = 8
    filt.push(fresh)
    assert filt.evaluated == 2 + 5  # no pair joins rollout 7's carry to rollout 8
