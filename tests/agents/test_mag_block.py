from __future__ import annotations

import pytest
import torch

from thinkgym.agents.mag.block import MAGBlock, MAGConfig, sliding_window_mask
from thinkgym.errors import ConfigError

CFG = MAGConfig(d_model=16, num_heads=2, num_persistent=3, window=4, memory_hidden=8,
                chunk_size=4)


@pytest.fixture
def block() -> MAGBlock:
    torch.manual_seed(0)
    return MAGBlock(CFG).eval()


def test_output_shape_and_state_shapes(block) -> None:
    x = torch.randn(2, 10, 16)
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, 10, 16)
    assert torch.isfinite(out).all()
    s = block.state
    assert s.memory.w1.shape == (2, 16, 8)
    assert s.memory.w2.shape == (2, 8, 16)
    assert s.tail.shape == (2, CFG.window - 1, 16)  # the window's carry-over
    assert s.pending.shape == (2, 10 % CFG.chunk_size, 16)  # the open chunk


def test_mask_is_prefix_plus_window_exactly() -> None:
    n_p, past, new, w = 2, 3, 5, 3
    mask = sliding_window_mask(n_p, past, new, w)
    assert mask.shape == (new, n_p + past + new)
    for i in range(new):
        pos = past + i
        for j in range(past + new):
            assert bool(mask[i, n_p + j]) == (pos - w < j <= pos), (i, j)
        assert mask[i, :n_p].all()


def test_attention_never_reaches_beyond_the_window_except_the_prefix(block) -> None:
    t, w = 12, CFG.window
    x = torch.randn(1, t, 16, requires_grad=True)
    empty = torch.zeros(1, 0, 16)
    y = block.attention(x, empty)
    for i in range(t):
        (g,) = torch.autograd.grad(y[0, i].sum(), x, retain_graph=True)
        reached = g[0].abs().sum(-1) > 0
        allowed = torch.tensor([i - w < j <= i for j in range(t)])
        assert not (reached & ~allowed).any(), f"token {i} reached {reached.nonzero().tolist()}"
        assert reached[i]  # and it does see itself
    # the persistent prefix is visible to every token, however far
    (gp,) = torch.autograd.grad(y[0, -1].sum(), block.persistent)
    assert gp.abs().sum() > 0


def test_window_holds_across_calls(block) -> None:
    """A second call's tokens see the previous call's last w-1 inputs and nothing older."""
    x = torch.randn(1, 8, 16, requires_grad=True)
    _out1, state = block.forward_with_state(x[:, :6], None)
    y = block.attention(block.norm_in(x[:, 6:]), state.tail)
    (g,) = torch.autograd.grad(y[0, 0].sum(), x)
    reached = (g[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert reached == [3, 4, 5, 6]  # positions 6 - w + 1 .. 6


def test_padding_keys_do_not_change_real_tokens(block) -> None:
    x = torch.randn(1, 6, 16)
    padded = torch.cat([x, torch.randn(1, 3, 16)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        ref, _ = block.forward_with_state(x, None)
        out, _ = block.forward_with_state(padded, None, mask)
    assert torch.allclose(out[:, :6], ref, atol=1e-5)


def test_no_persistent_tokens_with_padding_stays_finite() -> None:
    """Without a prefix a padded query still has itself to attend to (no NaN)."""
    torch.manual_seed(0)
    block = MAGBlock(MAGConfig(**{**CFG.__dict__, "num_persistent": 0})).eval()
    x = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        out, _ = block.forward_with_state(x, None, mask)
        ref, _ = block.forward_with_state(x[1:, :3], None)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[1, :3], ref[0], atol=1e-5)


def test_block_supports_module_apply(block) -> None:
    """nn.Module.apply (weight init, e.g.) reaches every submodule."""
    seen: list[str] = []
    block.apply(lambda m: seen.append(type(m).__name__))
    assert "NeuralMemory" in seen


def test_memory_is_written_at_test_time_and_learns_the_chunk(block) -> None:
    mem = block.memory
    x = torch.randn(2, CFG.chunk_size, 16)
    s0 = mem.init_state(2)
    s1 = mem.write(s0, x)
    assert not torch.allclose(s1.w1, s0.w1)
    # the write is a descent step on the associative loss ||M(k) - v||^2 of that chunk
    assert (mem.surprise_loss(s1, x) < mem.surprise_loss(s0, x)).all()
    # reading changes nothing
    before = [t.clone() for t in (s1.w1, s1.w2, s1.s1, s1.s2)]
    mem.read(s1, torch.randn(2, 5, 16))
    assert all(torch.equal(a, b) for a, b in zip(before, (s1.w1, s1.w2, s1.s1, s1.s2),
                                                  strict=True))


def test_write_follows_momentum_and_forgetting(block) -> None:
    mem, c = block.memory, CFG
    x1, x2 = torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    s0 = mem.init_state(1)
    s1 = mem.write(s0, x1)
    s2 = mem.write(s1, x2)
    w1 = s1.w1.detach().requires_grad_(True)
    w2 = s1.w2.detach().requires_grad_(True)
    loss = mem.surprise_loss(type(s1)(w1, w2, s1.s1, s1.s2), x2).sum()
    g1, _ = torch.autograd.grad(loss, (w1, w2))
    surprise = c.eta * s1.s1 - c.theta * g1  # S_t = eta S_{t-1} - theta grad
    assert torch.allclose(s2.s1, surprise, atol=1e-6)
    assert torch.allclose(s2.w1, (1 - c.alpha) * s1.w1 + surprise, atol=1e-6)  # M_t


def test_surprise_is_capped_per_row() -> None:
    """A huge surprise moves the memory by at most theta * max_surprise_norm per write."""
    torch.manual_seed(0)
    cfg = MAGConfig(**{**CFG.__dict__, "eta": 0.0, "alpha": 0.0, "max_surprise_norm": 0.5})
    mem = MAGBlock(cfg).memory
    x = torch.cat([1e4 * torch.randn(1, 4, 16), 1e-3 * torch.randn(1, 4, 16)])  # big, small
    s0 = mem.init_state(2)
    with torch.no_grad():
        s1 = mem.write(s0, x)
    step = ((s1.w1 - s0.w1).pow(2).sum((1, 2)) + (s1.w2 - s0.w2).pow(2).sum((1, 2))).sqrt()
    assert float(step[0]) == pytest.approx(cfg.theta * 0.5, rel=1e-4)  # capped
    assert step[1] < cfg.theta * 0.5  # a small surprise is left as it is
    w1 = s0.w1[1:].detach().requires_grad_(True)
    w2 = s0.w2[1:].detach().requires_grad_(True)
    loss = mem.surprise_loss(type(s0)(w1, w2, s0.s1[1:], s0.s2[1:]), x[1:]).sum()
    g1, _ = torch.autograd.grad(loss, (w1, w2))
    assert torch.allclose(s1.w1[1:], s0.w1[1:] - cfg.theta * g1, atol=1e-7)


def test_state_persists_across_calls_and_resets_on_demand(block) -> None:
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        whole = block(x)
        block.reset()
        parts = torch.cat([block(x[:, :3]), block(x[:, 3:9]), block(x[:, 9:])], dim=1)
        assert torch.allclose(parts, whole, atol=1e-5)  # carried memory + window
        continued = block(x[:, :5])  # memory written by the 11 tokens before
        block.reset()
        fresh = block(x[:, :5])
    assert torch.allclose(fresh, whole[:, :5], atol=1e-5)
    assert not torch.allclose(continued, fresh, atol=1e-4)


def test_memory_changes_later_outputs_only(block) -> None:
    """A token's output depends on earlier chunks through the memory, never on later ones."""
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[:, 10] += 1.0
    with torch.no_grad():
        a, _ = block.forward_with_state(x, None)
        b, _ = block.forward_with_state(y, None)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)


def test_training_backpropagates_through_writes() -> None:
    torch.manual_seed(0)
    block = MAGBlock(CFG).train()
    out, _ = block.forward_with_state(torch.randn(2, 12, 16), None)
    out.pow(2).sum().backward()
    for p in (block.memory.w_k.weight, block.memory.w_v.weight, block.memory.w1_0,
              block.persistent):
        assert p.grad is not None
        assert p.grad.abs().sum() > 0


def test_batch_size_change_needs_a_reset(block) -> None:
    with torch.no_grad():
        block(torch.randn(2, 4, 16))
        with pytest.raises(ConfigError, match="reset"):
            block(torch.randn(3, 4, 16))
        block.reset()
        assert block(torch.randn(3, 4, 16)).shape == (3, 4, 16)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"d_model": 10, "num_heads": 4}, "num_heads"), ({"eta": 1.0}, "eta"),
    ({"theta": 0.0}, "theta"), ({"window": 0}, "window")])
def test_config_validation_names_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        MAGConfig(**kwargs)
