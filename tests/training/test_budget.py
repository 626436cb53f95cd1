from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from thinkgym.errors import ConfigError
from thinkgym.training.budget import TimeBudget, time_budget_callback


def test_wall_budget_runs_out_and_stops_the_trainer() -> None:
    budget = TimeBudget(0.05)
    callback = time_budget_callback(budget)  # imports transformers: restart the clock after
    budget.start = time.perf_counter()
    control = SimpleNamespace(should_training_stop=False)
    callback.on_step_end(None, None, control)
    assert control.should_training_stop is False
    time.sleep(0.06)
    callback.on_step_end(None, None, control)
    assert control.should_training_stop is True


def test_cpu_budget_does_not_count_sleep() -> None:
    budget = TimeBudget(0.05, clock="cpu")
    time.sleep(0.1)  # wall time passes, this process's CPU time barely moves
    assert not budget.exhausted()
    end = time.process_time() + 0.06
    while time.process_time() < end:
        pass
    assert budget.exhausted()


@pytest.mark.parametrize(("seconds", "clock"), [(0, "wall"), (-1.0, "cpu"), (10, "gpu")])
def test_bad_budget_is_refused(seconds: float, clock: str) -> None:
    with pytest.raises(ConfigError):
        TimeBudget(seconds, clock=clock)  # type: ignore[arg-type]
