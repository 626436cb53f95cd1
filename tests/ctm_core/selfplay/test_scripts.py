"""Smoke runs of the self-play experiment subcommands and of ``thinkgym ctm selfplay``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "examples" / "selfplay_experiments.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize(("command", "expect"), [
    ("debug-step", "debug step: PASSED"),
    ("filter-ab", "share of accepted pairs"),
    ("schedule-ab", "all-at-once peak RSS"),
    ("train-onm", "val loss at step 0"),
    ("onm-ab", "ONM start"),
])
def test_experiment_prints_its_table(command: str, expect: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), command, "--smoke", "--json", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout
    assert json.loads(out.read_text())


def test_selfplay_cli_runs_a_cycle(tmp_path: Path) -> None:
    root = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "thinkgym.cli", "ctm", "selfplay", "--root", str(root),
         "--cycles", "1", "--batches", "1", "--batch-size", "16", "--ticks", "20",
         "--unit-steps", "2", "--val-samples", "32", "--eval-samples", "32", "--onm",
         "--json", str(tmp_path / "cycles.json")],
        capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "winner" in proc.stdout
    rows = json.loads((tmp_path / "cycles.json").read_text())
    assert [r["cycle"] for r in rows] == [0, 1]
    for name in ("cycles.csv", "curves.png", "onm.pt", "config.json"):
        assert (root / name).is_file(), name
