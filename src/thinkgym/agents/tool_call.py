"""Scripted baselines for ToolCall-v0: oracle, template, always-call and random.

* :class:`OracleToolCallPolicy` reads the task's minimal plan and hidden answer
  from the env (privileged: an upper bound, not an agent) and runs it one call
  per turn: it retries a failed call (up to ``max_retries`` times) and falls back
  to doing the arithmetic itself when the calculator fails for good (an outage,
  or retries used up). It answers with the expected answer, or the order id it
  was given.
* :class:`AlwaysCallPolicy` is the oracle with a habit: it starts every episode
  with a ``search_product`` call on the question, needed or not. It completes as
  often as the oracle; its efficiency metrics show the cost of over-calling.
  Privileged like the oracle.
* :class:`TemplateToolCallPolicy` sees only the observations: it parses the
  question (it knows the task templates' wording) and the store facts in the
  prompt, calls the tools, and builds its answer from their results. It retries
  a failed lookup or order until it succeeds (nothing else gives the result), and
  the calculator up to ``max_retries`` times before doing the arithmetic itself
  (at once during an outage). Not privileged.
* :class:`RandomToolCallPolicy` calls random tools with random (plausible)
  arguments and answers something random after a few turns.

    >>> import gymnasium as gym
    >>> import thinkgym
    >>> env = gym.make("ToolCall-v0")
    >>> policy = OracleToolCallPolicy(env)
    >>> obs, info = env.reset(seed=3)
    >>> policy.reset()
    >>> done = False
    >>> while not done:
    ...     obs, reward, terminated, truncated, info = env.step(policy.act(obs))
    ...     done = terminated or truncated
    >>> info["metrics"]["task_completed"]
    1.0
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator
from decimal import Decimal, InvalidOperation
from typing import Any

import gymnasium as gym
import numpy as np

from thinkgym.envs.tool_call import ToolCallEnv
from thinkgym.envs.tool_call.store import CATEGORIES, LOCATION_NAMES
from thinkgym.envs.tool_call.store_tasks import GoldCall, StoreTask
from thinkgym.errors import ConfigError

__all__ = ["AlwaysCallPolicy", "OracleToolCallPolicy", "RandomToolCallPolicy",
           "TemplateToolCallPolicy", "last_tool_response"]

_RESPONSE = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)


def last_tool_response(observation: str) -> dict[str, Any] | None:
    """The decoded JSON of the last ``<tool_response>`` in ``observation`` (None if absent)."""
    found = _RESPONSE.findall(observation)
    if not found:
        return None
    try:
        value = json.loads(found[-1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _call(name: str, arguments: dict[str, Any]) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _unwrap(env: gym.Env) -> ToolCallEnv:
    inner = env.unwrapped
    if not isinstance(inner, ToolCallEnv):
        raise ConfigError("this policy needs a ToolCall-v0 env", field="env",
                          got=type(inner).__name__, fix='pass gym.make("ToolCall-v0")')
    return inner


class OracleToolCallPolicy:
    """Runs the task's minimal plan, retrying failures and falling back when needed."""

    def __init__(self, env: gym.Env, max_retries: int = 3) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError("must be an int >= 0", field="max_retries", got=max_retries,
                              fix="pass max_retries=3")
        self.env = _unwrap(env)
        self.max_retries = max_retries
        self.reset()

    def reset(self) -> None:
        """Forget the previous episode (call after ``env.reset``)."""
        self._plan: list[GoldCall] = []
        self._task: StoreTask | None = None
        self._pending: GoldCall | None = None
        self._failures = 0
        self._order_id: str | None = None

    def _plan_for(self, task: StoreTask) -> list[GoldCall]:
        return list(task.calls)

    def act(self, observation: str) -> str:
        task = self.env.task
        if task is None:
            raise ConfigError("the env has no task yet", field="env", got=None,
                              fix="call env.reset() before act()")
        if task is not self._task:  # a new episode even if reset() was not called
            self.reset()
            self._task, self._plan = task, self._plan_for(task)
        if self._pending is not None:
            self._read_response(observation)
        if self._plan:
            self._pending = self._plan[0]
            return _call(self._pending.name, dict(self._pending.arguments))
        answer = task.answer if task.answer is not None else (self._order_id or "done")
        return f"<answer>{answer}</answer>"

    def _read_response(self, observation: str) -> None:
        pending, self._pending = self._pending, None
        response = last_tool_response(observation) or {"error": "no response"}
        if "error" not in response:
            content = response.get("content")
            if isinstance(content, dict) and "order_id" in content:
                self._order_id = str(content["order_id"])
            self._plan.pop(0)
            self._failures = 0
            return
        self._failures += 1
        given_up = "down" in str(response["error"]) or self._failures > self.max_retries
        if pending is not None and pending.name == "calculator" and given_up:
            self._plan.pop(0)  # fallback: do the arithmetic ourselves (the answer is known)
            self._failures = 0


class AlwaysCallPolicy(OracleToolCallPolicy):
    """The oracle, but every episode starts with an unneeded ``search_product`` call."""

    def _plan_for(self, task: StoreTask) -> list[GoldCall]:
        habit = GoldCall("search_product", {"query": task.question[:80]})
        return [habit, *task.calls]


class RandomToolCallPolicy:
    """Random tools with random plausible arguments; a random answer after a few turns."""

    def __init__(self, seed: int = 0, answer_prob: float = 0.3) -> None:
        if not 0.0 < answer_prob <= 1.0:
            raise ConfigError("must lie in (0, 1]", field="answer_prob", got=answer_prob,
                              fix="pass answer_prob=0.3")
        self.rng = np.random.default_rng(seed)
        self.answer_prob = answer_prob

    def reset(self) -> None:
        """Nothing to forget (the random stream continues across episodes)."""

    def _pick(self, options: Any) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def act(self, observation: str) -> str:
        rng = self.rng
        if rng.random() < self.answer_prob:
            answer = self._pick([str(int(rng.integers(0, 100))), "yes", "no", "out of stock",
                                 f"O{int(rng.integers(1, 3)):04d}"])
            return f"<answer>{answer}</answer>"
        pid = f"P{int(rng.integers(1, 25)):03d}"
        cid = f"C{int(rng.integers(1, 9)):03d}"
        nouns = [n for nouns in CATEGORIES.values() for n in nouns]
        name = self._pick(["search_product", "check_inventory", "create_order", "calculator"])
        arguments: dict[str, Any] = {
            "search_product": {"query": self._pick(nouns)},
            "check_inventory": {"product_id": pid, "location": self._pick(LOCATION_NAMES)},
            "create_order": {"product_id": pid, "quantity": int(rng.integers(1, 6)),
                             "customer_id": cid},
            "calculator": {"expression": f"{int(rng.integers(1, 100))} * "
                                         f"{int(rng.integers(1, 100))}"},
        }[name]
        return _call(name, arguments)


# -- the non-privileged baseline -------------------------------------------------------------
Call = tuple[str, dict[str, Any]]
Plan = Generator[Call, Any, str]
"""A solver: yields tool calls, is sent each call's content (None: failed for good),
returns the answer text."""

UNKNOWN = "unknown"
_PRODUCT = r"(?:the )?(?P<name>.+?)"
_UNITS = r"(?P<qty>\d+) units?"


def _arith(expression: str) -> str:
    """``a * b`` or ``a * b + c`` in exact decimals: the agent's own arithmetic."""
    m = re.fullmatch(r"\s*([\d.]+)\s*\*\s*([\d.]+)\s*(?:\+\s*([\d.]+))?\s*", expression)
    if m is None:
        return UNKNOWN
    try:
        value = Decimal(m[1]) * Decimal(m[2]) + Decimal(m[3] or 0)
    except InvalidOperation:
        return UNKNOWN
    return str(value)


def _lookup(name: str) -> Generator[Call, Any, dict[str, Any] | None]:
    hits = yield "search_product", {"query": name}
    if not isinstance(hits, list):
        return None
    products = [h for h in hits if isinstance(h, dict)]
    exact = [h for h in products if str(h.get("name", "")).casefold() == name.casefold()]
    found = exact or products
    return found[0] if found else None


def _compute(expression: str) -> Plan:
    result = yield "calculator", {"expression": expression}
    return _arith(expression) if result is None else str(result)


def _order(pid: str, qty: str, cid: str) -> Plan:
    order = yield "create_order", {"product_id": pid, "quantity": int(qty), "customer_id": cid}
    return str(order["order_id"]) if isinstance(order, dict) and "order_id" in order else UNKNOWN


def _store_fact(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    yield from ()
    what = m.groupdict().get("what")
    if what == "locations":
        return str(len(facts["locations"]))
    if what == "categories":
        return str(len(facts["categories"]))
    return "yes" if m["city"] in facts["locations"] else "no"


def _mental_math(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    yield from ()
    return _arith(f"{m['a']} * {m['b']}")


def _price(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    product = yield from _lookup(m["name"])
    return UNKNOWN if product is None else str(product["price"])


def _product_id(m: re.Match[str]) -> Generator[Call, Any, str | None]:
    """The question's product id, or the id a lookup of its product name returns."""
    pid = m.groupdict().get("pid")
    if pid is not None:
        return pid
    product = yield from _lookup(m["name"])
    return None if product is None else str(product["product_id"])


def _stock(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    pid = yield from _product_id(m)
    if pid is None:
        return UNKNOWN
    stock = yield "check_inventory", {"product_id": pid, "location": m["loc"]}
    return UNKNOWN if not isinstance(stock, dict) else str(stock["units"])


def _calculation(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    return (yield from _compute(m["expr"]))


def _place(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    pid = yield from _product_id(m)
    if pid is None:
        return UNKNOWN
    return (yield from _order(pid, m["qty"], m["cid"]))


def _order_cost(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    product = yield from _lookup(m["name"])
    if product is None:
        return UNKNOWN
    return (yield from _compute(f"{m['qty']} * {product['price']}"))


def _conditional_order(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    product = yield from _lookup(m["name"])
    if product is None:
        return UNKNOWN
    pid = str(product["product_id"])
    stock = yield "check_inventory", {"product_id": pid}
    if not isinstance(stock, dict):
        return UNKNOWN
    if int(stock["total_units"]) < int(m["qty"]):
        return "out of stock"
    return (yield from _order(pid, m["qty"], m["cid"]))


def _stock_value(m: re.Match[str], facts: dict[str, list[str]]) -> Plan:
    product = yield from _lookup(m["name"])
    if product is None:
        return UNKNOWN
    stock = yield "check_inventory", {"product_id": str(product["product_id"]),
                                      "location": m["loc"]}
    if not isinstance(stock, dict):
        return UNKNOWN
    return (yield from _compute(f"{stock['units']} * {product['price']}"))


_Solver = Callable[[re.Match[str], dict[str, list[str]]], Plan]
TEMPLATES: tuple[tuple[re.Pattern[str], _Solver], ...] = tuple(
    (re.compile(pattern), solver) for pattern, solver in (
        (r"How many store (?P<what>locations) are there\?", _store_fact),
        (r"How many product (?P<what>categories) does the store have\?", _store_fact),
        (r"Is (?P<city>.+) one of the store locations\? Answer yes or no\.", _store_fact),
        (r"A customer buys (?P<a>\d+) items at (?P<b>\d+) dollars each\. .*", _mental_math),
        (r"What is the price of " + _PRODUCT + r"\?", _price),
        (r"How many units of product (?P<pid>P\d+) are in stock at (?P<loc>.+)\?", _stock),
        (r"How many units of " + _PRODUCT + r" are in stock at (?P<loc>.+)\?", _stock),
        (r"What is the total value in dollars \(units in stock times unit price\) of "
         + _PRODUCT + r" stock at (?P<loc>.+)\?", _stock_value),
        (r"What is (?P<expr>[\d\s*+]+)\?", _calculation),
        (r"Place an order of " + _UNITS + r" of product (?P<pid>P\d+) for customer "
         r"(?P<cid>C\d+)\. .*", _place),
        (r"Order " + _UNITS + " of " + _PRODUCT + r" for customer (?P<cid>C\d+)\. .*", _place),
        (r"How many dollars would " + _UNITS + " of " + _PRODUCT + r" cost in total\?",
         _order_cost),
        (r"If at least " + _UNITS + " of " + _PRODUCT + r" are in stock across all locations, "
         r"order \d+ units? for customer (?P<cid>C\d+) .*", _conditional_order),
    ))
"""Question wording -> solver, tried in order (the first full match wins)."""


def _facts(prompt: str) -> dict[str, list[str]]:
    def listed(pattern: str) -> list[str]:
        m = re.search(pattern, prompt)
        return [x.strip() for x in m[1].split(",")] if m else []

    return {"locations": listed(r"Store locations \(\d+\): (.*)\."),
            "categories": listed(r"Product categories: (.*)\.")}


def solve(prompt: str) -> Plan:
    """The solver for the task in a ToolCall-v0 prompt (answers ``unknown`` if unrecognised)."""
    question = prompt.rsplit("Task:", 1)[-1].strip()
    for pattern, solver in TEMPLATES:
        m = pattern.fullmatch(question)
        if m is not None:
            return solver(m, _facts(prompt))

    def unrecognised() -> Plan:
        yield from ()
        return UNKNOWN

    return unrecognised()


class TemplateToolCallPolicy:
    """Solves ToolCall-v0 tasks from the observations alone, one call per turn.

    A failed lookup or order is retried until it succeeds or the turns run out,
    as the oracle does; a failed calculator call up to ``max_retries`` times (not
    during an outage), after which None is sent into the solver, which does the
    arithmetic itself.

        >>> import gymnasium as gym
        >>> import thinkgym
        >>> env = gym.make("ToolCall-v0")
        >>> policy = TemplateToolCallPolicy()
        >>> obs, info = env.reset(seed=3)
        >>> done = False
        >>> while not done:
        ...     obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        ...     done = terminated or truncated
        >>> info["metrics"]["task_completed"], info["metrics"]["num_calls"]
        (1.0, 3)
    """

    def __init__(self, max_retries: int = 3) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError("must be an int >= 0", field="max_retries", got=max_retries,
                              fix="pass max_retries=3")
        self.max_retries = max_retries
        self.reset()

    def reset(self) -> None:
        """Forget the previous episode (a new prompt also starts a new episode)."""
        self._plan: Plan | None = None
        self._pending: Call | None = None
        self._failures = 0

    def act(self, observation: str) -> str:
        if self._plan is None or "<tool_response>" not in observation:
            self.reset()  # a prompt: a new episode
            self._plan = solve(observation)
            return self._advance(None)
        response = last_tool_response(observation) or {"error": "no response"}
        content = response.get("content")
        if "error" in response:
            self._failures += 1
            down = "down for maintenance" in str(response["error"])
            has_fallback = self._pending is not None and self._pending[0] == "calculator"
            if self._pending is not None and not down and (
                    not has_fallback or self._failures <= self.max_retries):
                return _call(*self._pending)
            content = None
        self._failures = 0
        return self._advance(content)

    def _advance(self, content: Any) -> str:
        if self._plan is None:
            raise ConfigError("no episode in progress", field="observation", got=None,
                              fix="pass the reset observation (the prompt) first")
        try:
            self._pending = self._plan.send(content)
        except StopIteration as done:
            self._plan = self._pending = None
            return f"<answer>{done.value}</answer>"
        return _call(*self._pending)
