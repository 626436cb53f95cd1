"""The store world, its tasks and the state-based verifier behind ToolCall-v0."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from thinkgym.envs.tool_call.scoring import (
    CallLog,
    WorldSnapshot,
    arguments_score,
    episode_metrics,
    verify,
)
from thinkgym.envs.tool_call.store import StoreConfig, StoreWorld, format_money, generate_world
from thinkgym.envs.tool_call.store_tasks import TASK_KINDS, GoldCall, StoreTask, generate_task
from thinkgym.envs.tool_call.store_tools import make_store_tools
from thinkgym.errors import ConfigError, ToolError


def _world(seed: int = 0, **kwargs: int) -> StoreWorld:
    return generate_world(np.random.default_rng(seed), StoreConfig(**kwargs))


# -- world generation ---------------------------------------------------------------------
def test_same_seed_same_world_and_different_seeds_differ() -> None:
    a, b, c = _world(5), _world(5), _world(6)
    assert a == b
    assert a.products != c.products or a.inventory != c.inventory


def test_world_respects_config_and_ids_are_unique() -> None:
    w = _world(1, num_products=40, num_customers=5, num_locations=3)
    assert len(w.products) == 40
    assert len({p.product_id for p in w.products}) == 40
    assert len({p.name for p in w.products}) == 40
    assert len(w.customers) == 5
    assert len(w.locations) == 3
    assert all(199 <= p.price_cents <= 19_999 for p in w.products)


@pytest.mark.parametrize("seed", range(30))
def test_every_product_is_stocked_somewhere(seed: int) -> None:
    w = _world(seed, num_locations=1)  # one location: the fix-up path runs often
    assert all(w.total_stock(p.product_id) >= 1 for p in w.products)


@pytest.mark.parametrize(("field", "value"), [("num_products", 0), ("num_locations", 9),
                                               ("out_of_stock_prob", 1.0), ("max_stock", 0)])
def test_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        StoreConfig(**{field: value})


def test_format_money() -> None:
    assert [format_money(c) for c in (0, 5, 1250, 100000, -250)] == [
        "0.00", "0.05", "12.50", "1000.00", "-2.50"]


# -- operations -----------------------------------------------------------------------------
def test_search_puts_the_exact_name_first_and_filters_by_category() -> None:
    w = _world(2)
    for p in w.products:
        assert w.search(p.name)[0] == p
        assert w.search(p.name.lower(), category=p.category)[0] == p
        other = next(c for c in w.categories if c != p.category)
        assert p not in w.search(p.name, category=other)
    assert w.search("zzz qqq") == []
    with pytest.raises(ToolError, match="unknown category"):
        w.search("mug", category="weapons")


def test_stock_lookups_and_their_errors() -> None:
    w = _world(3)
    p, loc = w.products[0], w.locations[0]
    assert w.stock(p.product_id, loc.upper()) == {loc: w.inventory[(p.product_id, loc)]}
    assert sum(w.stock(p.product_id).values()) == w.total_stock(p.product_id)
    with pytest.raises(ToolError, match="unknown product_id"):
        w.stock("P999")
    with pytest.raises(ToolError, match="unknown location"):
        w.stock(p.product_id, "Atlantis")


def test_place_order_takes_stock_from_the_fullest_locations() -> None:
    w = _world(4)
    p = max(w.products, key=lambda p: w.total_stock(p.product_id))
    before = dict(w.stock(p.product_id))
    qty = min(w.total_stock(p.product_id), max(before.values()) + 1)
    order = w.place_order(p.product_id, qty, w.customers[0].customer_id)
    after = w.stock(p.product_id)
    assert sum(before.values()) - sum(after.values()) == qty
    fullest = max(before, key=lambda loc: before[loc])
    assert after[fullest] == max(0, before[fullest] - qty)
    assert w.orders == [order]
    assert order.total_cents == qty * p.price_cents


@pytest.mark.parametrize(("qty", "customer", "match"), [
    (0, "C001", "positive integer"), (True, "C001", "positive integer"),
    (10_000, "C001", "not enough stock"), (1, "C999", "unknown customer_id")])
def test_bad_orders_raise_and_change_nothing(qty: int, customer: str, match: str) -> None:
    w = _world(5)
    snapshot = dict(w.inventory)
    with pytest.raises(ToolError, match=match):
        w.place_order(w.products[0].product_id, qty, customer)
    assert w.inventory == snapshot
    assert w.orders == []


# -- tasks: every plan, executed through the real tools, yields the expected answer ----------
def _run_plan(world: StoreWorld, task: StoreTask) -> list[object]:
    tools = make_store_tools(lambda: world)
    return [json.loads(tools[c.name](**dict(c.arguments))) if c.name != "calculator"
            else tools[c.name](**dict(c.arguments)) for c in task.calls]


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_each_kind_has_its_documented_plan_and_the_plan_solves_it(kind: str) -> None:
    min_calls = {"store_fact": {0}, "mental_math": {0}, "price_lookup": {1},
                 "stock_at_location": {1}, "calculation": {1}, "direct_order": {1},
                 "stock_by_name": {2}, "order_by_name": {2}, "order_cost": {2},
                 "conditional_order": {2, 3}, "stock_value": {3}}[kind]
    for seed in range(25):
        rng = np.random.default_rng(seed)
        world = _world(seed)
        task = generate_task(world, rng, kind=kind)
        assert task.kind == kind
        assert task.min_calls in min_calls
        start = WorldSnapshot.of(world)
        outputs = _run_plan(world, task)
        if task.order is not None:
            assert verify(task, world, start, answer="done")
            continue
        assert verify(task, world, start, task.answer)
        if outputs:  # the last tool output carries the answer
            last = outputs[-1]
            if isinstance(last, list):  # search: the price of the top hit
                last = last[0]["price"]
            elif isinstance(last, dict):
                last = last.get("units", last.get("total_units"))
            if task.answer != "out of stock":
                assert Fraction(str(last)) == Fraction(task.answer)


def test_conditional_order_branches_follow_the_stock() -> None:
    seen = set()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        world = _world(seed)
        task = generate_task(world, rng, kind="conditional_order")
        pid = task.calls[1].arguments["product_id"]
        enough = task.order is not None
        seen.add(enough)
        qty = task.order.quantity if enough else int(task.question.split("least ")[1].split()[0])
        assert (world.total_stock(pid) >= qty) == enough
    assert seen == {True, False}


def test_unknown_task_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown task kind"):
        generate_task(_world(), np.random.default_rng(0), kind="haggle")


# -- verification against the world state -------------------------------------------------------
def _order_task(seed: int = 7) -> tuple[StoreWorld, StoreTask, WorldSnapshot]:
    world = _world(seed)
    task = generate_task(world, np.random.default_rng(seed), kind="direct_order")
    return world, task, WorldSnapshot.of(world)


def test_verify_accepts_the_right_order() -> None:
    world, task, start = _order_task()
    g = task.order
    world.place_order(g.product_id, g.quantity, g.customer_id)
    assert verify(task, world, start, "O0001")


def test_verify_never_trusts_text_without_the_order() -> None:
    world, task, start = _order_task()
    assert not verify(task, world, start, "Order O0001 placed for the customer.")


@pytest.mark.parametrize("slip", ["quantity", "customer", "twice", "no_answer"])
def test_verify_rejects_wrong_or_extra_orders(slip: str) -> None:
    world, task, start = _order_task()
    g = task.order
    qty, customer = g.quantity, g.customer_id
    if slip == "quantity":
        qty = g.quantity - 1 if g.quantity > 1 else g.quantity + 1
        if qty > world.total_stock(g.product_id):
            pytest.skip("no stock for a different quantity in this world")
    if slip == "customer":
        customer = next(c.customer_id for c in world.customers if c.customer_id != customer)
    world.place_order(g.product_id, qty, customer)
    if slip == "twice":
        extra = next(p for p in world.products if world.total_stock(p.product_id))
        world.place_order(extra.product_id, 1, customer)
    assert not verify(task, world, start, None if slip == "no_answer" else "O0001")


def test_verify_detects_stock_changes_outside_the_order() -> None:
    world, task, start = _order_task()
    g = task.order
    world.place_order(g.product_id, g.quantity, g.customer_id)
    other = next(k for k, v in world.inventory.items() if k[0] != g.product_id and v > 0)
    world.inventory[other] -= 1
    assert not verify(task, world, start, "O0001")


def test_verify_fails_an_answer_task_if_an_order_was_placed() -> None:
    world = _world(8)
    task = generate_task(world, np.random.default_rng(8), kind="price_lookup")
    start = WorldSnapshot.of(world)
    assert verify(task, world, start, f"${task.answer}")
    p = next(p for p in world.products if world.total_stock(p.product_id))
    world.place_order(p.product_id, 1, world.customers[0].customer_id)
    assert not verify(task, world, start, task.answer)


# -- call matching metrics ------------------------------------------------------------------------
def test_arguments_score_exact_partial_and_optional_extras() -> None:
    g = GoldCall("search_product", {"query": "Aurora Mug"}, {"category": "kitchen"})
    assert arguments_score({"query": "aurora  mug"}, g) == (True, 1.0)
    assert arguments_score({"query": "Aurora Mug", "category": "kitchen"}, g) == (True, 1.0)
    assert arguments_score({"query": "Aurora Mug", "category": "toys"}, g) == (False, 0.5)
    assert arguments_score({"query": "mug"}, g) == (False, 0.0)
    calc = GoldCall("calculator", {"expression": "7 * 23.49"})
    assert arguments_score({"expression": "23.49*7"}, calc) == (True, 1.0)
    order = GoldCall("create_order", {"product_id": "P001", "quantity": 2, "customer_id": "C1"})
    assert arguments_score({"product_id": "p001", "quantity": 2.0, "customer_id": "C1"},
                           order) == (False, 2 / 3)


def _task(calls: tuple[GoldCall, ...]) -> StoreTask:
    return StoreTask("x", "q", calls, "1", "number")


def test_metrics_punish_calls_on_a_zero_call_task() -> None:
    m = episode_metrics(_task(()), [CallLog("calculator", {"expression": "2*3"})], True)
    assert m["tool_name_accuracy"] == 0.0
    assert m["calls_over_min"] == 1
    assert m["arg_exact_match"] is None
    m = episode_metrics(_task(()), [], True)
    assert m["tool_name_accuracy"] == 1.0
    assert m["calls_over_min"] == 0


def test_metrics_dedupe_retries_and_count_recovered_faults() -> None:
    plan = (GoldCall("search_product", {"query": "A"}),
            GoldCall("check_inventory", {"product_id": "P001"}))
    calls = [CallLog("search_product", {"query": "A"}, ok=False, injected=True),
             CallLog("search_product", {"query": "A"}),
             CallLog("check_inventory", {"product_id": "P002"}),
             CallLog("check_inventory", {"product_id": "P001"}, ok=False, injected=True)]
    m = episode_metrics(_task(plan), calls, completed=False)
    assert m["tool_name_accuracy"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert m["arg_exact_match"] == 1.0
    assert m["arg_partial_match"] == 1.0
    assert m["num_calls"] == 2
    assert m["calls_over_min"] == 0
    assert (m["injected_faults"], m["faults_recovered"]) == (2, 1)
    done = episode_metrics(_task(plan), calls, completed=True)
    assert done["faults_recovered"] == 1  # completing another way is not a recovery


def test_answering_without_calling_again_is_not_a_recovery() -> None:
    plan = (GoldCall("calculator", {"expression": "2*3"}),)
    failed = [CallLog("calculator", {"expression": "2*3"}, ok=False, injected=True)]
    m = episode_metrics(_task(plan), failed, completed=True)
    assert (m["injected_faults"], m["faults_recovered"]) == (1, 0)
    assert (m["failed_calls"], m["failures_recovered"]) == (1, 0)
    none = episode_metrics(_task(plan), [], completed=True)
    assert (none["injected_faults"], none["faults_recovered"]) == (0, 0)
