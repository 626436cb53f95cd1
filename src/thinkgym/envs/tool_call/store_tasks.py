"""Tasks over a :class:`~thinkgym.envs.tool_call.store.StoreWorld`, each with a minimal plan.

A :class:`StoreTask` is a question plus what solving it takes: the shortest
sequence of tool calls (:class:`GoldCall`; 0 to 3 calls), the expected answer
(numbers and short texts) and, for ordering tasks, the order that must exist
afterwards (:class:`OrderGoal`, checked against the world state, never the text).

Task kinds and the calls their plans need:

==================  =====  ====================================================
kind                calls  plan
==================  =====  ====================================================
store_fact          0      answer from the store description in the prompt
mental_math         0      small arithmetic, no tool needed
price_lookup        1      search_product
stock_at_location   1      check_inventory(product_id, location)
calculation         1      calculator
direct_order        1      create_order
stock_by_name       2      search_product -> check_inventory(location)
order_by_name       2      search_product -> create_order
order_cost          2      search_product -> calculator
conditional_order   2 / 3  search_product -> check_inventory -> create_order
                           (only if enough stock; else answer "out of stock")
stock_value         3      search_product -> check_inventory(location) -> calculator
==================  =====  ====================================================

    >>> import numpy as np
    >>> from thinkgym.envs.tool_call.store import generate_world
    >>> rng = np.random.default_rng(1)
    >>> task = generate_task(generate_world(rng), rng, kind="stock_value")
    >>> [c.name for c in task.calls], task.min_calls
    (['search_product', 'check_inventory', 'calculator'], 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from thinkgym.envs.tool_call.store import LOCATION_NAMES, Product, StoreWorld, format_money
from thinkgym.errors import ConfigError

__all__ = ["TASK_KINDS", "GoldCall", "OrderGoal", "StoreTask", "generate_task"]

OUT_OF_STOCK = "out of stock"


@dataclass(frozen=True)
class GoldCall:
    """One call of a task's minimal plan."""

    name: str
    """Tool name."""
    arguments: Mapping[str, Any]
    """Arguments the call needs."""
    optional: Mapping[str, Any] = field(default_factory=dict)
    """Extra arguments that are also correct if given (e.g. the right ``category``)."""


@dataclass(frozen=True)
class OrderGoal:
    """The single order an ordering task must leave in the world."""

    product_id: str
    quantity: int
    customer_id: str


@dataclass(frozen=True)
class StoreTask:
    """A question, its minimal plan, and what counts as solved."""

    kind: str
    """One of :data:`TASK_KINDS`."""
    question: str
    """What the agent is asked."""
    calls: tuple[GoldCall, ...]
    """A shortest plan; ``len(calls)`` is the minimum number of calls."""
    answer: str | None
    """Expected answer text; None when only the order is checked."""
    answer_kind: Literal["number", "text", "none"]
    """How answers are compared: numeric equivalence, normalised text, or not at all."""
    order: OrderGoal | None = None
    """The order that must exist afterwards; None means no order may be placed."""

    @property
    def min_calls(self) -> int:
        """Fewest tool calls that solve the task."""
        return len(self.calls)


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _search(p: Product) -> GoldCall:
    return GoldCall("search_product", {"query": p.name}, {"category": p.category})


def _pick_product(world: StoreWorld, rng: np.random.Generator,
                  ok: Callable[[Product], bool] = lambda p: True) -> Product:
    candidates = [p for p in world.products if ok(p)] or world.products
    return candidates[int(rng.integers(len(candidates)))]


def _pick_customer(world: StoreWorld, rng: np.random.Generator) -> str:
    return world.customers[int(rng.integers(len(world.customers)))].customer_id


def _store_fact(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    which = int(rng.integers(3))
    if which == 0:
        return StoreTask("store_fact", "How many store locations are there?", (),
                         str(len(world.locations)), "number")
    if which == 1:
        return StoreTask("store_fact", "How many product categories does the store have?", (),
                         str(len(world.categories)), "number")
    city = LOCATION_NAMES[int(rng.integers(len(LOCATION_NAMES)))]
    yes = "yes" if city in world.locations else "no"
    return StoreTask("store_fact", f"Is {city} one of the store locations? Answer yes or no.",
                     (), yes, "text")


def _mental_math(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    a, b = int(rng.integers(2, 6)), int(rng.integers(2, 10))
    return StoreTask("mental_math", f"A customer buys {a} items at {b} dollars each. "
                     "How many dollars do they pay in total?", (), str(a * b), "number")


def _price_lookup(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    p = _pick_product(world, rng)
    return StoreTask("price_lookup", f"What is the price of the {p.name}?", (_search(p),),
                     p.price, "number")


def _stock_at_location(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    p = _pick_product(world, rng)
    loc = world.locations[int(rng.integers(len(world.locations)))]
    call = GoldCall("check_inventory", {"product_id": p.product_id, "location": loc})
    return StoreTask("stock_at_location",
                     f"How many units of product {p.product_id} are in stock at {loc}?",
                     (call,), str(world.inventory[(p.product_id, loc)]), "number")


def _calculation(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    a, b, c = (int(rng.integers(lo, hi)) for lo, hi in ((101, 9999), (11, 999), (101, 99999)))
    expr = f"{a} * {b} + {c}"
    return StoreTask("calculation", f"What is {expr}?",
                     (GoldCall("calculator", {"expression": expr}),), str(a * b + c), "number")


def _order(world: StoreWorld, rng: np.random.Generator, kind: str) -> StoreTask:
    p = _pick_product(world, rng, lambda p: world.total_stock(p.product_id) >= 1)
    qty = int(rng.integers(1, min(5, max(1, world.total_stock(p.product_id))) + 1))
    cid = _pick_customer(world, rng)
    create = GoldCall("create_order", {"product_id": p.product_id, "quantity": qty,
                                       "customer_id": cid})
    goal = OrderGoal(p.product_id, qty, cid)
    if kind == "direct_order":
        return StoreTask(kind, f"Place an order of {_units(qty)} of product {p.product_id} for "
                         f"customer {cid}. Answer with the order id.", (create,), None, "none",
                         goal)
    return StoreTask(kind, f"Order {_units(qty)} of the {p.name} for customer {cid}. Answer with "
                     "the order id.", (_search(p), create), None, "none", goal)


def _order_cost(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    p = _pick_product(world, rng)
    qty = int(rng.integers(11, 100))
    calc = GoldCall("calculator", {"expression": f"{qty} * {p.price}"})
    return StoreTask("order_cost", f"How many dollars would {qty} units of the {p.name} cost "
                     "in total?", (_search(p), calc), format_money(qty * p.price_cents), "number")


def _stock_by_name(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    p = _pick_product(world, rng)
    loc = world.locations[int(rng.integers(len(world.locations)))]
    check = GoldCall("check_inventory", {"product_id": p.product_id, "location": loc})
    return StoreTask("stock_by_name", f"How many units of the {p.name} are in stock at {loc}?",
                     (_search(p), check), str(world.inventory[(p.product_id, loc)]), "number")


def _conditional_order(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    enough = bool(rng.random() < 0.5)
    p = _pick_product(world, rng, lambda p: world.total_stock(p.product_id) >= 1
                      if enough else True)
    total = world.total_stock(p.product_id)
    qty = int(rng.integers(1, total + 1)) if enough and total >= 1 else total + int(
        rng.integers(1, 10))
    cid = _pick_customer(world, rng)
    question = (f"If at least {_units(qty)} of the {p.name} are in stock across all locations, "
                f"order {_units(qty)} for customer {cid} and answer with the order id; otherwise "
                f"place no order and answer '{OUT_OF_STOCK}'.")
    calls = [_search(p), GoldCall("check_inventory", {"product_id": p.product_id})]
    if qty <= total:
        calls.append(GoldCall("create_order", {"product_id": p.product_id, "quantity": qty,
                                               "customer_id": cid}))
        return StoreTask("conditional_order", question, tuple(calls), None, "none",
                         OrderGoal(p.product_id, qty, cid))
    return StoreTask("conditional_order", question, tuple(calls), OUT_OF_STOCK, "text")


def _stock_value(world: StoreWorld, rng: np.random.Generator) -> StoreTask:
    pairs = [(p, loc) for p in world.products for loc in world.locations
             if world.inventory[(p.product_id, loc)] > 0]
    p, loc = pairs[int(rng.integers(len(pairs)))]
    units = world.inventory[(p.product_id, loc)]
    calls = (_search(p),
             GoldCall("check_inventory", {"product_id": p.product_id, "location": loc}),
             GoldCall("calculator", {"expression": f"{units} * {p.price}"}))
    return StoreTask("stock_value", f"What is the total value in dollars (units in stock times "
                     f"unit price) of the {p.name} stock at {loc}?", calls,
                     format_money(units * p.price_cents), "number")


_GENERATORS: dict[str, Callable[[StoreWorld, np.random.Generator], StoreTask]] = {
    "store_fact": _store_fact,
    "mental_math": _mental_math,
    "price_lookup": _price_lookup,
    "stock_at_location": _stock_at_location,
    "calculation": _calculation,
    "direct_order": lambda w, r: _order(w, r, "direct_order"),
    "stock_by_name": _stock_by_name,
    "order_by_name": lambda w, r: _order(w, r, "order_by_name"),
    "order_cost": _order_cost,
    "conditional_order": _conditional_order,
    "stock_value": _stock_value,
}

TASK_KINDS: tuple[str, ...] = tuple(_GENERATORS)
"""Every task kind, in table order (0-call kinds first)."""


def generate_task(world: StoreWorld, rng: np.random.Generator,
                  kind: str | None = None, kinds: tuple[str, ...] = TASK_KINDS) -> StoreTask:
    """Draw a task of ``kind`` (or of a kind drawn uniformly from ``kinds``)."""
    if kind is None:
        kind = kinds[int(rng.integers(len(kinds)))]
    if kind not in _GENERATORS:
        raise ConfigError("unknown task kind", field="kind", got=kind,
                          fix=f"use one of {list(TASK_KINDS)}")
    return _GENERATORS[kind](world, rng)
