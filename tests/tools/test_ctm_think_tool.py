"""The ctm_think tool: schema, answers, stopping rule, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkgym.errors import ToolError, ToolValidationError
from thinkgym.tools.ctm_think import ctm_think, parse_input


def _parse(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines())


def test_schema_declares_arguments() -> None:
    params = ctm_think.parameters
    assert params["required"] == ["task", "input"]
    assert params["properties"]["task"]["enum"] == ["parity", "sort", "digits"]
    assert params["properties"]["max_ticks"]["default"] == 32


def test_answer_matches_the_model_rollout(tiny_ctm_checkpoint: Path) -> None:
    import torch

    from thinkgym.ctm_core.checkpoint import load_checkpoint

    out = _parse(ctm_think(task="parity", input="0110 1001", max_ticks=5, certainty=1.0,
                           checkpoint=str(tiny_ctm_checkpoint)))
    assert out["ticks"] == "5"   # certainty 1.0 is never reached: runs to max_ticks
    model, task, _ = load_checkpoint(tiny_ctm_checkpoint)
    x = torch.tensor([[-1.0, 1, 1, -1, 1, -1, -1, 1]])
    with torch.no_grad():
        roll = model.rollout(x, ticks=5)
    expected = task.split_logits(roll.logits)[0, :, :, -1].argmax(-1)
    assert out["answer"] == "".join(str(int(v)) for v in expected)
    assert float(out["certainty"]) == pytest.approx(float(roll.certainty[0, -1]), abs=1e-3)


def test_stops_once_certain(tiny_ctm_checkpoint: Path) -> None:
    out = _parse(ctm_think(task="parity", input="01101001", max_ticks=50, certainty=1e-6,
                           checkpoint=str(tiny_ctm_checkpoint)))
    assert out["ticks"] == "1"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "parity", "input": "0110"}, ToolError, "8 characters"),
        ({"task": "parity", "input": "0120abcd"}, ToolError, "0/1"),
        ({"task": "sort", "input": "1,2"}, ToolError, "solves 'parity'"),
        ({"task": "parity", "input": "01101001", "max_ticks": 0}, ToolError, "max_ticks"),
        ({"task": "chess", "input": "e4"}, ToolValidationError, "task"),
    ],
)
def test_bad_arguments_become_tool_errors(tiny_ctm_checkpoint: Path, kwargs: dict,
                                          error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ctm_think(checkpoint=str(tiny_ctm_checkpoint), **kwargs)


def test_missing_checkpoint_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="cannot load"):
        ctm_think(task="parity", input="01", checkpoint="/nonexistent/ckpt.pt")


def test_parse_sort_numbers() -> None:
    assert parse_input("sort", "0.5, -1 2", 3).tolist() == [0.5, -1.0, 2.0]


def test_registered_as_a_builtin_tool() -> None:
    from thinkgym.tools import TOOLS

    assert TOOLS.get("ctm_think") is ctm_think


def test_digits_glyph_grid_round_trips_the_image() -> None:
    import numpy as np

    from thinkgym.tools.ctm_think import render_glyph

    image = np.arange(64, dtype=np.float32).reshape(8, 8) % 17 / 16.0
    grid = render_glyph(image)
    assert len(grid.splitlines()) == 8
    assert np.array_equal(parse_input("digits", grid, 1)[0], image)
    assert np.array_equal(parse_input("digits", grid.replace("\n", "/"), 1)[0], image)


@pytest.mark.parametrize("text", ["0" * 63, "0" * 63 + "h", "zz"])
def test_bad_digits_grid_is_a_tool_error(text: str) -> None:
    with pytest.raises(ToolError, match="8 rows of 8"):
        parse_input("digits", text, 1)


def test_digits_checkpoint_reads_a_held_out_glyph() -> None:
    from thinkgym.envs.tool_use.ctm_puzzles import ctm_puzzles

    task = ctm_puzzles("test", n_per_kind=1)[1]
    grid = "\n".join(task["prompt"].splitlines()[1:9])
    out = _parse(ctm_think(task="digits", input=grid, max_ticks=16, certainty=1.0))
    assert out["answer"] == task["answer"]
    assert 1 <= int(out["ticks"]) <= 16
