"""One cheap scan of the exchange that the graph is drawn from: orders, their recipes and chains."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from toyfoundry.exchange.loader import Exchange
from toyfoundry.exchange.validate import INPUT_FOLDERS
from toyfoundry.forge.mint import mint_inputs
from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout


@dataclass(frozen=True)
class OrderNode:
    """An order as the graph sees it: where it sits in its recipe's chain and what it reads."""

    order_id: str
    recipe: str | None
    phase: str | None
    previous: str | None
    mint_inputs: tuple[Path, ...] = ()


@dataclass
class Plan:
    """Every order in issue order, and the exchange's input files split by how doit can watch them."""

    layout: Layout
    orders: list[OrderNode] = field(default_factory=list)
    regular_inputs: list[Path] = field(default_factory=list)
    odd_inputs: list[tuple[str, str]] = field(default_factory=list)

    def node(self, order_id: str) -> OrderNode:
        for node in self.orders:
            if node.order_id == order_id:
                return node
        raise KeyError(order_id)


def classify(path: Path) -> str:
    """`regular` for a plain file doit may hash; otherwise what it is (never followed or read)."""
    try:
        st = os.lstat(path)
    except OSError:
        return "missing"
    if stat.S_ISREG(st.st_mode):
        return "regular"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISFIFO(st.st_mode):
        return "fifo"
    return "special"


def scan(layout: Layout) -> Plan:
    """Read every order once (safely) and link each to the previous order of its recipe."""
    exchange = Exchange(layout)
    plan = Plan(layout)
    for folder in INPUT_FOLDERS:
        for path in safe_read.list_json(layout.exchange / folder):
            kind = classify(path)
            if kind == "regular":
                plan.regular_inputs.append(path)
            else:
                plan.odd_inputs.append((str(path.relative_to(layout.root)), kind))
    last_of_recipe: dict[str, str] = {}
    for order_id in exchange.order_ids():
        model = exchange.order(order_id).model
        recipe = model.recipe if model is not None else None
        previous = last_of_recipe.get(recipe) if recipe else None
        if recipe:
            last_of_recipe[recipe] = order_id
        inputs = mint_inputs(layout, exchange, order_id, previous=previous)
        plan.orders.append(
            OrderNode(
                order_id,
                recipe,
                model.phase if model is not None else None,
                previous,
                (*inputs.present, *inputs.optional),
            )
        )
    return plan
