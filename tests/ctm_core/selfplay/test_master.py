"""MasterTrainer: the score, the tournament's promotion rule, and a whole tiny run."""

from __future__ import annotations

import copy
import csv

import pytest
import torch

from thinkgym.ctm_core.selfplay.generator import GeneratorConfig
from thinkgym.ctm_core.selfplay.master import (
    MasterTrainer,
    Measurement,
    SelfPlayConfig,
    state_improvement_score,
)
from thinkgym.errors import ConfigError


def test_score_is_certainty_gain_plus_loss_drop() -> None:
    losses = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    certainty = torch.tensor([[0.1, 0.2, 0.4, 0.8], [0.5, 0.5, 0.5, 0.5]])
    # row 0: pairs t=0,1: (0.4-0.1)+(0.8-0.2) + (4-2)+(3-1) = 0.9 + 4
    assert torch.allclose(state_improvement_score(losses, certainty), torch.tensor([4.9, 0.0]))
    with pytest.raises(ConfigError):
        state_improvement_score(losses[:, :2], certainty[:, :2])


def _checkpoint(tmp_path, tiny_run) -> str:  # type: ignore[no-untyped-def]
    from thinkgym.ctm_core.checkpoint import save_checkpoint

    task, model = tiny_run
    return str(save_checkpoint(tmp_path / "start.pt", model, task))


def _small(tmp_path, checkpoint: str, **kw) -> SelfPlayConfig:  # type: ignore[no-untyped-def]
    return SelfPlayConfig(checkpoint=checkpoint, root=str(tmp_path / "run"),
                          generator=GeneratorConfig(batches=2, batch_size=8, ticks=12,
                                                    chunk_ticks=4, rule="loose",
                                                    weight_noise=0.05),
                          unit_steps=3, unit_batch=8, val_samples=16, eval_samples=16,
                          onm_steps=3, progress=False, **kw)


@pytest.mark.parametrize(("scores", "winner"), [
    ({"best": 1.0, "seed0": 0.5, "seed1": 0.9}, "best"),
    ({"best": 1.0, "seed0": 1.5, "seed1": 2.0}, "seed1"),
    ({"best": 1.0, "seed0": 1.0, "seed1": 0.2}, "best"),  # a tie keeps the champion
])
def test_tournament_promotes_only_a_better_challenger(tmp_path, tiny_run, scores, winner) -> None:  # type: ignore[no-untyped-def]
    trainer = MasterTrainer(_small(tmp_path, _checkpoint(tmp_path, tiny_run)))
    trainer.setup()
    best, _ = trainer.weights.resolve(trainer.weights.best_id)
    challengers = {}
    by_value = {}
    for k, name in enumerate(("seed0", "seed1")):
        model = copy.deepcopy(best)
        with torch.no_grad():
            model.start_z[0] += k + 1  # distinct weights, recognisable by start_z[0]
        challengers[name] = trainer.weights.add_challenger(model, name)
        by_value[round(float(model.start_z[0].detach()), 4)] = scores[name]
    by_value[round(float(best.start_z[0].detach()), 4)] = scores["best"]
    trainer._measure = lambda model, items: Measurement(  # type: ignore[method-assign]
        by_value[round(float(model.start_z[0].detach()), 4)], 0.0, 0.0, 0.0)
    got, table = trainer.tournament(challengers)
    assert got == winner
    assert table == scores


def test_promotion_moves_the_old_best_to_the_expert_pool(tmp_path, tiny_run) -> None:  # type: ignore[no-untyped-def]
    trainer = MasterTrainer(_small(tmp_path, _checkpoint(tmp_path, tiny_run)))
    trainer.setup()
    old = trainer.weights.best_id
    model, _ = trainer.weights.resolve(old)
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.start_z.add_(0.5)
    new = trainer.weights.add_challenger(model, "c")
    trainer.weights.promote(new)
    assert trainer.weights.best_id == new
    assert old in trainer.weights.experts()
    trainer.weights.resolve(old)  # still resolvable: its pairs stay traceable


def test_a_tiny_run_end_to_end(tmp_path, tiny_run) -> None:  # type: ignore[no-untyped-def]
    cfg = _small(tmp_path, _checkpoint(tmp_path, tiny_run), cycles=2, onm=True)
    logs = MasterTrainer(cfg).run()
    assert [r.cycle for r in logs] == [0, 1, 2]
    assert all(r.pairs_written > 0 for r in logs[1:])
    root = tmp_path / "run"
    rows = list(csv.DictReader((root / "cycles.csv").open()))
    assert [int(r["cycle"]) for r in rows] == [0, 1, 2]
    assert (root / "curves.png").stat().st_size > 1000
    assert (root / "onm.pt").is_file()
    assert float(rows[2]["q_expert"]) == pytest.approx(cfg.q_expert * cfg.q_decay)
    with pytest.raises(ConfigError, match="not empty"):
        MasterTrainer(cfg).run()
