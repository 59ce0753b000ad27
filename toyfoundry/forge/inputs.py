"""Which exchange files an order's mint reads, from a few facts about the orders and recipes.

Kept apart from the mint (and free of pydantic) because the graph needs the same
answer for every order on every change of the exchange: the graph's plan answers
from facts it remembers per file content, the mint from the models it parsed.
Both go through `mint_input_paths`, so the file deps doit checks are exactly the
files the mint reads. The digests of those files (`file_digest`) are here too: the mint
records them in mint.json and the rituals take them again to check that none changed
since, in the same process in a serial build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout


class OrderFacts(NamedTuple):
    """What the graph needs of a valid order model: its recipe and its phase."""

    recipe: str
    phase: str


class InputView(Protocol):
    """A read of the exchange that can answer the three questions the inputs depend on."""

    def order_ids(self) -> list[str]: ...

    def order_facts(self, order_id: str) -> OrderFacts | None:
        """None when the order file does not give a model (unreadable or invalid)."""
        ...

    def recipe_experimental(self, recipe_id: str) -> bool: ...


@dataclass(frozen=True)
class MintInputs:
    """The files one order's mint reads, for the graph's file dependencies."""

    present: list[Path]
    optional: list[Path]
    chain: Path | None


def sprint_of(order_id: str) -> str:
    """The sprint of an order: the ISO week of its date, like `2025-W44`."""
    year, week, _ = dt.date.fromisoformat(order_id[:10]).isocalendar()
    return f"{year}-W{week:02d}"


def sprint_orders(view: InputView, order_id: str) -> list[str]:
    """The orders of `order_id`'s sprint (itself included), in issue order."""
    try:
        sprint = sprint_of(order_id)
    except ValueError:
        return []
    out = []
    for other in view.order_ids():
        try:
            if sprint_of(other) == sprint:
                out.append(other)
        except ValueError:
            continue
    return out


def _exists(path: Path) -> bool:
    return safe_read.present(path)


def mint_input_paths(
    layout: Layout, view: InputView, order_id: str, previous: str | None
) -> MintInputs:
    """The files `mint_order` reads: file deps, optional files (may be absent), the previous chain.

    An experimental recipe's orders also read their sprint's orders (and those
    orders' recipes) and the settings, because the experimental quota is shared
    by the sprint.
    """
    order_path = layout.order_file(order_id)
    present = [order_path]
    optional: list[Path] = []
    order = view.order_facts(order_id)
    if order is None:
        return MintInputs(present, optional, None)
    recipe_path = layout.recipe_file(order.recipe)
    if _exists(recipe_path):
        present.append(recipe_path)
    if order.phase != "pilot":
        optional.append(layout.checkpoint_file(order.phase))
    optional.append(layout.review_file(order_id))
    if view.recipe_experimental(order.recipe):
        for other in sprint_orders(view, order_id):
            path = layout.order_file(other)
            if path not in present:
                present.append(path)
            facts = view.order_facts(other)
            if facts is not None:
                other_recipe = layout.recipe_file(facts.recipe)
                if other_recipe not in present and _exists(other_recipe):
                    present.append(other_recipe)
        optional.append(layout.settings_file)
    return MintInputs(present, optional, layout.chain_file(previous) if previous else None)


def file_digest(path: Path, max_bytes: int | None = None) -> str | None:
    """sha256 of a file's bytes; None when it is absent or not a readable regular file.

    The mint records the digests of its inputs in mint.json and the rituals take them
    again, to refuse a mint.json made from inputs that changed since. Read each time: a
    cache of digests by the files' stats saved 1% of the rituals' instructions
    (BENCHMARKS, "The rituals and the report, second round") and was removed.
    """
    try:
        return hashlib.sha256(safe_read.read_bytes(path, max_bytes=max_bytes)).hexdigest()
    except safe_read.ReadError:
        return None


def display_path(root: Path, path: Path) -> str:
    """`exchange.loader.display` of a path: relative to the project when inside it, from its
    text when both are absolute (as the layout's paths are), without a `Path` made."""
    text, top = str(path), str(root)
    if (
        text.startswith(top)
        and text[len(top) : len(top) + 1] == "/"
        and top != "/"
        and path.is_absolute()
    ):
        return text[len(top) + 1 :]
    try:
        return str(path.absolute().relative_to(root))
    except ValueError:
        return text
