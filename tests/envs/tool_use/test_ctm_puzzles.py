"""The ctm_puzzles task set in ToolUse-v0, its tick cost, and the ctm_inner_engine benchmark."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import thinkgym  # noqa: F401
from thinkgym.envs.tool_use.ctm_puzzles import ctm_puzzles, in_split
from thinkgym.errors import ConfigError

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "ctm_inner_engine.py"


def _content(task: dict) -> str:
    if task["kind"] == "digits":
        return "\n".join(task["prompt"].splitlines()[1:9])
    return re.search(r"zeros in ([01]{16})", task["prompt"])[1]


def test_task_set_is_deterministic_by_seed() -> None:
    assert ctm_puzzles("train", seed=3, n_per_kind=20) == ctm_puzzles("train", seed=3,
                                                                      n_per_kind=20)
    assert ctm_puzzles("train", seed=3, n_per_kind=20) != ctm_puzzles("train", seed=4,
                                                                      n_per_kind=20)


def test_splits_are_disjoint_by_content_and_answers_are_right() -> None:
    train, test = ctm_puzzles("train"), ctm_puzzles("test")
    contents = {s: [_content(t) for t in tasks] for s, tasks in (("train", train),
                                                                   ("test", test))}
    assert not set(contents["train"]) & set(contents["test"])
    assert all(in_split(c, s) for s, cs in contents.items() for c in cs)
    for task, content in zip(test, contents["test"], strict=True):
        if task["kind"] == "parity":
            expected = np.cumsum([b == "0" for b in content]) % 2
            assert task["answer"] == "".join(map(str, expected))
        else:
            assert task["answer"] in list("0123456789")


def test_tool_use_resolves_the_named_task_set() -> None:
    env = gym.make("ToolUse-v0", tasks="ctm_puzzles", task_split="test")
    inner = env.unwrapped
    assert list(inner.tools) == ["ctm_think"]
    assert inner.verifier.name == "exact_match"
    assert [dict(t) for t in inner.tasks] == ctm_puzzles("test")
    with pytest.raises(ConfigError, match="task_split"):
        gym.make("ToolUse-v0", tasks=[{"prompt": "2+2?", "answer": "4"}], task_split="test")


def test_tick_cost_charges_what_ctm_think_reported() -> None:
    env = gym.make("ToolUse-v0", tasks="ctm_puzzles", task_split="test")
    _, info = env.reset(seed=0, options={"index": 0})
    bits = info["task"]["prompt"].split("zeros in ")[1][:16]
    call = {"name": "ctm_think", "arguments": {"task": "parity", "input": bits,
                                                "max_ticks": 5, "certainty": 1.0}}
    obs, reward, *_, info = env.step(f"<tool_call>{json.dumps(call)}</tool_call>")
    content = json.loads(obs.split("<tool_response>")[1].split("</tool_response>")[0])
    assert content["content"].endswith("ticks: 5")
    assert info["reward_components"]["ctm_tick_cost"]["weighted"] == pytest.approx(-0.05)
    assert reward == pytest.approx(-0.05)
    _, _, terminated, _, info = env.step("<answer>0</answer>")
    assert terminated
    assert info["reward_components"]["ctm_tick_cost"]["raw"] is None  # no call this turn


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "ctm_inner_engine.json"
    subprocess.run([sys.executable, str(BENCH), "--smoke", "--json", str(out)], check=True,
                   capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert set(result["policies"]) == {"never", "always", "learned"}
    for figures in result["policies"].values():
        assert 0.0 <= figures["accuracy"] <= 1.0
        assert figures["mean_ticks"] >= 0.0
    assert result["policies"]["never"]["mean_ticks"] == 0.0
    assert result["policies"]["always"]["per_kind"]["parity"]["mean_ticks"] == 24.0
