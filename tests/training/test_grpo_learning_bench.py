"""benchmarks/grpo_learning.py: the second metric, the CPU budget and a smoke run of the script."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "grpo_learning.py"


@pytest.fixture(scope="module")
def bench() -> object:
    spec = importlib.util.spec_from_file_location("grpo_learning_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contains_gold_needs_whole_words_after_normalisation(bench) -> None:
    assert bench.contains_gold("The answer is 1818.", ("1818",))
    assert bench.contains_gold("the  LISBON", ("Lisbon", "Lisboa"))
    assert not bench.contains_gold("18181", ("1818",))
    assert not bench.contains_gold(None, ("1818",))
    assert not bench.contains_gold("anything", ("",))


def _state(step: int = 1) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, log_history=[{"learning_rate": 1.0}])


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_budget_stops_after_the_budget_and_not_before(bench) -> None:
    cb = bench.cpu_budget(0.2)
    control = SimpleNamespace(should_training_stop=False)
    cb.on_step_end(None, _state(), control)
    assert not control.should_training_stop
    _burn(0.25)
    cb.on_step_end(None, _state(2), control)
    assert control.should_training_stop
    assert cb.stopped_by_budget
    assert cb.steps == 2


def test_cpu_budget_takes_probe_time_off_the_clock(bench) -> None:
    def probe(model, tok) -> dict[str, float]:
        _burn(0.3)
        return {"em": 0.5, "contains": 0.6}

    cb = bench.cpu_budget(0.25, probe=probe, probe_every=0.01)
    control = SimpleNamespace(should_training_stop=False)
    _burn(0.02)
    cb.on_step_end(None, _state(), control)
    assert cb.curve
    assert cb.curve[0]["em"] == 0.5
    assert not control.should_training_stop  # the probe's 0.3 s were not charged
    assert cb.used() < 0.1


def test_cpu_budget_cosine_schedule_warms_up_then_decays_to_zero(bench) -> None:
    cb = bench.cpu_budget(0.2, cosine_lr=1e-3, warmup=0.1)
    opt = SimpleNamespace(param_groups=[{"lr": 1.0}, {"lr": 1.0}])
    lrs = []
    for _ in range(5):
        _burn(0.05)
        cb.on_pre_optimizer_step(None, _state(), None, optimizer=opt)
        lrs.append(opt.param_groups[1]["lr"])
    assert all(g["lr"] == lrs[-1] for g in opt.param_groups)
    assert 0 < lrs[0] <= 1e-3
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert lrs == sorted(lrs, reverse=True)
    state = _state()
    cb.on_log(None, state, None)
    assert state.log_history[-1]["learning_rate"] == lrs[-1]


@pytest.mark.slow
def test_smoke_run_writes_the_comparison_keys(tmp_path) -> None:
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--out-dir",
                    str(tmp_path / "runs"), "--png", str(tmp_path / "curves.png"), "--json",
                    str(out)], check=True, timeout=900)
    result = json.loads(out.read_text())
    for key in ("em_sft", "em_sft_equal_compute", "em_grpo", "contains_sft",
                "contains_sft_equal_compute", "contains_grpo", "target_met"):
        assert key in result
    assert set(result["cpu_seconds_per_arm"]) == {"sft_equal_compute", "grpo"}
    assert result["grpo_diagnostics"]["zero_variance_group_fraction"] is not None
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
