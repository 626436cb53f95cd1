"""WeightManager: content ids, picking, resolving, promotion, noisy ids, the index on disk."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from thinkgym.ctm_core.selfplay.weights import (
    BEST_FILE,
    INDEX_FILE,
    WeightManager,
    noisy_id,
    weight_id_of,
)
from thinkgym.errors import CheckpointError, ConfigError


def _changed(model, delta: float = 0.5):  # type: ignore[no-untyped-def]
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.start_z[0] += delta
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def wm(tmp_path: Path, tiny_run) -> WeightManager:  # type: ignore[no-untyped-def]
    task, model = tiny_run
    return WeightManager.create(tmp_path / "w", model, task, n_random_experts=2, seed=0)


def test_create_writes_the_layout_and_index(wm: WeightManager, tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, model = tiny_run
    assert wm.best_id == weight_id_of(model)
    assert wm.best_path == wm.root / BEST_FILE
    assert wm.best_path.is_file()
    assert len(wm.experts()) == 2
    assert wm.challengers() == []
    index = json.loads((wm.root / INDEX_FILE).read_text())["weights"]
    assert {e["role"] for e in index.values()} == {"best", "expert"}
    for wid, entry in index.items():
        assert (wm.root / entry["path"]).is_file()
        assert entry["path"].startswith("expert_pool/") or entry["path"] == BEST_FILE
        assert weight_id_of(wm.resolve(wid)[0]) == wid
    # seeded: the same seed gives the same random experts, another seed others
    again = WeightManager.create(wm.root.parent / "again", model, wm.task, seed=0)
    other = WeightManager.create(wm.root.parent / "other", model, wm.task, seed=1)
    assert again.experts() == wm.experts()
    assert not set(other.experts()) & set(wm.experts())


def test_create_refuses_a_non_empty_root_unless_overwrite(wm: WeightManager, tiny_run) -> None:  # type: ignore[no-untyped-def]
    task, model = tiny_run
    with pytest.raises(ConfigError, match=r"not empty.*overwrite=True"):
        WeightManager.create(wm.root, model, task)
    fresh = WeightManager.create(wm.root, _changed(model), task, n_random_experts=0,
                                 overwrite=True)
    assert fresh.best_id == weight_id_of(_changed(model))
    assert fresh.experts() == []
    assert list((wm.root / "expert_pool").iterdir()) == []


def test_opening_a_directory_without_index_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no weights\.json.*WeightManager\.create"):
        WeightManager(tmp_path)
    (tmp_path / INDEX_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable weight index"):
        WeightManager(tmp_path)


def test_weight_id_is_content_based(tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, model = tiny_run
    wid = weight_id_of(model)
    assert len(wid) == 16
    assert int(wid, 16) >= 0
    assert weight_id_of(copy.deepcopy(model)) == wid == weight_id_of(model.state_dict())
    assert weight_id_of(_changed(model, 1e-3)) != wid
    assert weight_id_of(copy.deepcopy(model).double()) != wid  # dtype is part of the id
    state = dict(model.state_dict())
    state["synch_out_i"] = state["synch_out_i"].flip(0)  # buffers count too
    assert weight_id_of(state) != wid


def test_pick_frequencies_follow_p(wm: WeightManager) -> None:
    rng = np.random.default_rng(0)
    picks = [wm.pick(rng, 0.7) for _ in range(2000)]
    share = np.mean([p.source == "best" for p in picks])
    assert share == pytest.approx(0.7, abs=0.04)  # sd 0.010
    for expert in wm.experts():  # uniform over the pool: 15% each, sd 0.008
        assert np.mean([p.weight_id == expert for p in picks]) == pytest.approx(0.15, abs=0.035)
    assert all((p.weight_id == wm.best_id) == (p.source == "best") for p in picks)
    assert all(p.path == wm.path_of(p.weight_id) and p.path.is_file() for p in picks)
    assert all(wm.pick(rng, 1.0).source == "best" for _ in range(200))
    only = [wm.pick(rng, 0) for _ in range(200)]
    assert {p.source for p in only} == {"expert"}
    assert {p.weight_id for p in only} == set(wm.experts())


def test_pick_without_experts_returns_best_and_warns_once(
        tmp_path: Path, tiny_run, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    task, model = tiny_run
    wm = WeightManager.create(tmp_path, model, task, n_random_experts=0)
    rng = np.random.default_rng(0)
    with caplog.at_level(logging.WARNING):
        assert {wm.pick(rng, 0.0).source for _ in range(5)} == {"best"}
    assert sum("expert pool" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), True])
def test_pick_refuses_p_outside_0_1(wm: WeightManager, p: float) -> None:
    with pytest.raises(ConfigError, match=r"p: must be a probability in \[0, 1\]"):
        wm.pick(np.random.default_rng(0), p)


def test_resolve_returns_identical_weights_for_best_expert_and_historical(
        wm: WeightManager, tiny_run) -> None:  # type: ignore[no-untyped-def]
    task, model = tiny_run
    best, got_task = wm.resolve(wm.best_id)
    assert _same(best.state_dict(), model.state_dict())
    assert not best.training
    assert got_task.name == task.name == wm.task.name
    expert = _changed(model, -1.0)
    eid = wm.add_expert(expert, note="hand-made")
    assert _same(wm.resolve(eid)[0].state_dict(), expert.state_dict())
    challenger = _changed(model, 2.0)
    old = wm.best_id
    wm.promote(wm.add_challenger(challenger, "c1"))
    fresh = WeightManager(wm.root)  # nothing cached: read from the files
    assert _same(fresh.resolve(old)[0].state_dict(), model.state_dict())
    assert _same(fresh.resolve(fresh.best_id)[0].state_dict(), challenger.state_dict())
    assert _same(fresh.state_dict_of(eid), expert.state_dict())


def test_resolve_shares_a_cached_model_and_model_for_copies(wm: WeightManager) -> None:
    shared, _ = wm.resolve(wm.best_id)
    assert wm.resolve(wm.best_id)[0] is shared
    private = wm.model_for(wm.best_id)
    with torch.no_grad():
        private.start_z.add_(1.0)
    assert weight_id_of(wm.resolve(wm.best_id)[0]) == wm.best_id
    small = WeightManager(wm.root, cache_size=1)
    first = small.resolve(small.best_id)[0]
    small.resolve(small.experts()[0])  # evicts the best
    assert small.resolve(small.best_id)[0] is not first


def test_promote_moves_the_old_best_to_history(wm: WeightManager, tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, model = tiny_run
    old = wm.best_id
    new = wm.add_challenger(_changed(model), "c1")
    assert wm.challengers() == [new]
    wm.promote(new)
    assert wm.best_id == new
    assert wm.challengers() == []
    assert weight_id_of(torch.load(wm.best_path, weights_only=True)["model_state"]) == new
    assert old in wm.experts()
    entry = wm.entries()[old]
    assert entry["role"] == "historical"
    assert entry["path"] == f"expert_pool/historical_{old}.pth"
    assert not list((wm.root / "challenger_cohort").iterdir())  # its file became best
    before = wm.entries()
    wm.promote(new)  # the current best: nothing changes
    assert wm.entries() == before
    wm.promote(old)  # a former best can come back; the replaced one is history now
    assert wm.best_id == old
    assert wm.entries()[new]["role"] == "historical"
    assert weight_id_of(wm.resolve(new)[0]) == new


def test_promote_and_resolve_refuse_unknown_ids(wm: WeightManager) -> None:
    with pytest.raises(ConfigError, match=f"unknown weight id.*{wm.best_id}"):
        wm.promote("0" * 16)
    with pytest.raises(ConfigError, match=r"'feedfacefeedface'.*use one of"):
        wm.resolve("feedfacefeedface")
    with pytest.raises(ConfigError, match="noisy id has no file"):
        wm.promote(noisy_id(wm.best_id, 0.1, 0))


def test_noisy_id_resolves_deterministically_to_base_plus_relative_noise(
        wm: WeightManager) -> None:
    std = 0.05
    nid = noisy_id(wm.best_id, std, 7)
    assert nid == f"{wm.best_id}~noise0.05s7"
    base, _ = wm.resolve(wm.best_id)
    noisy, _ = wm.resolve(nid)
    again, _ = WeightManager(wm.root).resolve(nid)  # another process, nothing cached
    assert _same(noisy.state_dict(), again.state_dict())
    assert not _same(noisy.state_dict(), wm.resolve(noisy_id(wm.best_id, std, 8))[0].state_dict())
    params = dict(base.named_parameters())
    for name, t in noisy.state_dict().items():
        ref = base.state_dict()[name]
        if name not in params:  # buffers (the neuron-pair indices) are left alone
            assert torch.equal(t, ref)
            continue
        rms = ref.pow(2).mean().sqrt()
        if rms == 0:  # relative noise: all-zero tensors (fresh decays) get none
            assert torch.equal(t, ref)
        elif ref.numel() >= 100:  # enough entries for a statistical check
            assert ((t - ref).std() / rms).item() == pytest.approx(std, rel=0.3)
    assert weight_id_of(base) == wm.best_id  # the shared base was not touched


@pytest.mark.parametrize(("args", "field"), [
    (("not-an-id", 0.1, 0), "weight_id"), (("0" * 16 + "~noise0.1s0", 0.1, 0), "weight_id"),
    (("0" * 16, 0.0, 0), "std"), (("0" * 16, float("inf"), 0), "std"),
    (("0" * 16, 0.1, -1), "seed"),
])
def test_noisy_id_refuses_bad_arguments(args: tuple, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=f"^{field}: "):
        noisy_id(*args)


def test_clear_challengers_deletes_their_files_and_entries(wm: WeightManager, tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, model = tiny_run
    ids = [wm.add_challenger(_changed(model, d), f"c{d:g}") for d in (1.0, 2.0)]
    assert wm.challengers() == ids
    assert wm.add_challenger(model, "same_as_best") == wm.best_id  # stored once, as best
    files = sorted(p.name for p in (wm.root / "challenger_cohort").iterdir())
    assert files == ["challenger_c1.pth", "challenger_c2.pth"]
    with pytest.raises(ConfigError, match="name 'c1' is taken"):
        wm.add_challenger(_changed(model, 3.0), "c1")
    with pytest.raises(ConfigError, match=r"^name: "):
        wm.add_challenger(model, "../escape")
    experts, best = wm.experts(), wm.best_id
    assert wm.clear_challengers() == ids
    assert wm.challengers() == []
    assert not list((wm.root / "challenger_cohort").iterdir())
    assert (wm.experts(), wm.best_id) == (experts, best)
    with pytest.raises(ConfigError, match="unknown weight id"):
        wm.resolve(ids[0])


def test_the_index_survives_reopening(wm: WeightManager, tiny_run) -> None:  # type: ignore[no-untyped-def]
    _, model = tiny_run
    eid = wm.add_expert(_changed(model, -1.0), note="kept")
    wm.promote(wm.add_challenger(_changed(model), "c1"))
    reopened = WeightManager(wm.root)
    assert reopened.entries() == wm.entries()
    assert (reopened.best_id, reopened.experts()) == (wm.best_id, wm.experts())
    assert reopened.entries()[eid]["note"] == "kept"
    assert not list(wm.root.glob("**/*.tmp"))  # atomic writes leave no temp files


def test_adding_a_model_of_another_config_is_refused(wm: WeightManager) -> None:
    from thinkgym.ctm_core.train import TrainConfig, build_run

    _, other = build_run(TrainConfig(task="parity", task_config={"length": 4}, model={
        "d_model": 12, "d_input": 8, "heads": 2, "n_synch_out": 4, "n_synch_action": 4,
        "memory_length": 3, "memory_hidden_dims": 2, "iterations": 3}))
    with pytest.raises(ConfigError, match=r"model config differs.*'d_model': \(12, 16\)"):
        wm.add_expert(other)


def test_a_file_changed_behind_the_managers_back_is_detected(wm: WeightManager) -> None:
    shutil.copyfile(wm.path_of(wm.experts()[0]), wm.best_path)
    with pytest.raises(CheckpointError, match=f"does not hold weights {wm.best_id}"):
        WeightManager(wm.root).resolve(wm.best_id)
