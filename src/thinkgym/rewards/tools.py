"""Search cost and tool efficiency.

Numbers come from the design (seeds/002, "reward design" and "tool calls as RL
actions"), which gives ranges; the defaults pick one value and say why.

**search_cost** — ``-0.1`` per search beyond ``free_searches`` (default 0):
``R = -cost * max(0, searches_so_far - free) + cost * max(0, prior - free)``,
i.e. each search of this turn past the free allowance costs 0.1 (design: "-0.1 per
search", the QA-env practice "correct + format - searches * cost"). The design's
"+0.5 for a successful search" is not included: it pays per search and would
cancel the cost (an agent could farm it); useful search shows up in correctness.

**tool_efficiency** — per call, in order (``g`` = the call's index in the episode,
counting ``prior_tool_calls``):

* call failed (``ok`` False: unknown tool, bad arguments, timeout) -> ``-1.0``
  (design: "tool failure -1");
* wrong tool (``expected`` False) -> ``-0.5`` (design range -0.5 .. -1; the
  milder end, since a failure is already -1 and wrong-but-working should cost less);
* right tool (``expected`` True) and ``g < min_tool_calls`` (or no minimum known)
  -> ``+0.2`` (design range +0.2 .. +0.5; the low end so calls alone cannot
  out-earn a correct answer);
* every call with ``g >= min_tool_calls`` -> an extra ``-0.1`` (design: "each
  excess call -0.05 .. -0.1"), and a right tool there earns no bonus.

None when the input has no tool calls (nothing to judge).

    >>> from thinkgym.protocols import ToolCallRecord as C
    >>> ToolEfficiency()(RewardInput(tool_calls=(C("add", expected=True),
    ...                                          C("add", expected=True)), min_tool_calls=1))
    0.1
    >>> SearchCost()(RewardInput(num_searches=3))
    -0.30000000000000004

**ctm_tick_cost** — ``-0.01`` per CTM tick that this turn's ``ctm_think`` calls report
(the ``ticks: N`` line of their output): the seed's token cost, per tick of the inner
reasoning engine. A full parity16 think (24 ticks) costs 0.24, a quarter of a correct
answer, so thinking pays when it is needed and a shorter think pays when it suffices.
None when the turn made no such call.

    >>> CTMTickCost()(RewardInput(tool_calls=(C("ctm_think", output="answer: 3\\nticks: 8"),)))
    -0.08
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from thinkgym.errors import ConfigError
from thinkgym.protocols import RewardInput
from thinkgym.rewards.base import REWARDS

__all__ = ["CTMTickCost", "SearchCost", "ToolEfficiency", "reported_ticks"]


def _check(obj: object, fields: tuple[str, ...], *, sign: int = 0) -> None:
    for f in fields:
        v = getattr(obj, f)
        bad = isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
        if not bad and sign and v * sign < 0:
            bad = True
        if bad:
            want = {0: "a finite number", 1: "a finite number >= 0", -1: "a number <= 0"}[sign]
            raise ConfigError(f"must be {want}", field=f, got=v,
                              fix=f"pass {f} as {want} (see the module doc for defaults)")


@dataclass(frozen=True)
class SearchCost:
    """-0.1 per search beyond ``free_searches``."""

    cost: float = 0.1
    """Cost per search (a positive number; the sign is built in)."""
    free_searches: int = 0
    """Searches per episode that cost nothing."""
    name: str = "search_cost"
    """Component name."""

    def __post_init__(self) -> None:
        _check(self, ("cost", "free_searches"), sign=1)

    def __call__(self, inp: RewardInput) -> float:
        if inp.num_searches < 0 or inp.prior_searches < 0:
            raise ValueError(f"search counts must be >= 0, got num={inp.num_searches} "
                             f"prior={inp.prior_searches}")
        before = max(0, inp.prior_searches - self.free_searches)
        after = max(0, inp.prior_searches + inp.num_searches - self.free_searches)
        return -self.cost * (after - before)


@dataclass(frozen=True)
class ToolEfficiency:
    """+0.2 right tool, -0.5 wrong tool, -0.1 per excess call, -1.0 per failed call."""

    correct_bonus: float = 0.2
    """Reward for a working call of the right tool within ``min_tool_calls``."""
    wrong_penalty: float = -0.5
    """Reward for a working call of the wrong tool."""
    excess_penalty: float = -0.1
    """Added for every call at index >= ``min_tool_calls``."""
    failure_penalty: float = -1.0
    """Reward for a failed call (replaces the right/wrong term)."""
    name: str = "tool_efficiency"
    """Component name."""

    def __post_init__(self) -> None:
        _check(self, ("correct_bonus",), sign=1)
        _check(self, ("wrong_penalty", "excess_penalty", "failure_penalty"), sign=-1)

    def __call__(self, inp: RewardInput) -> float | None:
        if not inp.tool_calls:
            return None
        limit = inp.min_tool_calls
        total = 0.0
        for i, call in enumerate(inp.tool_calls):
            g = inp.prior_tool_calls + i
            excess = limit is not None and g >= limit
            if not call.ok:
                total += self.failure_penalty
            elif call.expected is False:
                total += self.wrong_penalty
            elif call.expected is True and not excess:
                total += self.correct_bonus
            if excess:
                total += self.excess_penalty
        return total


_TICKS = re.compile(r"^ticks: (\d+)\s*$", re.MULTILINE)


def reported_ticks(inp: RewardInput, tool: str = "ctm_think") -> int | None:
    """Ticks the turn's successful ``tool`` calls reported (None: no such call)."""
    outputs = [c.output for c in inp.tool_calls if c.name == tool and c.ok and c.output]
    if not outputs:
        return None
    return sum(int(m[1]) for out in outputs if (m := _TICKS.search(out)))


@dataclass(frozen=True)
class CTMTickCost:
    """-0.01 per CTM tick reported by the turn's ``ctm_think`` calls."""

    cost: float = 0.01
    """Cost per tick (a positive number; the sign is built in)."""
    tool: str = "ctm_think"
    """The tool whose ``ticks: N`` output line is charged."""
    name: str = "ctm_tick_cost"
    """Component name."""

    def __post_init__(self) -> None:
        _check(self, ("cost",), sign=1)

    def __call__(self, inp: RewardInput) -> float | None:
        ticks = reported_ticks(inp, self.tool)
        return None if ticks is None else -self.cost * ticks


REWARDS.register("search_cost", SearchCost())
REWARDS.register("ctm_tick_cost", CTMTickCost())
REWARDS.register("tool_efficiency", ToolEfficiency())
