"""Stop a transformers/TRL trainer when a time budget is spent (wall clock or process CPU time).

Benchmarks that compare training recipes "at equal compute" give each arm the same
budget. On a shared machine wall time depends on the load, so ``clock="cpu"``
counts the process's CPU seconds (``time.process_time``) instead: an arm slowed by
another job on the machine is not cut short for it.

    >>> budget = TimeBudget(60.0, clock="cpu")
    >>> budget.spent() < 60.0
    True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from thinkgym.errors import ConfigError

__all__ = ["TimeBudget", "time_budget_callback"]

_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class TimeBudget:
    """``seconds`` of ``clock`` from now (``wall``: elapsed time, ``cpu``: this process's CPU)."""

    seconds: float
    """The budget."""
    clock: Literal["wall", "cpu"] = "wall"
    """What is counted."""
    start: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.clock not in _CLOCKS:
            raise ConfigError("unknown clock", field="clock", got=self.clock,
                              fix="use 'wall' or 'cpu'")
        if not self.seconds > 0:
            raise ConfigError("must be > 0", field="seconds", got=self.seconds,
                              fix="pass the budget in seconds, e.g. 1800.0")
        self.start = _CLOCKS[self.clock]()

    def spent(self) -> float:
        """Seconds counted since the budget was made."""
        return _CLOCKS[self.clock]() - self.start

    def exhausted(self) -> bool:
        """True once :meth:`spent` reaches ``seconds``."""
        return self.spent() >= self.seconds


def time_budget_callback(budget: TimeBudget) -> Any:
    """A ``TrainerCallback`` that ends training after the step during which ``budget`` ran out."""
    from transformers import TrainerCallback

    class _StopAtBudget(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if budget.exhausted():
                control.should_training_stop = True
            return control

    return _StopAtBudget()
