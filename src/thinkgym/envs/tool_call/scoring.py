"""Scoring a ToolCall-v0 episode: call matching, argument match, completion, recovery.

Everything here compares what the agent did (:class:`CallLog` entries, in order)
with the task's minimal plan (:class:`~thinkgym.envs.tool_call.store_tasks.GoldCall`)
and checks the world state; nothing reads the agent's prose.

Definitions (all in ``info["metrics"]`` at the end of an episode):

* **tool_name_accuracy** — F1 between the multiset of tool names in the plan and in
  the agent's *distinct* calls (an identical retry after a failure is one call).
  1.0 for a 0-call task answered without calls; 0.0 if it made calls.
* **arg_exact_match** / **arg_partial_match** — for each planned call, the agent
  call of the same name whose arguments match best; exact: all required
  arguments equal and every extra argument is an allowed optional one with the
  right value; partial: matching key/value pairs over the union of keys (Jaccard).
  Averaged over the plan (an unmatched planned call scores 0); None for 0-call tasks.
* **task_completed** — see :func:`verify`.
* **num_calls** / **min_calls** / **calls_over_min** — calls the agent caused (every
  call except injected faults) against the plan's length.
* **failed_calls** / **failures_recovered** — a failure (fault, unknown tool, bad
  arguments, tool error) is recovered only when a later call of the same tool
  succeeds. Completing the task another way (a fallback, or answering without
  calling again) does not count: that shows in ``task_completed``.
  **injected_faults** / **faults_recovered** count only the env's injected faults.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thinkgym.envs.common.tool_turns import ActionPenalty, CallLog
from thinkgym.envs.tool_call.store import StoreWorld
from thinkgym.envs.tool_call.store_tasks import GoldCall, StoreTask
from thinkgym.protocols import RewardComponent, RewardInput
from thinkgym.rewards import answer_match

__all__ = ["EPISODE_METRICS", "ActionPenalty", "CallLog", "EpisodeMetric", "TaskCompletion",
           "WorldSnapshot", "arguments_score", "episode_metrics", "reward_components", "verify"]

_CASELESS = frozenset({"query", "location", "category"})


@dataclass(frozen=True)
class WorldSnapshot:
    """What :func:`verify` compares against: orders and stock at the start."""

    orders: int
    stock: Mapping[tuple[str, str], int]

    @classmethod
    def of(cls, world: StoreWorld) -> WorldSnapshot:
        return cls(len(world.orders), dict(world.inventory))


def _calc(expr: str) -> str | None:
    from thinkgym.errors import ToolError
    from thinkgym.tools import calculator

    try:
        return calculator(expression=expr)
    except ToolError:
        return None


def _value_equal(key: str, got: Any, want: Any) -> bool:
    if isinstance(got, bool) or isinstance(want, bool):
        return got is want
    if isinstance(got, int | float) and isinstance(want, int | float):
        return float(got) == float(want)
    if isinstance(got, str) and isinstance(want, str):
        if key in _CASELESS:
            return " ".join(got.split()).casefold() == " ".join(want.split()).casefold()
        if key == "expression":
            if "".join(got.split()) == "".join(want.split()):
                return True
            a, b = _calc(got), _calc(want)
            return a is not None and a == b
        return got == want
    return bool(got == want)


def arguments_score(call: Mapping[str, Any], gold: GoldCall) -> tuple[bool, float]:
    """``(exact, partial)`` match of an agent call's arguments against a planned call.

    >>> g = GoldCall("check_inventory", {"product_id": "P001", "location": "Oslo"})
    >>> arguments_score({"product_id": "P001", "location": "oslo"}, g)
    (True, 1.0)
    >>> arguments_score({"product_id": "P001"}, g)
    (False, 0.5)
    """
    hits = 0
    for key, want in gold.arguments.items():
        hits += key in call and _value_equal(key, call[key], want)
    extras = [k for k in call if k not in gold.arguments]
    good_extras = sum(k in gold.optional and _value_equal(k, call[k], gold.optional[k])
                      for k in extras)
    exact = hits == len(gold.arguments) and good_extras == len(extras)
    union = len(gold.arguments) + len(extras)
    partial = (hits + good_extras) / union if union else 1.0
    return exact, partial


def _name_f1(plan: Sequence[GoldCall], calls: Sequence[CallLog]) -> float:
    distinct = list(dict.fromkeys((c.name, repr(sorted(c.arguments.items()))) for c in calls))
    if not plan:
        return 1.0 if not distinct else 0.0
    if not distinct:
        return 0.0
    common = sum((Counter(g.name for g in plan) & Counter(n for n, _ in distinct)).values())
    if not common:
        return 0.0
    p, r = common / len(distinct), common / len(plan)
    return 2 * p * r / (p + r)


def _argument_match(plan: Sequence[GoldCall], calls: Sequence[CallLog]) -> tuple[float, float]:
    used: set[int] = set()
    exact_sum = partial_sum = 0.0
    for gold in plan:
        best: tuple[float, bool, int] | None = None
        for i, c in enumerate(calls):
            if i in used or c.name != gold.name:
                continue
            exact, partial = arguments_score(c.arguments, gold)
            if best is None or (partial, exact) > best[:2]:
                best = (partial, exact, i)
        if best is not None:
            used.add(best[2])
            exact_sum += best[1]
            partial_sum += best[0]
    return exact_sum / len(plan), partial_sum / len(plan)


def verify(task: StoreTask, world: StoreWorld, start: WorldSnapshot,
           answer: str | None) -> bool:
    """Did the episode solve ``task``? Orders are checked in the world, never in text.

    Ordering tasks: exactly one new order, with the goal's product, quantity and
    customer, the product's total stock down by exactly that quantity and every
    other product's stock unchanged (and an ``<answer>`` given). Other tasks: no
    new order at all, and ``answer`` equal to the expected one (numeric
    equivalence for numbers, normalised text otherwise).
    """
    new_orders = world.orders[start.orders:]
    if task.order is None:
        return not new_orders and task.answer is not None and answer_match(
            answer, [task.answer]) == 1.0
    if answer is None or len(new_orders) != 1:
        return False
    order, goal = new_orders[0], task.order
    if (order.product_id, order.quantity, order.customer_id) != (
            goal.product_id, goal.quantity, goal.customer_id):
        return False
    for (pid, loc), before in start.stock.items():
        delta = before - world.inventory[(pid, loc)]
        if pid != goal.product_id and delta:
            return False
    taken = sum(before - world.inventory[(pid, loc)]
                for (pid, loc), before in start.stock.items() if pid == goal.product_id)
    return taken == goal.quantity


def episode_metrics(task: StoreTask, calls: Sequence[CallLog],
                    completed: bool) -> dict[str, Any]:
    """The evaluation of one finished episode (see the module docstring)."""
    caused = [c for c in calls if not c.injected]
    exact, partial = _argument_match(task.calls, calls) if task.calls else (None, None)
    failed = recovered = injected = injected_recovered = 0
    for i, c in enumerate(calls):
        if c.ok:
            continue
        ok_after = any(d.ok and d.name == c.name for d in calls[i + 1:])
        failed += 1
        recovered += ok_after
        if c.injected:
            injected += 1
            injected_recovered += ok_after
    return {
        "task_completed": float(completed),
        "tool_name_accuracy": _name_f1(task.calls, calls),
        "arg_exact_match": exact,
        "arg_partial_match": partial,
        "num_calls": len(caused),
        "min_calls": task.min_calls,
        "calls_over_min": len(caused) - task.min_calls,
        "failed_calls": failed,
        "failures_recovered": recovered,
        "injected_faults": injected,
        "faults_recovered": injected_recovered,
        "repaired_calls": sum(bool(c.repairs) for c in calls),
        "task_kind": task.kind,
    }


# -- reward components reading the env's per-turn metadata -----------------------------------
EPISODE_METRICS: tuple[str, ...] = ("tool_name_accuracy", "arg_exact_match", "arg_partial_match",
                                    "calls_over_min", "failures_recovered")
"""Metrics the env logs as weight-0 reward components at the end of an episode."""


@dataclass(frozen=True)
class TaskCompletion:
    """1.0 if the task was verified solved, 0.0 if not; None before the episode ends."""

    name: str = "task_completion"

    def __call__(self, inp: RewardInput) -> float | None:
        value = inp.metadata.get("task_completed")
        return None if value is None or not inp.done else float(value)


@dataclass(frozen=True)
class EpisodeMetric:
    """An evaluation metric of the finished episode (logged, weight 0 by default)."""

    name: str

    def __call__(self, inp: RewardInput) -> float | None:
        value = inp.metadata.get(self.name)
        return None if value is None or not inp.done else float(value)


def reward_components() -> list[RewardComponent]:
    """The env-specific components (the library supplies ``format`` and ``tool_efficiency``)."""
    return [TaskCompletion(), ActionPenalty(), *(EpisodeMetric(m) for m in EPISODE_METRICS)]
