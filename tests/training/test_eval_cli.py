from __future__ import annotations

import json

import pytest

from thinkgym.cli import build_parser, main
from thinkgym.errors import ConfigError


def test_eval_is_registered_with_its_defaults() -> None:
    args = build_parser().parse_args(["eval", "--env", "Reasoning-v0"])
    assert callable(args.func)
    assert (args.episodes, args.first_seed, args.temperature, args.batch_size) == (
        50, 100_000, 0.0, 16)
    assert (args.model, args.max_new_tokens, args.max_completion_tokens, args.json) == (
        None, None, None, None)


def test_eval_help_works(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: thinkgym eval" in out
    assert "--max-new-tokens" in out


@pytest.mark.parametrize(("argv", "match"), [
    (["--env", "NoSuchEnv-v0"], "not registered"),
    (["--env", "Reasoning-v0", "--split", "easy"], "--split"),
    (["--env", "Reasoning-v0", "--episodes", "0"], "--episodes"),
])
def test_bad_arguments_are_config_errors(argv, match) -> None:
    with pytest.raises(ConfigError, match=match):
        main(["eval", *argv, "--no-progress"])


def test_eval_end_to_end_on_the_tiny_model(tmp_path, capsys) -> None:
    out = tmp_path / "eval" / "result.json"
    assert main(["eval", "--env", "Reasoning-v0", "--episodes", "2", "--first-seed", "7",
                 "--json", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    for row in ("success", "correctness", "lenient", "format rate", "format failures",
                "mean return", "mean turns", "tokens", "cut-off rate", "seconds"):
        assert row in table
    result = json.loads(out.read_text())
    assert {"success", "success_metric", "lenient", "format_rate", "format_failures",
            "mean_reward", "mean_turns", "mean_completion_tokens", "cut_off", "seconds",
            "episodes", "answers", "references", "components", "config"} <= set(result)
    assert result["episodes"] == 2
    assert result["success_metric"] == "correctness"
    assert len(result["answers"]) == len(result["references"]) == 2
    # no --model: the tiny model with its training-time budgets, as `thinkgym train` uses it
    assert (result["config"]["max_new_tokens"], result["config"]["max_completion_tokens"]) == (
        64, 512)
    assert result["config"]["first_seed"] == 7
