from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thinkgym.cli import build_parser, main
from thinkgym.errors import ConfigError


def test_train_subcommands_are_registered() -> None:
    parser = build_parser()
    for sub in ("sft", "grpo", "reinforce"):
        args = parser.parse_args(["train", sub])
        assert callable(args.func)
    args = parser.parse_args(["train", "grpo", "--env", "SearchQA-v0", "--split", "easy",
                              "--model", "some/dir", "--steps", "3", "--generations", "2"])
    assert (args.env, args.split, args.model, args.steps, args.generations) == (
        "SearchQA-v0", "easy", "some/dir", 3, 2)


@pytest.mark.parametrize("sub", ["sft", "grpo", "reinforce"])
def test_help_works(sub, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", sub, "--help"])
    assert exc.value.code == 0
    assert "usage: thinkgym train " + sub in capsys.readouterr().out


def test_train_without_subcommand_prints_help(capsys) -> None:
    assert main(["train"]) == 2
    assert "sft" in capsys.readouterr().out


def test_split_is_only_for_searchqa(tmp_path) -> None:
    with pytest.raises(ConfigError, match="--split"):
        main(["train", "sft", "--env", "ToolCall-v0", "--split", "easy",
              "--out", str(tmp_path / "x"), "--no-progress"])


def test_parser_does_not_import_heavy_libraries() -> None:
    code = ("import sys; from thinkgym.cli import build_parser; "
            "build_parser().parse_args(['train', 'grpo', '--steps', '1']); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'transformers', 'trl'}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "[]"


def _train_sft(sft_dir) -> None:
    assert main(["train", "sft", "--env", "ToolCall-v0", "--episodes", "4", "--steps", "1",
                 "--out", str(sft_dir), "--no-progress"]) == 0


def test_train_sft_end_to_end(tmp_path) -> None:
    sft_dir = tmp_path / "sft"
    _train_sft(sft_dir)
    assert (sft_dir / "config.json").is_file()
    assert (sft_dir / "thinkgym_tiny.json").is_file()  # so grpo keeps the tiny-model defaults
    sft_args = json.loads((sft_dir / "thinkgym_sft.json").read_text())
    assert sft_args["learning_rate"] == 3e-3  # the tiny default, not the 1.5B one
    assert sft_args["max_completion_tokens"] == 512


@pytest.mark.slow  # ~5 s on a quiet machine, a minute or more on the loaded shared one
def test_sft_then_grpo_end_to_end(tmp_path) -> None:
    sft_dir, grpo_dir = tmp_path / "sft", tmp_path / "grpo"
    _train_sft(sft_dir)
    assert main(["train", "grpo", "--env", "ToolCall-v0", "--model", str(sft_dir),
                 "--prompts", "2", "--generations", "2", "--prompts-per-step", "1",
                 "--steps", "1", "--max-new-tokens", "8", "--max-completion-tokens", "48",
                 "--curves-every", "1", "--out", str(grpo_dir), "--no-progress"]) == 0
    assert (grpo_dir / "model.safetensors").is_file()
    assert (grpo_dir / "curves.png").stat().st_size > 0
    log = json.loads((grpo_dir / "trainer_state.json").read_text())["log_history"]
    assert log[0]["step"] == 1
    assert "rewards/answer_guessing/mean" in log[0]


@pytest.mark.slow  # builds the SearchQA index, SFT + GRPO + three evaluations: minutes on CPU
def test_example_script_runs_with_tiny_settings(tmp_path) -> None:
    from pathlib import Path

    script = Path(__file__).parents[2] / "examples" / "train_search_agent_grpo.py"
    assert len(script.read_text().splitlines()) <= 150
    run = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "run"), "--sft-episodes", "8",
         "--sft-steps", "2", "--grpo-prompts", "2", "--grpo-steps", "1", "--generations", "2",
         "--max-new-tokens", "16", "--max-completion-tokens", "320", "--eval-episodes", "2"],
        capture_output=True, text=True, timeout=1200, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    for stage in ("base", "sft", "grpo"):
        assert f"{stage} " in run.stdout
    assert (tmp_path / "run" / "grpo" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "grpo" / "curves.png").is_file()
