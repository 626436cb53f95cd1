"""The store's tools (typed functions -> :class:`~thinkgym.tools.FunctionTool`) and its prompt.

``make_store_tools(get_world)`` builds ``search_product``, ``check_inventory`` and
``create_order`` over whatever world ``get_world()`` returns at call time (an env
swaps worlds on reset without rebuilding tools), plus the tools package's
``calculator``. Schemas and argument validation come from the tools package.

    >>> import numpy as np
    >>> from thinkgym.envs.tool_call.store import generate_world
    >>> world = generate_world(np.random.default_rng(0))
    >>> tools = make_store_tools(lambda: world)
    >>> sorted(tools)
    ['calculator', 'check_inventory', 'create_order', 'search_product']
    >>> tools["create_order"].parameters["required"]
    ['product_id', 'quantity', 'customer_id']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from thinkgym.envs.tool_call.store import StoreWorld
from thinkgym.protocols import Tool

__all__ = ["PROTOCOL_TEXT", "build_prompt", "make_store_tools"]

Category = Literal["kitchen", "office", "electronics", "outdoor", "toys", "garden"]

PROTOCOL_TEXT = (
    "To call a tool, write <tool_call>{\"name\": \"<tool name>\", \"arguments\": {...}}"
    "</tool_call>. You may make several calls in one turn; each result comes back in a "
    "<tool_response> block. Tools sometimes fail: retry a failed call, or get the result "
    "another way. Only call tools you need. You may think first inside <think>...</think>. "
    "When you are done, write <answer>your final answer</answer> (a number, yes/no, an order "
    "id or a short phrase; no units)."
)


def make_store_tools(get_world: Callable[[], StoreWorld]) -> dict[str, Tool]:
    """The four tools of ToolCall-v0, by name, bound to ``get_world()``."""
    from thinkgym.tools import FunctionTool, calculator

    def search_product(query: str, category: Category | None = None) -> list[dict[str, Any]]:
        """Search the catalog by product name or keywords; returns up to 5 matches.

        Args:
            query: Words from the product name, e.g. "Aurora Mug".
            category: Only return products of this category.
        """
        return [p.to_json() for p in get_world().search(query, category)]

    def check_inventory(product_id: str, location: str | None = None) -> dict[str, Any]:
        """Units in stock of a product, per store location (or at one location).

        Args:
            product_id: The product id, e.g. "P007".
            location: One store location; omit it to get every location and the total.
        """
        stock = get_world().stock(product_id, location)
        if location is not None:
            (loc, units), = stock.items()
            return {"product_id": product_id, "location": loc, "units": units}
        return {"product_id": product_id, "units_by_location": stock,
                "total_units": sum(stock.values())}

    def create_order(product_id: str, quantity: int, customer_id: str) -> dict[str, Any]:
        """Place an order; stock is taken from the locations with the most units.

        Args:
            product_id: The product id, e.g. "P007".
            quantity: Units to order (at least 1, at most the units in stock).
            customer_id: The customer id, e.g. "C003".
        """
        return get_world().place_order(product_id, quantity, customer_id).to_json()

    made: list[Tool] = [FunctionTool(search_product), FunctionTool(check_inventory),
                        FunctionTool(create_order), calculator]
    return {t.name: t for t in made}


def build_prompt(world: StoreWorld, tools: Mapping[str, Tool], question: str) -> str:
    """System text (store facts, tool schemas, protocol) followed by the task."""
    specs = [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
             for t in tools.values()]
    return (
        "You are the assistant of an online store. Use the tools to look up products, check "
        "stock, place orders and do arithmetic.\n\n"
        f"{world.describe()}\n\n"
        f"Tools (JSON schemas):\n{json.dumps(specs, separators=(',', ':'))}\n\n"
        f"{PROTOCOL_TEXT}\n\n"
        f"Task: {question}\n"
    )
