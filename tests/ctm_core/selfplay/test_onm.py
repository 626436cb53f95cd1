"""The Optic Nerve Model: theta features, proposals, training on replay pairs, files."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch

from thinkgym.ctm_core.model import ContinuousThoughtMachine
from thinkgym.ctm_core.selfplay.onm import (
    PREDICTED_FIELDS,
    SKETCH_DIM,
    OpticNerveModel,
    first_impression,
    generate_initial_state,
    load_onm,
    pool_kv,
    save_onm,
    theta_features,
    train_onm,
)
from thinkgym.ctm_core.selfplay.storage import DataId, PairBatch, beta_for_ticks, decays_of
from thinkgym.ctm_core.state import KV, StatePack
from thinkgym.ctm_core.tasks.base import Task
from thinkgym.ctm_core.train import TrainConfig, build_run
from thinkgym.errors import CheckpointError, ConfigError

TINY = {"d_model": 16, "d_input": 8, "heads": 2, "n_synch_out": 4, "n_synch_action": 4,
        "memory_length": 3, "memory_hidden_dims": 2, "iterations": 6}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add barrier waits."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def run() -> tuple[Task, ContinuousThoughtMachine]:
    task, model = build_run(TrainConfig(task="parity", task_config={"length": 4}, model=TINY))
    return task, model.eval()


def kv_of(run: tuple[Task, ContinuousThoughtMachine], n: int = 3) -> KV:
    task, model = run
    with torch.no_grad():
        return model.compute_kv(task.batch(range(n)).inputs)


def make_pairs(task: Task, model: ContinuousThoughtMachine, weight_id: str,
               indices: list[int], t: int = 2) -> PairBatch:
    """Rows ``(states[t], states[t + 2])`` of a no-grad rollout on parity items ``indices``."""
    data_ids = [DataId("parity", task.config.to_dict(), "train", i) for i in indices]
    with torch.no_grad():
        kv = model.compute_kv(task.batch(indices).inputs)
        out = model.rollout_from(model.init_state(kv), kv, t + 3, return_states=True)
    assert out.states is not None
    before, after = out.states[t].clone(), out.states[t + 2].clone()
    n = len(indices)
    return PairBatch(before.tensors(), after.tensors(), torch.full((n,), before.tick),
                     torch.zeros(n, 3), torch.zeros(n, 3), [weight_id] * n, data_ids)


def perturbed(model: ContinuousThoughtMachine, scale: float, seed: int) -> ContinuousThoughtMachine:
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    other.clear_fast_cache()
    return other


# ---------------------------------------------------------------------- theta
def test_theta_features_fixed_deterministic_and_sensitive(run):
    _, model = run
    n_tensors = sum(1 for name, _ in model.named_parameters() if not name.startswith("backbone."))
    theta = theta_features(model)
    assert theta.shape == (4 * n_tensors + SKETCH_DIM,)
    assert theta.dtype == torch.float32
    assert bool(torch.isfinite(theta).all())
    assert torch.equal(theta, theta_features(model))
    assert theta_features(model, sketch_dim=0).shape == (4 * n_tensors,)

    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.q_proj.weight[0, 0] += 0.5
    assert not torch.allclose(theta_features(changed), theta)
    # A swap keeps every per-tensor statistic; only the sketch can see it.
    swapped = copy.deepcopy(model)
    with torch.no_grad():
        w = swapped.output_proj.weight
        w[0, 0], w[1, 1] = w[1, 1].clone(), w[0, 0].clone()
    stats = slice(0, 4 * n_tensors)
    assert torch.allclose(theta_features(swapped)[stats], theta[stats])
    assert not torch.allclose(theta_features(swapped), theta)
    # The task backbone is not part of theta_unit (its effect arrives through K/V).
    rebacked = copy.deepcopy(model)
    with torch.no_grad():
        rebacked.backbone.bit.weight.add_(1.0)
    assert torch.equal(theta_features(rebacked), theta)


def test_first_impression_and_pool_kv_shapes(run):
    _, model = run
    kv = kv_of(run)
    with torch.no_grad():
        y, c = first_impression(model, kv)
        _, y1, c1 = model.tick(model.init_state(kv), kv)
    assert torch.equal(y, y1)
    assert torch.equal(c, c1)
    pooled = pool_kv(kv)
    assert pooled.shape == (3, 2 * model.config.d_input)
    assert torch.allclose(pooled[:, :4], kv.k[:, 0].mean(dim=1))  # head 0 of K first


# ---------------------------------------------------------------------- forward / proposals
@pytest.mark.parametrize("start_tick", [2, 5])
def test_forward_shapes_and_beta_follow_the_engine(run, start_tick):
    _, model = run
    kv = kv_of(run)
    onm = OpticNerveModel.for_model(model, hidden=16, start_tick=start_tick)
    decays = decays_of(model)
    with torch.no_grad():
        y, c = first_impression(model, kv)
        state = onm(y, c, kv, theta_features(model), decays)
        engine = model.rollout_from(model.init_state(kv), kv, start_tick, return_states=True)
    state.check_shapes(model.expected_state_shapes())
    assert onm.expected_state_shapes() == model.expected_state_shapes()
    assert state.tick == start_tick
    expected = beta_for_ticks(decays[0], torch.tensor([start_tick])).expand(3, -1)
    assert torch.equal(state.beta_action, expected)
    # The beta the engine counted after start_tick ticks from its own start state.
    assert engine.states is not None
    reached = engine.states[-1]
    assert torch.allclose(state.beta_action, reached.beta_action)
    assert torch.allclose(state.beta_out, reached.beta_out)


def test_proposed_state_rolls_out_on_the_models_dtype(run):
    task, model = run
    onm = OpticNerveModel.for_model(model, hidden=16)
    kv = kv_of(run)
    state = generate_initial_state(model, kv, onm)
    out = model.rollout_from(state, kv, 3)
    assert out.final_state.tick == onm.start_tick + 3
    assert bool(torch.isfinite(out.logits).all())
    wide = copy.deepcopy(model).double()  # a float32 ONM proposes for a float64 model
    with torch.no_grad():
        kv64 = wide.compute_kv(task.batch(range(2)).inputs)
    state64 = generate_initial_state(wide, kv64, onm)
    assert state64.dtype == torch.float64
    assert bool(torch.isfinite(wide.rollout_from(state64, kv64, 2).logits).all())


def test_without_onm_the_learned_start_state(run):
    _, model = run
    kv = kv_of(run)
    assert generate_initial_state(model, kv).equal(model.init_state(kv))


def test_loss_field_weights(run):
    _, model = run
    onm = OpticNerveModel.for_model(model, hidden=16)
    pairs = make_pairs(*run, "w", [0, 1, 2])
    pred, target = pairs.before(), pairs.after()
    total, parts = onm.loss(pred, target)
    assert set(parts) == set(PREDICTED_FIELDS)
    assert float(total) == pytest.approx(sum(parts.values()) / len(parts), rel=1e-5)
    only_o, _ = onm.loss(pred, target, {name: 0.0 for name in PREDICTED_FIELDS if name != "o"})
    assert float(only_o) == pytest.approx(float(((pred.o - target.o) ** 2).mean()), rel=1e-5)
    with pytest.raises(ConfigError, match="field_weights"):
        onm.loss(pred, target, {"beta_out": 1.0})


# ---------------------------------------------------------------------- training
def per_weight_mean_loss(onm: OpticNerveModel, batch: PairBatch) -> float:
    """Loss of predicting each weight id's mean target: what theta alone can buy."""
    target = batch.after()
    means = {k: torch.empty_like(v) for k, v in target.tensors().items()}
    for weight_id in set(batch.weight_ids):
        rows = torch.tensor([i for i, w in enumerate(batch.weight_ids) if w == weight_id])
        for k, v in target.tensors().items():
            means[k][rows] = v[rows].mean(dim=0)
    return float(onm.loss(StatePack.from_tensors(means, 0), target)[0])


def test_training_lowers_validation_loss(run):
    task, model = run
    # Two weight ids, so batches mix groups and theta differs between them. All rows
    # come from one tick: an untrained CTM's readout barely changes between ticks, so
    # with rows from many ticks the target's tick could not be read from the inputs.
    models = {"a": model, "b": perturbed(model, 0.02, seed=1).eval()}
    train = PairBatch.cat([make_pairs(task, m, w, list(range(32))) for w, m in models.items()])
    val = PairBatch.cat([make_pairs(task, m, w, list(range(100, 116)))
                         for w, m in models.items()])
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    batches = [train.index(order[i:i + 32]) for i in range(0, len(train), 32)]
    torch.manual_seed(0)
    onm = OpticNerveModel.for_model(model, hidden=64)
    resolved: list[str] = []

    def resolve(weight_id: str) -> ContinuousThoughtMachine:
        resolved.append(weight_id)
        return models[weight_id]

    result = train_onm(onm, itertools.cycle(batches), resolve, steps=150, lr=3e-3,
                       val_batch=val, progress=False)
    assert result.steps == 150
    assert len(result.train_loss) == 150
    assert set(resolved) == {"a", "b"}
    assert bool(onm.calibrated)
    assert result.val_loss[-1] == (150, result.final_val_loss)
    assert result.final_val_loss is not None
    assert result.final_val_loss < 0.25 * result.val_loss[0][1]  # step 0: the mean state
    # Better than knowing the weights alone: the proposal depends on the input.
    assert result.final_val_loss < 0.5 * per_weight_mean_loss(onm, val)


def test_training_stops_when_batches_run_out(run):
    _, model = run
    onm = OpticNerveModel.for_model(model, hidden=16)
    batch = make_pairs(*run, "w", list(range(8)))
    before = [p.detach().clone() for p in onm.parameters()]
    result = train_onm(onm, [batch, batch], lambda _: model, steps=5, progress=False)
    assert result.steps == 2
    assert result.final_val_loss is None
    assert any(not torch.equal(a, b) for a, b in zip(before, onm.parameters(), strict=True))


# ---------------------------------------------------------------------- files
def test_save_load_round_trip(run, tmp_path):
    _, model = run
    onm = OpticNerveModel.for_model(model, hidden=16, start_tick=3)
    batch = make_pairs(*run, "w", list(range(8)))
    train_onm(onm, [batch] * 3, lambda _: model, steps=3, progress=False)
    path = save_onm(tmp_path / "onm.pt", onm)
    raw = torch.load(path, weights_only=True)
    assert raw["init"]["start_tick"] == 3
    back = load_onm(path)
    kv = kv_of(run)
    theta = theta_features(model)
    assert generate_initial_state(model, kv, back, theta).equal(
        generate_initial_state(model, kv, onm, theta))
    assert bool(back.calibrated)


def test_load_bad_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no ONM file"):
        load_onm(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="readable"):
        load_onm(garbage)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(CheckpointError, match="not an ONM file"):
        load_onm(other)


# ---------------------------------------------------------------------- mismatches
def test_mismatched_config_raises(run):
    task, model = run
    _, longer = build_run(TrainConfig(task="parity", task_config={"length": 5}, model=TINY))
    onm = OpticNerveModel.for_model(model, hidden=16)
    kv = kv_of(run)
    # Same CTM sizes, another task: out_dims 10 instead of 8.
    with torch.no_grad():
        kv5 = longer.compute_kv(torch.ones(2, 5))
    with pytest.raises(ConfigError, match="out_dims") as err:
        generate_initial_state(longer, kv5, onm)
    assert "'expected': 8" in str(err.value)
    assert "'received': 10" in str(err.value)
    batch = make_pairs(task, model, "w", list(range(4)))
    with pytest.raises(ConfigError, match="weight id 'w'"):
        train_onm(onm, [batch], lambda _: longer, steps=1, progress=False)
    # Records of a wider CTM do not fit.
    wide = OpticNerveModel(dataclasses.replace(model.config, d_model=24), onm.theta_dim, 16)
    with pytest.raises(ConfigError, match="expected"):
        train_onm(wide, [batch], lambda _: model, steps=1, progress=False)
    # theta of another representation.
    with torch.no_grad():
        y, c = first_impression(model, kv)
    with pytest.raises(ConfigError, match="theta"):
        onm(y, c, kv, torch.zeros(onm.theta_dim + 1), decays_of(model))

