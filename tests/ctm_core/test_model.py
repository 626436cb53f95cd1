"""ContinuousThoughtMachine behaviour: config validation, shapes, ticks, two-tick unit,
NaN detection, neuron selection, the CTM loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from thinkgym.ctm_core import (
    ContinuousThoughtMachine,
    CTMConfig,
    StatePack,
    TwoTickUnit,
    ctm_loss,
    fast,
    state_mse,
)
from thinkgym.ctm_core.model import select_neuron_pairs
from thinkgym.errors import ConfigError, NumericalError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add barrier waits (8x slower on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SMALL = dict(d_model=24, d_input=16, heads=4, n_synch_out=5, n_synch_action=6,
             memory_length=4, memory_hidden_dims=3, prediction_shape=(4, 2),
             backbone_dim=7, iterations=6)


def small_model(dtype: torch.dtype = torch.float64,
                **overrides: object) -> ContinuousThoughtMachine:
    torch.manual_seed(0)
    return ContinuousThoughtMachine(CTMConfig(**{**SMALL, **overrides})).to(dtype).eval()


def tokens(batch: int = 3, n: int = 5, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(batch, n, SMALL["backbone_dim"], generator=torch.Generator().manual_seed(1),
                       dtype=dtype)


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize(("overrides", "field"), [
    ({"d_model": 0}, "d_model"),
    ({"heads": 3}, "heads"),                       # 16 % 3 != 0
    ({"prediction_shape": (4, 1)}, "prediction_shape"),
    ({"prediction_shape": ()}, "prediction_shape"),
    ({"neuron_select_type": "nearest"}, "neuron_select_type"),
    ({"n_synch_out": 25}, "n_synch_out"),          # > d_model
    ({"neuron_select_type": "first-last", "n_synch_out": 20}, "d_model"),
    ({"neuron_select_type": "random-pairing", "n_random_pairing_self": 7}, "n_random_pairing_self"),
    ({"dropout": 1.0}, "dropout"),
    ({"deep_nlms": 1}, "deep_nlms"),
    ({"seed": -1}, "seed"),
    ({"iterations": True}, "iterations"),
])
def test_config_errors_name_field_value_and_fix(overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CTMConfig(**{**SMALL, **overrides})
    err = info.value
    assert err.field == field
    assert "got" in str(err)
    assert "Fix:" in str(err)


def test_config_dict_round_trip_and_unknown_key() -> None:
    cfg = CTMConfig(**SMALL)
    data = cfg.to_dict()
    assert data["prediction_shape"] == [4, 2]
    assert CTMConfig.from_dict(data) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        CTMConfig.from_dict({**data, "d_modle": 3})
    assert CTMConfig(**SMALL).out_dims == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 3  # type: ignore[misc]


# ---------------------------------------------------------------- shapes
def test_rollout_shapes_and_tick_counting() -> None:
    model = small_model()
    out = model.rollout(tokens(), ticks=5, return_states=True)
    assert out.logits.shape == (3, 8, 5)
    assert out.certainty.shape == (3, 5)
    assert [s.tick for s in out.states] == [1, 2, 3, 4, 5]
    assert out.initial_state.tick == 0
    assert out.final_state.tick == 5
    assert model(tokens()).logits.shape[-1] == SMALL["iterations"]
    assert ((out.certainty >= 0) & (out.certainty <= 1)).all()


def test_input_shape_errors_name_expected_and_received() -> None:
    model = small_model()
    with pytest.raises(ValueError, match=r"backbone_dim=7.*received \(3, 5, 9\)"):
        model.compute_kv(torch.randn(3, 5, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"received \(3, 7\)"):
        model.compute_kv(torch.randn(3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating point"):
        model.compute_kv(torch.ones(3, 5, 7, dtype=torch.long))


def test_backbone_output_is_checked() -> None:
    cfg = CTMConfig(**SMALL)
    model = ContinuousThoughtMachine(cfg, backbone=torch.nn.Embedding(2, 5))
    with pytest.raises(ValueError, match=r"Embedding\) output .*received \(2, 4, 5\)"):
        model.compute_kv(torch.zeros(2, 4, dtype=torch.long))
    good = ContinuousThoughtMachine(cfg, backbone=torch.nn.Embedding(2, 7))
    assert good.rollout(torch.zeros(2, 4, dtype=torch.long), ticks=2).logits.shape == (2, 8, 2)


def test_state_and_kv_mismatch_errors() -> None:
    model = small_model()
    kv = model.compute_kv(tokens())
    state = model.init_state(kv)
    bad = dataclasses.replace(state, A=state.A[:, :, 1:])
    with pytest.raises(ConfigError, match=r"StatePack.A .*expected \(3, 24, 4\)") as info:
        model.tick(bad, kv)
    assert "(3, 24, 3)" in str(info.value)
    with pytest.raises(ValueError, match=r"KV must have .*\(2, 4, 5, 4\)"):
        model.tick(state.index([0, 1]), kv)
    with pytest.raises(ValueError, match="StatePack"):
        model.tick(state.tensors(), kv)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"torch\.float64 .*received torch\.float32"):
        model.tick(state.to(dtype=torch.float32), kv)
    with pytest.raises(ValueError, match=r"kv must be torch\.float64"):
        model.rollout_from(state, kv.to(dtype=torch.float32), ticks=2)
    with pytest.raises(ConfigError, match="ticks"):
        model.rollout_from(state, kv, ticks=0)
    with pytest.raises(ConfigError, match="check"):
        model.rollout_from(state, kv, ticks=1, check="sometimes")


# ---------------------------------------------------------------- tick semantics
def test_rollout_equals_repeated_ticks_in_both_paths() -> None:
    model = small_model()
    x = tokens()
    kv = model.compute_kv(x)
    state = model.init_state(kv)
    stepped = []
    for _ in range(6):
        state, logits, certainty = model.tick(state, kv)
        stepped.append((state, logits, certainty))
    with torch.no_grad():
        fast = model.rollout(x, ticks=6, return_states=True)
    slow = model.rollout(x, ticks=6, return_states=True)  # autograd path
    for t, (s, logits, cert) in enumerate(stepped):
        for out in (fast, slow):
            assert out.states[t].allclose(s, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(out.logits[..., t], logits, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(out.certainty[:, t], cert, rtol=1e-10, atol=1e-12)
        # readout(state) is exactly what tick returned for that state
        torch.testing.assert_close(model.readout(s)[0], logits)


# The fast path keeps its history (D, B, L) below batch 4 and (D, L, B) from 4 up.
@pytest.mark.parametrize("batch", [1, 5])
def test_chunked_rollout_equals_one_long_rollout(batch: int) -> None:
    model = small_model()
    x = tokens(batch)
    with torch.no_grad():
        whole = model.rollout(x, ticks=150)  # > the fast path's 64-column history chunk
        kv = model.compute_kv(x)
        first = model.rollout_from(model.init_state(kv), kv, ticks=70)
        second = model.rollout_from(first.final_state, kv, ticks=80)
    joined = torch.cat([first.logits, second.logits], dim=-1)
    torch.testing.assert_close(joined, whole.logits, rtol=1e-9, atol=1e-11)
    assert second.final_state.tick == 150
    assert second.final_state.allclose(whole.final_state, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("batch", [2, 6])
def test_fast_path_returned_states_stay_valid(batch: int) -> None:
    """States from a no-grad rollout are views into buffers: later ticks must not clobber them."""
    model = small_model()
    x = tokens(batch)
    with torch.no_grad():
        fast = model.rollout(x, ticks=12, return_states=True)
    slow = model.rollout(x, ticks=12, return_states=True)
    for a, b in zip(fast.states, slow.states, strict=True):
        assert a.allclose(b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_neurons", [1, 5, 24])
def test_deep_nlms_in_neuron_chunks_equal_the_autograd_path(
        chunk_neurons: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Time-major (batch >= 4) deep NLMs run in neuron chunks: uneven last chunk included."""
    model = small_model()
    batch = 5
    layer1_bytes = 2 * SMALL["memory_hidden_dims"] * batch * 8  # one neuron's (2H, B) fp64
    monkeypatch.setattr(fast, "NLM_CHUNK_BYTES", chunk_neurons * layer1_bytes)
    kv = model.compute_kv(tokens(batch))
    chunks = fast._nlm_chunks(fast.folded_weights(model), batch, 8)
    assert chunks is not None
    assert len(chunks[1]) == -(-24 // chunk_neurons)
    with torch.no_grad():
        quick = model.rollout_from(model.init_state(kv), kv, ticks=8, return_states=True)
    slow = model.rollout_from(model.init_state(kv), kv, ticks=8, return_states=True)
    torch.testing.assert_close(quick.logits, slow.logits, rtol=1e-10, atol=1e-12)
    for a, b in zip(quick.states, slow.states, strict=True):
        assert a.allclose(b, rtol=1e-10, atol=1e-12)


def test_fast_path_follows_parameter_updates() -> None:
    """The no-grad path caches folded weights: every way of changing weights must show."""
    model = small_model()
    x = tokens()

    def agree() -> bool:
        with torch.no_grad():
            fast = model.rollout(x, ticks=4).logits
        slow = model.rollout(x, ticks=4).logits.detach()
        return torch.allclose(fast, slow, rtol=1e-9, atol=1e-11)

    assert agree()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.rollout(x, ticks=4).logits.pow(2).mean().backward()
    opt.step()  # optimizer step: in-place, versioned
    assert agree()
    other = small_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05)
    model.load_state_dict(other.state_dict())  # copy_ into the parameters
    assert agree()
    model.attention.w_q.weight.data = model.attention.w_q.weight.data * 1.5  # new storage
    assert agree()
    model.synapses.linear.weight.data.mul_(0.5)  # unversioned: needs the explicit clear
    model.clear_fast_cache()
    assert agree()


def test_two_tick_unit_equals_two_single_ticks() -> None:
    model = small_model()
    kv = model.compute_kv(tokens())
    s0 = model.init_state(kv)
    s1, _, _ = model.tick(s0, kv)
    s2, logits2, cert2 = model.tick(s1, kv)
    u2, u_logits, u_cert = TwoTickUnit(model)(s0, kv)
    assert u2.tick == 2
    assert u2.allclose(s2, rtol=0, atol=0)
    torch.testing.assert_close(u_logits, logits2, rtol=0, atol=0)
    torch.testing.assert_close(u_cert, cert2, rtol=0, atol=0)


def test_two_tick_unit_gives_attention_a_direct_gradient() -> None:
    """A loss on State_{t+2}'s z alone reaches the attention/query weights (through o_{t+1})."""
    model = small_model()
    unit = TwoTickUnit(model)
    kv = model.compute_kv(tokens())
    start = model.init_state(kv).detach()
    s2, _, _ = unit(start, kv)
    s2.z.pow(2).sum().backward()
    for p in (model.attention.w_q.weight, model.q_proj.weight, model.attention.w_out.weight):
        assert p.grad is not None
        assert p.grad.abs().sum() > 0


def test_two_tick_unit_trains_on_a_state_pair() -> None:
    model = small_model(dtype=torch.float32)
    unit = TwoTickUnit(model)
    kv = model.compute_kv(tokens(dtype=torch.float32))
    with torch.no_grad():
        target = model.rollout_from(model.init_state(kv), kv, ticks=4).final_state.clone()
    start = model.init_state(kv).detach()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss = state_mse(unit(start, kv)[0], target)
    loss.backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "attention.w_q.weight" in changed
    assert "nlm.w1" in changed
    assert "synapses.linear.weight" in changed
    with torch.no_grad():
        assert float(state_mse(unit(start, kv)[0], target)) < float(loss.detach())


# ---------------------------------------------------------------- certainty and loss
def test_certainty_extremes() -> None:
    model = small_model()
    flat = torch.zeros(2, 8, dtype=torch.float64)
    assert torch.allclose(model.certainty(flat), torch.zeros(2, dtype=torch.float64))
    sure = torch.tensor([[50.0, -50.0] * 4, [-50.0, 50.0] * 4], dtype=torch.float64)
    assert torch.allclose(model.certainty(sure), torch.ones(2, dtype=torch.float64))
    half = torch.tensor([[50.0, -50.0, 50.0, -50.0, 0, 0, 0, 0]], dtype=torch.float64)
    assert model.certainty(half).item() == pytest.approx(0.5)  # averaged over positions


def test_ctm_loss_matches_a_manual_computation_and_backprops() -> None:
    gen = torch.Generator().manual_seed(3)
    loss = torch.rand(5, 9, generator=gen, requires_grad=True)
    cert = torch.rand(5, 9, generator=gen)
    out = ctm_loss(loss, cert)
    manual = np.mean([(loss[b].min().item() + loss[b, cert[b].argmax()].item()) / 2
                      for b in range(5)])
    assert out.loss.item() == pytest.approx(manual)
    assert out.tick_min_loss.tolist() == loss.argmin(1).tolist()
    assert out.tick_most_certain.tolist() == cert.argmax(1).tolist()
    out.loss.backward()
    assert (loss.grad > 0).sum() <= 10
    assert loss.grad.sum().item() == pytest.approx(1.0)


def test_ctm_loss_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(B, T\).*\(2, 3, 4\)"):
        ctm_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"received \(2, 4\)"):
        ctm_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_state_mse_is_zero_on_self_and_positive_otherwise() -> None:
    model = small_model()
    kv = model.compute_kv(tokens())
    s0 = model.init_state(kv)
    s1, _, _ = model.tick(s0, kv)
    s0, s1 = s0.detach(), s1.detach()
    assert float(state_mse(s1, s1)) == 0.0
    assert float(state_mse(s1, s0)) > 0.0


# ---------------------------------------------------------------- NaN detection
class _PoisonAtCall:
    """Forward hook making the NLM output NaN on its n-th call (1-based)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return output * float("nan") if self.calls == self.n else output


class _PoisonLayerNorm:
    """Stands in for torch.nn.functional inside fast.py; layer_norm's n-th call gives NaN."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __getattr__(self, name: str) -> object:
        return getattr(torch.nn.functional, name)

    def layer_norm(self, *args: object, **kwargs: object) -> torch.Tensor:
        self.calls += 1
        out = torch.nn.functional.layer_norm(*args, **kwargs)
        return out * float("nan") if self.calls == self.n else out


def poison_tick(model: ContinuousThoughtMachine, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make tick n (1-based) produce NaN, on the autograd path and on the fast path."""
    model.nlm.register_forward_hook(_PoisonAtCall(n))
    monkeypatch.setattr(fast, "F", _PoisonLayerNorm(n))


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("check", ["rollout", "tick"])
def test_nan_is_reported_with_its_tick(grad: bool, check: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_model(dropout=0.1)
    model.train(grad)  # autograd path with dropout when grad, fast path otherwise
    poison_tick(model, 4, monkeypatch)
    with (torch.enable_grad() if grad else torch.no_grad()), \
            pytest.raises(NumericalError, match="tick 4"):
        model.rollout(tokens(), ticks=8, check=check)


def test_nan_check_can_be_turned_off_and_check_state(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_model()
    poison_tick(model, 2, monkeypatch)
    with torch.no_grad():
        out = model.rollout(tokens(), ticks=4, check="off")
    assert torch.isnan(out.logits[..., 1:]).all()
    assert not torch.isnan(out.logits[..., 0]).any()
    with pytest.raises(NumericalError, match="tick 4"):
        model.check_state(out.final_state)


# ---------------------------------------------------------------- neuron selection
@pytest.mark.parametrize("kind", ["first-last", "random", "random-pairing"])
def test_neuron_selection_is_seeded_and_leaves_global_rng_alone(kind: str) -> None:
    cfg = CTMConfig(**{**SMALL, "neuron_select_type": kind, "n_random_pairing_self": 2, "seed": 5})
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    a = select_neuron_pairs(cfg)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    b = select_neuron_pairs(cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = select_neuron_pairs(dataclasses.replace(cfg, seed=6))
    assert all(torch.equal(a[k], other[k]) for k in a) == (kind == "first-last")
    assert len(a["action_i"]) == cfg.synch_size_action
    assert len(a["out_j"]) == cfg.synch_size_out
    for idx in a.values():
        assert int(idx.min()) >= 0
        assert int(idx.max()) < cfg.d_model


def test_selection_strategies_pick_the_documented_neurons() -> None:
    fl = select_neuron_pairs(CTMConfig(**{**SMALL, "neuron_select_type": "first-last"}))
    assert set(fl["out_i"].tolist()) == set(range(5))
    assert set(fl["action_j"].tolist()) == set(range(24 - 6, 24))
    rp = select_neuron_pairs(CTMConfig(**{**SMALL, "neuron_select_type": "random-pairing",
                                         "n_random_pairing_self": 2}))
    assert torch.equal(rp["out_i"][:2], rp["out_j"][:2])
    assert len(set(rp["action_i"].tolist())) == 6  # no neuron drawn twice on one side
    model = ContinuousThoughtMachine(CTMConfig(**{**SMALL, "seed": 9}))
    again = ContinuousThoughtMachine(CTMConfig(**{**SMALL, "seed": 9}))
    assert torch.equal(model.synch_out_i, again.synch_out_i)
    assert "synch_out_i" in model.state_dict()  # pairs travel with checkpoints


def test_state_pack_from_rollout_round_trips_through_cat() -> None:
    model = small_model()
    with torch.no_grad():
        out = model.rollout(tokens(), ticks=3)
    final = out.final_state
    assert StatePack.cat(final.unbatch()).allclose(final, rtol=0, atol=0)
    assert final.clone().to(dtype=torch.float32).to(dtype=torch.float64).allclose(
        final, rtol=1e-6, atol=1e-6)
