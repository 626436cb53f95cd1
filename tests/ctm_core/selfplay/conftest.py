"""A tiny parity CTM and a managed weight directory, shared by the self-play tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {"d_model": 16, "d_input": 8, "heads": 2, "n_synch_out": 4, "n_synch_action": 4,
        "memory_length": 3, "memory_hidden_dims": 2, "iterations": 6}


@pytest.fixture
def tiny_run():  # type: ignore[no-untyped-def]
    """(task, model) of a freshly initialised tiny parity-4 CTM (eval mode)."""
    from thinkgym.ctm_core.train import TrainConfig, build_run

    task, model = build_run(TrainConfig(task="parity", task_config={"length": 4}, model=TINY))
    return task, model.eval()


@pytest.fixture
def managed(tmp_path: Path, tiny_run):  # type: ignore[no-untyped-def]
    """(WeightManager, DiskReplayBuffer) in tmp_path, best = the tiny model, 2 experts."""
    from thinkgym.ctm_core.selfplay.buffer import DiskReplayBuffer
    from thinkgym.ctm_core.selfplay.weights import WeightManager

    task, model = tiny_run
    weights = WeightManager.create(tmp_path / "weights", model, task, n_random_experts=2, seed=0)
    return weights, DiskReplayBuffer(tmp_path / "replay", capacity=1_000_000,
                                     dtype=__import__("torch").float32)
