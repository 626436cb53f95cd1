from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from thinkgym.ctm_core.checkpoint import (
    bundled_checkpoints,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from thinkgym.ctm_core.evaluate import evaluate, format_report, plot_eval
from thinkgym.ctm_core.train import TrainConfig, build_run
from thinkgym.errors import CheckpointError, ConfigError, NumericalError

TINY_MODEL = {"d_model": 24, "d_input": 16, "heads": 2, "n_synch_out": 8, "n_synch_action": 8,
              "memory_length": 4, "memory_hidden_dims": 4, "iterations": 5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Two spinning OpenMP threads on a loaded 2-core machine are ~10x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    cfg = TrainConfig(task="maze", task_config={"size": 7, "embed_dim": 8}, model=TINY_MODEL)
    task, model = build_run(cfg)
    path = save_checkpoint(tmp_path / "m.pt", model, task, step=7, metrics={"accuracy": 0.5},
                           train_config=cfg.to_dict())
    return path, model


def test_round_trip_restores_outputs_and_meta(saved: tuple[Path, torch.nn.Module]) -> None:
    path, original = saved
    model, task, meta = load_checkpoint(path)
    assert task.name == "maze"
    assert task.config.size == 7
    assert (meta.step, meta.metrics, meta.task_name) == (7, {"accuracy": 0.5}, "maze")
    assert not model.training
    original.eval()
    batch = task.batch(range(3), "test")
    with torch.no_grad():
        a = original.rollout(batch.inputs)
        b = model.rollout(batch.inputs)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.certainty, b.certainty)


def test_missing_checkpoint_lists_bundled_names(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint file or bundled"):
        resolve_checkpoint(tmp_path / "nope.pt")


def test_garbage_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"definitely not a torch file")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(bad)


def test_bare_state_dict_names_missing_keys(tmp_path: Path,
                                            saved: tuple[Path, torch.nn.Module]) -> None:
    _, model = saved
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(CheckpointError, match="missing checkpoint keys"):
        load_checkpoint(bare)


def _rewrite(path: Path, tmp_path: Path, **changes: object) -> Path:
    raw = torch.load(path, weights_only=True)
    for key, value in changes.items():
        raw[key] = value
    out = tmp_path / "changed.pt"
    torch.save(raw, out)
    return out


def test_other_version_is_rejected(tmp_path: Path, saved: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(_rewrite(saved[0], tmp_path, version=99))


def test_unknown_task_in_checkpoint(tmp_path: Path, saved: tuple[Path, torch.nn.Module]) -> None:
    path = _rewrite(saved[0], tmp_path, task={"name": "chess", "config": {}})
    with pytest.raises(CheckpointError, match="chess"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_name_the_tensor(tmp_path: Path,
                                                  saved: tuple[Path, torch.nn.Module]) -> None:
    raw = torch.load(saved[0], weights_only=True)
    config = dict(raw["model_config"], d_model=32)  # the stored weights are for d_model=24
    with pytest.raises(CheckpointError, match=r"shape mismatch .*start_history"):
        load_checkpoint(_rewrite(saved[0], tmp_path, model_config=config))


def test_invalid_model_config_is_a_checkpoint_error(tmp_path: Path,
                                                    saved: tuple[Path, torch.nn.Module]) -> None:
    raw = torch.load(saved[0], weights_only=True)
    config = dict(raw["model_config"], heads=3)
    with pytest.raises(CheckpointError, match="heads"):
        load_checkpoint(_rewrite(saved[0], tmp_path, model_config=config))


def test_nan_weights_are_never_saved(tmp_path: Path, saved: tuple[Path, torch.nn.Module]) -> None:
    model, task, _ = load_checkpoint(saved[0])
    with torch.no_grad():
        model.output_proj.weight[0, 0] = float("nan")
    with pytest.raises(NumericalError, match=r"output_proj\.weight"):
        save_checkpoint(tmp_path / "nan.pt", model, task)
    assert not (tmp_path / "nan.pt").exists()


def test_eval_result_keys_and_consistency(saved: tuple[Path, torch.nn.Module]) -> None:
    model, task, _ = load_checkpoint(saved[0])
    result = evaluate(model, task, samples=10, batch_size=4, ticks=6, progress=False)
    data = result.to_dict()
    for key in ("accuracy_most_certain", "accuracy_per_tick", "certainty_per_tick",
                "metrics_most_certain", "metrics_per_tick", "most_certain_tick_counts"):
        assert key in data
    assert len(data["accuracy_per_tick"]) == 6  # ticks beyond training are allowed
    assert sum(data["most_certain_tick_counts"]) == 10
    assert set(data["metrics_per_tick"]) == {"accuracy", "route_accuracy", "goal_reached"}
    # The most-certain accuracy is a per-sample pick among the ticks, so it is bounded by them.
    per_tick = data["accuracy_per_tick"]
    assert min(per_tick) - 1e-6 <= data["accuracy_most_certain"] <= 1.0
    json.dumps(data)
    assert "accuracy_most_certain" in format_report(result)


@pytest.mark.parametrize("kwargs", [{"samples": 0}, {"batch_size": 0}, {"start_index": -1}])
def test_eval_refuses_an_empty_evaluation(kwargs: dict[str, int]) -> None:
    # Refused up front: with no batch to run, the per-tick sums would never be set.
    task, model = build_run(TrainConfig(task="parity", task_config={"length": 4},
                                        model=TINY_MODEL))
    with pytest.raises(ConfigError, match="samples and batch_size must be >= 1"):
        evaluate(model, task, progress=False, **kwargs)


def test_eval_most_certain_pick_is_per_sample() -> None:
    # A model whose certainty peaks at a known tick: check against a hand computation.
    cfg = TrainConfig(task="parity", task_config={"length": 4}, model=TINY_MODEL)
    task, model = build_run(cfg)
    model.eval()
    batch = task.batch(range(12), "test")
    with torch.no_grad():
        rollout = model.rollout(batch.inputs)
    values = task.metric_values(rollout.logits, batch)["accuracy"]  # (B, T)
    want = values[torch.arange(12), rollout.certainty.argmax(-1)].mean()
    result = evaluate(model, task, samples=12, batch_size=5, progress=False)
    assert abs(result.accuracy_most_certain - float(want)) < 1e-6
    assert torch.allclose(torch.tensor(result.accuracy_per_tick), values.mean(0), atol=1e-6)


def test_cli_eval_writes_json_and_png(tmp_path: Path, saved: tuple[Path, torch.nn.Module],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from thinkgym.cli import main

    out_json, out_png = tmp_path / "e.json", tmp_path / "e.png"
    code = main(["ctm", "eval", "--checkpoint", str(saved[0]), "--samples", "6", "--json",
                 str(out_json), "--png", str(out_png), "--no-progress", "--threads", "1"])
    assert code == 0
    data = json.loads(out_json.read_text())
    assert len(data["accuracy_per_tick"]) == TINY_MODEL["iterations"]
    assert 0.0 <= data["accuracy_most_certain"] <= 1.0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy_most_certain" in capsys.readouterr().out


def test_cli_eval_bad_checkpoint_raises(tmp_path: Path) -> None:
    from thinkgym.cli import main

    with pytest.raises(CheckpointError, match="no checkpoint"):
        main(["ctm", "eval", "--checkpoint", str(tmp_path / "missing.pt"), "--no-progress"])


def test_plot_eval_png(tmp_path: Path, saved: tuple[Path, torch.nn.Module]) -> None:
    model, task, _ = load_checkpoint(saved[0])
    result = evaluate(model, task, samples=4, progress=False)
    assert plot_eval(result, tmp_path / "sub" / "p.png").stat().st_size > 1000


@pytest.mark.parametrize("name", bundled_checkpoints())
def test_bundled_checkpoints_load_and_are_small(name: str) -> None:
    path = resolve_checkpoint(name)
    assert path.stat().st_size < 5_000_000
    model, task, meta = load_checkpoint(name)
    _, raw_meta = read_checkpoint(name)
    assert not raw_meta.has_training_state
    assert meta.metrics["samples"] >= 500  # stored figures come from a real held-out eval
    result = evaluate(model, task, samples=128, progress=False)
    # The stored eval and a fresh one on other held-out items agree (same checkpoint).
    assert abs(result.accuracy_most_certain - meta.metrics["accuracy_most_certain"]) < 0.1


def test_parity16_is_bundled_and_accurate() -> None:
    if "parity16" not in bundled_checkpoints():
        pytest.fail("the parity16 checkpoint is not bundled in thinkgym/ctm_core/checkpoints")
    model, task, _ = load_checkpoint("parity16")
    result = evaluate(model, task, samples=256, start_index=50_000, progress=False)
    assert result.accuracy_most_certain >= 0.9


def test_export_strips_training_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from thinkgym.cli import main
    from thinkgym.ctm_core.train import train

    cfg = TrainConfig(task="parity", task_config={"length": 4}, model=TINY_MODEL, steps=2,
                      batch_size=4, eval_samples=4, progress=False, num_threads=1,
                      out_dir=str(tmp_path / "run"))
    trained = train(cfg)
    slim = tmp_path / "slim.pt"
    assert main(["ctm", "export", "--checkpoint", str(tmp_path / "run" / "last.pt"),
                 "--out", str(slim), "--eval-samples", "8", "--threads", "1"]) == 0
    model, _, meta = load_checkpoint(slim)
    assert not meta.has_training_state
    assert meta.step == 2
    assert meta.metrics["samples"] == 8
    assert meta.train_config is not None
    assert meta.train_config["steps"] == 2
    assert torch.equal(model.output_proj.weight, trained.model.output_proj.weight)
    assert slim.stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size
    assert "wrote" in capsys.readouterr().out
