"""A procedurally generated store: products, inventory by location, customers, orders.

The world behind ``ToolCall-v0``. Everything is drawn from a ``numpy`` Generator,
so one seed gives one world. Prices are kept in integer cents (no float drift in
totals); stock is an integer per ``(product, location)``.

The world is plain data plus three operations the env's tools wrap:

* :meth:`StoreWorld.search` — products whose name/category match a free-text query;
* :meth:`StoreWorld.stock` — units in stock, per location or at one location;
* :meth:`StoreWorld.place_order` — the only state change: checks product, customer
  and stock, decrements inventory (largest stock first) and records an
  :class:`Order`.

Agent-caused failures (unknown ids, too little stock) raise
:class:`thinkgym.errors.ToolError` with a fix, which the env renders as a tool
response.

    >>> import numpy as np
    >>> world = generate_world(np.random.default_rng(0))
    >>> product = world.products[0]
    >>> world.search(product.name)[0] == product
    True
    >>> before = world.total_stock(product.product_id)
    >>> if before >= 1:
    ...     order = world.place_order(product.product_id, 1, world.customers[0].customer_id)
    ...     assert world.total_stock(product.product_id) == before - 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from thinkgym.errors import ConfigError, ToolError

__all__ = [
    "CATEGORIES",
    "LOCATION_NAMES",
    "Customer",
    "Order",
    "Product",
    "StoreConfig",
    "StoreWorld",
    "format_money",
    "generate_world",
]

CATEGORIES: dict[str, tuple[str, ...]] = {
    "kitchen": ("Mug", "Kettle", "Skillet", "Blender", "Teapot", "Cutting Board", "Toaster"),
    "office": ("Stapler", "Notebook", "Desk Lamp", "Pen Set", "Monitor Stand", "Planner"),
    "electronics": ("Headphones", "Keyboard", "Mouse", "Charger", "Speaker", "Webcam"),
    "outdoor": ("Tent", "Lantern", "Backpack", "Water Bottle", "Hammock", "Sleeping Bag"),
    "toys": ("Puzzle", "Kite", "Robot Kit", "Yo-Yo", "Board Game", "Plush Bear"),
    "garden": ("Shovel", "Planter", "Garden Hose", "Pruner", "Watering Can", "Rake"),
}
"""Category -> product nouns. Names are ``"<brand> <noun>"``, unique within a world."""

_BRANDS = ("Aurora", "Cobalt", "Ember", "Juniper", "Maple", "Nimbus", "Orchid", "Quartz",
           "Sable", "Tidal", "Umber", "Vesper", "Willow", "Zephyr", "Harbor", "Linden")
LOCATION_NAMES = ("Berlin", "Lisbon", "Osaka", "Toronto", "Nairobi", "Lima", "Oslo", "Perth")
_FIRST = ("Ada", "Bruno", "Chioma", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines",
          "Jonas", "Kemi", "Luca", "Mei", "Nadia", "Omar", "Priya")
_LAST = ("Park", "Silva", "Okafor", "Novak", "Rossi", "Haddad", "Kim", "Tanaka", "Moreau",
         "Berg", "Adeyemi", "Costa", "Chen", "Petrova", "Saleh", "Iyer")


def format_money(cents: int) -> str:
    """``1250`` -> ``'12.50'`` (no currency sign; prompts say prices are in dollars)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


@dataclass(frozen=True)
class StoreConfig:
    """Size and ranges of a generated store."""

    num_products: int = 24
    """Products in the catalog (at most ``len(brands) * nouns``: 16 * 37 = 592)."""
    num_customers: int = 8
    """Registered customers."""
    num_locations: int = 4
    """Warehouses holding stock (1..8)."""
    max_stock: int = 30
    """Largest stock of one product at one location."""
    out_of_stock_prob: float = 0.2
    """Probability that a product has zero stock at a given location."""
    min_price_cents: int = 199
    """Lowest price, in cents."""
    max_price_cents: int = 19_999
    """Highest price, in cents."""

    def __post_init__(self) -> None:
        capacity = len(_BRANDS) * sum(len(v) for v in CATEGORIES.values())
        checks = (
            ("num_products", 1 <= self.num_products <= capacity, f"an int in [1, {capacity}]"),
            ("num_customers", 1 <= self.num_customers <= len(_FIRST) * len(_LAST),
             "an int in [1, 256]"),
            ("num_locations", 1 <= self.num_locations <= len(LOCATION_NAMES), "an int in [1, 8]"),
            ("max_stock", self.max_stock >= 1, "an int >= 1"),
            ("out_of_stock_prob", 0.0 <= self.out_of_stock_prob < 1.0, "a float in [0, 1)"),
            ("min_price_cents", 1 <= self.min_price_cents <= self.max_price_cents,
             "an int in [1, max_price_cents]"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"must be {rule}", field=name, got=getattr(self, name),
                                  fix=f"pass {name} as {rule}")


@dataclass(frozen=True)
class Product:
    """One catalog entry."""

    product_id: str
    name: str
    category: str
    price_cents: int

    @property
    def price(self) -> str:
        """Price in dollars as text, e.g. ``'12.50'``."""
        return format_money(self.price_cents)

    def to_json(self) -> dict[str, object]:
        return {"product_id": self.product_id, "name": self.name, "category": self.category,
                "price": float(self.price)}


@dataclass(frozen=True)
class Customer:
    """A registered customer."""

    customer_id: str
    name: str


@dataclass(frozen=True)
class Order:
    """A placed order; ``total_cents`` is quantity times the unit price."""

    order_id: str
    product_id: str
    quantity: int
    customer_id: str
    total_cents: int

    def to_json(self) -> dict[str, object]:
        return {"order_id": self.order_id, "product_id": self.product_id,
                "quantity": self.quantity, "customer_id": self.customer_id,
                "total": float(format_money(self.total_cents))}


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


@dataclass
class StoreWorld:
    """Catalog, stock, customers and orders of one episode (mutable: orders change it)."""

    products: list[Product]
    customers: list[Customer]
    locations: tuple[str, ...]
    inventory: dict[tuple[str, str], int]
    orders: list[Order] = field(default_factory=list)

    # -- lookups ----------------------------------------------------------------------
    @property
    def categories(self) -> tuple[str, ...]:
        """Categories present in the catalog, in catalog order."""
        return tuple(dict.fromkeys(p.category for p in self.products))

    def product(self, product_id: str) -> Product:
        """The product with this id, or a ToolError naming valid ids."""
        for p in self.products:
            if p.product_id == product_id:
                return p
        raise ToolError("unknown product_id", got=product_id,
                        fix="use a product_id returned by search_product, e.g. "
                            f"{self.products[0].product_id!r}")

    def customer(self, customer_id: str) -> Customer:
        """The customer with this id, or a ToolError."""
        for c in self.customers:
            if c.customer_id == customer_id:
                return c
        raise ToolError("unknown customer_id", got=customer_id,
                        fix=f"use a customer id like {self.customers[0].customer_id!r}")

    def search(self, query: str, category: str | None = None, limit: int = 5) -> list[Product]:
        """Products ranked by how many query words their name/category contain.

        Products containing *every* query word come first; a product matching no
        word is never returned. ``category`` (case-insensitive) filters first.
        """
        if category is not None and category.lower() not in self.categories:
            raise ToolError("unknown category", got=category,
                            fix=f"use one of {list(self.categories)} or omit category")
        wanted = _words(query)
        exact = query.strip().lower()
        scored: list[tuple[int, int, int, Product]] = []
        for i, p in enumerate(self.products):
            if category is not None and p.category != category.lower():
                continue
            hits = len(wanted & (_words(p.name) | {p.category}))
            if hits:
                scored.append((p.name.lower() != exact, -hits, i, p))
        scored.sort(key=lambda t: t[:3])
        return [t[3] for t in scored[:limit]]

    def _location(self, location: str) -> str:
        for loc in self.locations:
            if loc.lower() == location.strip().lower():
                return loc
        raise ToolError("unknown location", got=location,
                        fix=f"use one of {list(self.locations)} or omit location")

    def stock(self, product_id: str, location: str | None = None) -> dict[str, int]:
        """Units of ``product_id`` per location (only ``location`` if given)."""
        self.product(product_id)
        locs = self.locations if location is None else (self._location(location),)
        return {loc: self.inventory[(product_id, loc)] for loc in locs}

    def total_stock(self, product_id: str) -> int:
        """Units of ``product_id`` over all locations."""
        return sum(self.stock(product_id).values())

    # -- the one state change -----------------------------------------------------------
    def place_order(self, product_id: str, quantity: int, customer_id: str) -> Order:
        """Record an order and take the units from the locations with most stock first."""
        product = self.product(product_id)
        self.customer(customer_id)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise ToolError("quantity must be a positive integer", got=quantity,
                            fix="pass quantity as an integer >= 1")
        available = self.total_stock(product_id)
        if quantity > available:
            raise ToolError(f"not enough stock: {available} units available", got=quantity,
                            fix="check_inventory first and order at most the available units")
        remaining = quantity
        for loc in sorted(self.locations, key=lambda loc: -self.inventory[(product_id, loc)]):
            take = min(remaining, self.inventory[(product_id, loc)])
            self.inventory[(product_id, loc)] -= take
            remaining -= take
            if remaining == 0:
                break
        order = Order(order_id=f"O{len(self.orders) + 1:04d}", product_id=product_id,
                      quantity=quantity, customer_id=customer_id,
                      total_cents=quantity * product.price_cents)
        self.orders.append(order)
        return order

    def describe(self) -> str:
        """The store facts an agent may rely on without calling a tool."""
        return (f"Store locations ({len(self.locations)}): {', '.join(self.locations)}.\n"
                f"Product categories: {', '.join(self.categories)}.\n"
                "Prices are in dollars. Product ids look like P001, customer ids like C001.")


def generate_world(rng: np.random.Generator, config: StoreConfig | None = None) -> StoreWorld:
    """Draw a store from ``rng`` (same generator state -> same world)."""
    config = config or StoreConfig()
    pairs = [(cat, noun) for cat, nouns in CATEGORIES.items() for noun in nouns]
    names = [(brand, cat, noun) for brand in _BRANDS for cat, noun in pairs]
    picks = rng.choice(len(names), size=config.num_products, replace=False)
    products = []
    for i, k in enumerate(int(k) for k in picks):
        brand, cat, noun = names[k]
        price = int(rng.integers(config.min_price_cents, config.max_price_cents + 1))
        products.append(Product(f"P{i + 1:03d}", f"{brand} {noun}", cat, price))
    loc_idx = rng.choice(len(LOCATION_NAMES), size=config.num_locations, replace=False)
    locations = tuple(LOCATION_NAMES[int(j)] for j in loc_idx)
    people = rng.choice(len(_FIRST) * len(_LAST), size=config.num_customers, replace=False)
    customers = [Customer(f"C{i + 1:03d}", f"{_FIRST[int(k) // len(_LAST)]} "
                                           f"{_LAST[int(k) % len(_LAST)]}")
                 for i, k in enumerate(people)]
    inventory: dict[tuple[str, str], int] = {}
    for p in products:
        for loc in locations:
            empty = rng.random() < config.out_of_stock_prob
            inventory[(p.product_id, loc)] = 0 if empty else int(
                rng.integers(1, config.max_stock + 1))
        if not any(inventory[(p.product_id, loc)] for loc in locations):
            # Every catalog product is stocked somewhere, so ordering tasks always exist.
            loc = locations[int(rng.integers(len(locations)))]
            inventory[(p.product_id, loc)] = int(rng.integers(1, config.max_stock + 1))
    return StoreWorld(products=products, customers=customers, locations=locations,
                      inventory=inventory)
