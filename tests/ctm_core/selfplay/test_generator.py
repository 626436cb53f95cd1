"""DataGenerator: the three modes accept and write the same pairs; nothing is lost."""

from __future__ import annotations

import pytest
import torch

from thinkgym.ctm_core.selfplay.generator import DataGenerator, GeneratorConfig
from thinkgym.errors import ConfigError


def _keys(buffer) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    batch = buffer.load_batch(buffer.count())
    return sorted(zip(batch.weight_ids, [d.index for d in batch.data_ids],
                      batch.tick.tolist(), strict=True))


@pytest.mark.parametrize("rule", ["strict", "loose"])
def test_modes_write_the_same_pairs(managed, tmp_path, rule) -> None:  # type: ignore[no-untyped-def]
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer

    weights, _ = managed
    base = dict(batches=3, batch_size=10, ticks=23, chunk_ticks=4, rule=rule, p_best=0.5,
                weight_noise=0.05, seed=3)
    keys = {}
    for mode, stages in (("serial", "threads"), ("pipeline", "threads"),
                         ("pipeline", "processes"), ("all_at_once", "threads")):
        buffer = DiskReplayBuffer(tmp_path / f"{mode}-{stages}", capacity=10**6,
                                  dtype=torch.float32)
        cfg = GeneratorConfig(**base, mode=mode, stages=stages, filter_workers=3, writers=2,
                              queue_size=1)
        report = DataGenerator(weights, buffer).run(cfg)
        assert report.pairs_evaluated == 3 * 10 * 22  # ticks+1 states -> ticks-1 pairs per row
        assert report.pairs_accepted == report.pairs_written == buffer.count() > 0
        assert sum(report.accepted_by_tick) == report.pairs_accepted
        assert sum(report.written_by_buffer.values()) == report.pairs_written
        keys[mode, stages] = _keys(buffer)
    assert len({tuple(v) for v in keys.values()}) == 1


def test_pairs_go_to_the_buffer_of_their_weights(managed) -> None:  # type: ignore[no-untyped-def]
    weights, buffer = managed
    report = DataGenerator(weights, buffer).run(GeneratorConfig(
        batches=6, batch_size=8, ticks=15, chunk_ticks=5, rule="loose", p_best=0.5, seed=1))
    assert set(report.rollouts_by_source) == {"best", "expert"}
    experts = set(weights.experts())
    for name, want_expert in (("expert", True), ("self_play", False)):
        if buffer.count(name):
            ids = set(buffer.load_batch(buffer.count(name), buffer=name).weight_ids)
            assert (ids <= experts) == want_expert
            assert (weights.best_id in ids) == (not want_expert)


def test_stored_pairs_are_exact_transitions(managed) -> None:  # type: ignore[no-untyped-def]
    """Two ticks of the producing weights from a stored State_t give its State_{t+2}."""
    from thinkgym.ctm_core.selfplay.storage import regenerate

    weights, buffer = managed
    DataGenerator(weights, buffer).run(GeneratorConfig(
        batches=2, batch_size=8, ticks=12, chunk_ticks=5, rule="loose", p_best=0.5,
        weight_noise=0.1, seed=2, mode="serial"))
    batch = buffer.load_batch(min(20, buffer.count()), rng=0)
    for i in range(len(batch)):
        row = batch.index([i])
        model, _ = weights.resolve(row.weight_ids[0])
        with torch.no_grad():
            kv = model.compute_kv(regenerate(row.data_ids).inputs)
            mid, _, _ = model.tick(row.before(), kv)
            after, _, certainty = model.tick(mid, kv)
        assert after.allclose(row.after(), rtol=1e-4, atol=1e-5)
        assert torch.allclose(certainty, row.certainties[:, 2], atol=1e-5)


@pytest.mark.parametrize("stages", ["threads", "processes"])
def test_a_failing_stage_stops_the_pipeline(managed, monkeypatch, stages) -> None:  # type: ignore[no-untyped-def]
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer

    weights, buffer = managed

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(DiskReplayBuffer, "save_pairs", broken)  # forked workers inherit it
    cfg = GeneratorConfig(batches=4, batch_size=8, ticks=40, chunk_ticks=2, rule="loose",
                          queue_size=1, stages=stages)
    with pytest.raises((OSError, RuntimeError), match="disk full"):
        DataGenerator(weights, buffer).run(cfg)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="p_best"):
        GeneratorConfig(p_best=1.5)
    with pytest.raises(ConfigError, match="mode"):
        GeneratorConfig(mode="parallel")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rule"):
        GeneratorConfig(rule="any")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="chunk_ticks"):
        GeneratorConfig(chunk_ticks=0)
