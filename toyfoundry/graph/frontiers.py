"""Each recipe's carried positions gathered before the first new order of it arrives.

An order's mint needs every carryover position its recipe's earlier orders took,
gathered along their chain files (`forge.carried`); a process keeps the set for the
last chain of each recipe, so only the first order it mints of a recipe walks the
links back, thousands of chain files at 10,000 orders (0.5-0.9 s). A warm watcher
walks them once at start instead, for the chain each recipe's next order will
start from, so the first new order of a recipe costs what the next ones do.
"""

from __future__ import annotations

from toyfoundry.errors import FoundryError
from toyfoundry.forge import carried
from toyfoundry.forge.chain import read_chain_data
from toyfoundry.graph.plan import Plan


def warm(plan: Plan) -> int:
    """Gather the carried positions of each recipe's last order's chain (the one a new order
    of it starts from) into the `frontiers` cache; how many recipes were gathered. A chain
    that is missing or cannot be followed is left to the mint, which says why."""
    last: dict[str, str] = {}
    for node in plan.orders:
        if node.recipe is not None:
            last[node.recipe] = node.order_id
    done = 0
    for order_id in last.values():
        try:
            chain, data = read_chain_data(plan.layout, order_id)
            carried.ahead(plan.layout, chain, data)
        except (FoundryError, OSError, ValueError):
            continue
        done += 1
    return done
