from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from thinkgym.ctm_core.checkpoint import load_checkpoint, read_checkpoint
from thinkgym.ctm_core.cli import configure, parse_assignments, train_config_from_args
from thinkgym.ctm_core.train import TrainConfig, build_run, train, train_step
from thinkgym.errors import CheckpointError, ConfigError, RegistryError

TINY_MODEL = {"d_model": 24, "d_input": 16, "heads": 2, "n_synch_out": 8, "n_synch_action": 8,
              "memory_length": 4, "memory_hidden_dims": 4, "iterations": 4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Two spinning OpenMP threads on a loaded 2-core machine are ~10x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**overrides: object) -> TrainConfig:
    base: dict = {"task": "parity", "task_config": {"length": 6}, "model": TINY_MODEL,
                  "steps": 4, "batch_size": 8, "warmup_steps": 10, "eval_samples": 16,
                  "progress": False, "num_threads": 1}
    base.update(overrides)
    return TrainConfig(**base)


def test_train_step_overfits_a_fixed_batch() -> None:
    task, model = build_run(tiny())
    batch = task.batch(range(8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = [train_step(model, task, batch, optimizer).loss for _ in range(20)]
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "output_proj.weight" in changed
    assert "backbone.bit.weight" in changed  # gradients reach the task backbone
    assert min(losses[-3:]) < 0.9 * losses[0], losses


def test_train_writes_checkpoints_and_eval(tmp_path: Path) -> None:
    result = train(tiny(out_dir=str(tmp_path), checkpoint_every=2))
    assert result.steps == 4
    assert result.checkpoint == tmp_path / "model.pt"
    assert (tmp_path / "last.pt").is_file()
    assert set(result.eval_metrics) >= {"accuracy_most_certain", "accuracy_per_tick",
                                        "certainty_per_tick"}
    assert len(result.eval_metrics["accuracy_per_tick"]) == TINY_MODEL["iterations"]
    _, meta = read_checkpoint(tmp_path / "model.pt")
    assert not meta.has_training_state  # the slim file to share
    assert meta.step == 4
    assert meta.train_config is not None
    assert meta.train_config["task_config"] == {"length": 6}
    _, last_meta = read_checkpoint(tmp_path / "last.pt")
    assert last_meta.has_training_state


def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = train(tiny(out_dir=str(tmp_path / "a")))
    train(tiny(steps=2, out_dir=str(tmp_path / "b")))
    resumed = train(tiny(out_dir=str(tmp_path / "b"), resume=True))
    for key, value in straight.model.state_dict().items():
        assert torch.allclose(value, resumed.model.state_dict()[key], atol=1e-6), key
    model, _, meta = load_checkpoint(tmp_path / "b" / "model.pt")
    assert meta.step == 4
    assert torch.equal(model.output_proj.weight, resumed.model.output_proj.weight)


def test_resume_refuses_a_different_run(tmp_path: Path) -> None:
    train(tiny(steps=2, out_dir=str(tmp_path)))
    with pytest.raises(CheckpointError, match="batch_size"):
        train(tiny(batch_size=4, out_dir=str(tmp_path), resume=True))


def test_model_overrides_cannot_fight_the_task() -> None:
    with pytest.raises(ConfigError, match="prediction_shape"):
        build_run(tiny(model={**TINY_MODEL, "prediction_shape": [3, 2]}))


def test_unknown_task_raises_registry_error() -> None:
    with pytest.raises(RegistryError, match="parity"):
        build_run(tiny(task="partiy"))


@pytest.mark.parametrize(("field", "value"), [("steps", 0), ("lr", 2.0), ("batch_size", -1)])
def test_train_config_validation(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        tiny(**{field: value})


def test_resume_needs_out_dir() -> None:
    with pytest.raises(ConfigError, match="out_dir"):
        tiny(resume=True)


def _ctm_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thinkgym ctm")
    configure(parser)
    return parser


def test_cli_train_flags_map_to_train_config() -> None:
    args = _ctm_parser().parse_args([
        "train", "--task", "maze", "--size", "9", "--task-arg", "embed_dim=16",
        "--ticks", "30", "--d-model", "96", "--synch", "16", "--model-arg", "dropout=0.1",
        "--steps", "50", "--batch-size", "32", "--lr", "3e-4", "--out", "runs/x", "--resume"])
    cfg = train_config_from_args(args)
    assert cfg.task == "maze"
    assert cfg.task_config == {"embed_dim": 16, "size": 9}
    assert cfg.model == {"dropout": 0.1, "iterations": 30, "d_model": 96, "n_synch_out": 16,
                         "n_synch_action": 16}
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.out_dir, cfg.resume) == (
        50, 32, 3e-4, "runs/x", True)


def test_cli_eval_flags() -> None:
    args = _ctm_parser().parse_args(["eval", "--checkpoint", "parity16", "--samples", "10",
                                     "--json", "o.json", "--png", "o.png", "--ticks", "40"])
    assert (args.checkpoint, args.samples, args.json, args.png, args.ticks) == (
        "parity16", 10, "o.json", "o.png", 40)


def test_cli_without_subcommand_prints_help_and_fails(
        capsys: pytest.CaptureFixture[str]) -> None:
    from thinkgym.cli import main

    assert main(["ctm"]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().out


def test_cli_assignment_errors_name_the_flag() -> None:
    assert parse_assignments(["a=1", "b=x", "c=[1, 2]"], "--task-arg") == {
        "a": 1, "b": "x", "c": [1, 2]}
    with pytest.raises(ConfigError, match="--task-arg"):
        parse_assignments(["length16"], "--task-arg")


def test_cli_train_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from thinkgym.cli import main

    out = tmp_path / "run"
    code = main(["ctm", "train", "--task", "sort", "--length", "4", "--steps", "2",
                 "--batch-size", "4", "--ticks", "3", "--d-model", "16", "--synch", "4",
                 "--d-input", "8", "--heads", "2", "--memory-length", "3",
                 "--model-arg", "memory_hidden_dims=2", "--eval-samples", "8",
                 "--out", str(out), "--no-progress", "--threads", "1"])
    assert code == 0
    assert (out / "model.pt").is_file()
    assert (out / "eval.json").is_file()
    assert "held-out accuracy" in capsys.readouterr().out
