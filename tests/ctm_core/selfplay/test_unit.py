"""Unit training: the state loss, the mixing sampler's ratio, training moves to targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thinkgym.ctm_core.selfplay.generator import DataGenerator, GeneratorConfig
from thinkgym.ctm_core.selfplay.unit import MixingSampler, pair_loss, train_unit, unit_step
from thinkgym.errors import ConfigError


def _fill(weights, buffer, p_best: float, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    DataGenerator(weights, buffer).run(GeneratorConfig(
        batches=4, batch_size=8, ticks=20, chunk_ticks=5, rule="loose", p_best=p_best,
        weight_noise=0.2, seed=seed, mode="serial"))


def test_pair_loss_is_zero_on_the_target_and_ignores_shared_history(managed) -> None:  # type: ignore[no-untyped-def]
    weights, buffer = managed
    _fill(weights, buffer, 0.5)
    batch = buffer.load_batch(8, rng=0)
    target = batch.after()
    loss, _parts = pair_loss(target, target)
    assert float(loss) == 0.0
    tensors = target.tensors()
    tensors["A"] = tensors["A"].clone()
    tensors["A"][..., 0] += 5.0  # an old (shared) history column: not the unit's output
    shifted = type(target).from_tensors(tensors, target.tick)
    assert float(pair_loss(shifted, target)[0]) == 0.0
    tensors["z"] = tensors["z"] + 1.0
    assert pair_loss(type(target).from_tensors(tensors, target.tick), target)[1]["z"] > 0
    with pytest.raises(ConfigError, match="field_weights"):
        pair_loss(target, target, {"zz": 1.0})


def test_mixing_sampler_draws_q_from_the_expert_buffer(managed) -> None:  # type: ignore[no-untyped-def]
    weights, buffer = managed
    _fill(weights, buffer, 0.5, seed=2)  # seed 2: both sources' rollouts yield pairs
    assert buffer.count("expert")
    assert buffer.count("self_play")
    sampler = MixingSampler(buffer, q=0.3, batch_size=10, rng=np.random.default_rng(0))
    splits = np.array([sampler.split() for _ in range(4000)])
    assert splits.sum(1).tolist() == [10] * 4000
    assert abs(splits[:, 0].mean() / 10 - 0.3) < 0.01  # stochastic rounding keeps q exact
    batch = sampler.sample()
    experts = set(weights.experts())
    n_expert = sum(w.split("~")[0] in experts for w in batch.weight_ids)
    assert n_expert == sampler.drawn["expert"]
    for q, want in ((0.0, (0, 10)), (1.0, (10, 0))):
        assert MixingSampler(buffer, q=q, batch_size=10).split() == want
    buffer.clear("expert")
    assert MixingSampler(buffer, q=0.9, batch_size=10).split() == (0, 10)  # the other fills in
    with pytest.raises(ConfigError, match="q"):
        MixingSampler(buffer, q=1.5, batch_size=10)


def test_train_unit_lowers_the_pair_loss(managed) -> None:  # type: ignore[no-untyped-def]
    weights, buffer = managed
    _fill(weights, buffer, 0.0)  # experts only: targets the best model does not produce yet
    model, _ = weights.resolve(weights.best_id)
    import copy

    model = copy.deepcopy(model)
    fixed = buffer.load_batch(32, rng=1)
    with torch.no_grad():
        before = float(unit_step(model, fixed)[0])
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train_unit(model, MixingSampler(buffer, q=1.0, batch_size=32,
                                             rng=np.random.default_rng(0)),
                        steps=60, lr=3e-3)
    with torch.no_grad():
        after = float(unit_step(model, fixed)[0])
    assert after < 0.7 * before
    assert result.drawn["expert"] == 60 * 32
    assert any(not torch.equal(p, params[n]) for n, p in model.named_parameters())
