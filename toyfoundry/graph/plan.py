"""The exchange as the graph sees it: orders, their recipes and chains, and the input files.

Drawing the graph needs one look at every order (its recipe and phase decide its
chain and its inputs). Parsing a thousand orders through the models on every `doit`
costs more than checking the whole graph, so the plan is kept in the dependency DB
under a signature of everything it was read from: the name, type, size and content
hash of every exchange input and of the settings file, plus the code that draws
it. The hashes come from the checker's cache (one per mtime, size and inode), so a
no-op run stats the files and reuses the plan; any change re-reads it all.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toyfoundry.store import safe_read
from toyfoundry.store.layout import INPUT_FOLDERS, Layout


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


def classify(path: Path) -> str:
    """`regular` for a plain file doit may hash; otherwise what it is (never followed or read)."""
    try:
        return safe_read.file_kind(os.lstat(path).st_mode)
    except OSError:
        return "missing"


Listing = list[tuple[str, str, int, str]]


def listing(layout: Layout) -> Listing:
    """(relative path, kind, size, content) of every input the plan is read from.

    Content is the md5 doit's checker keeps for the file (computed once per mtime,
    size and inode, and shared with the checker), so a copy of the project with new
    mtimes and inodes (a CI checkout with a restored cache) still matches its plan.
    Links and other odd entries are not read: their kind, mtime and inode stand in.
    """
    from toyfoundry.graph.checker import file_md5

    out: Listing = []
    paths = [p for folder in INPUT_FOLDERS for p in safe_read.list_json(layout.exchange / folder)]
    for path in [*paths, layout.settings_file]:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        rel = str(path.relative_to(layout.root))
        kind = safe_read.file_kind(st.st_mode)
        if kind == "regular":
            try:
                content = file_md5(str(path), st, key=rel)
            except OSError:
                content = f"unreadable {st.st_mtime_ns} {st.st_ino}"
        else:
            content = f"{st.st_mtime_ns} {st.st_ino}"
        out.append((rel, kind, st.st_size, content))
    return out


def _json(data: object) -> str:
    """Stdlib JSON: file names from the exchange may hold bytes that are not UTF-8
    (kept as surrogate escapes), which it writes as `\\udcxx` and reads back intact."""
    return json.dumps(data, separators=(",", ":"))


def signature(files: Listing) -> str:
    from toyfoundry.graph.stages import fingerprint

    digest = hashlib.sha256(fingerprint("plan").encode())
    digest.update(_json(files).encode("ascii"))
    return digest.hexdigest()


def scan(layout: Layout, files: Listing | None = None) -> Plan:
    """Read every order once (safely) and link each to the previous order of its recipe."""
    from toyfoundry.exchange.loader import Exchange
    from toyfoundry.forge.mint import mint_inputs

    files = listing(layout) if files is None else files
    exchange = Exchange(layout)
    plan = Plan(layout)
    for rel, kind, *_ in files:
        if not rel.startswith("exchange/"):
            continue
        if kind == "regular":
            plan.regular_inputs.append(layout.root / rel)
        else:
            plan.odd_inputs.append((rel, kind))
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


def _encode(plan: Plan) -> dict[str, Any]:
    root = plan.layout.root
    return {
        "orders": [
            [
                n.order_id,
                n.recipe,
                n.phase,
                n.previous,
                [str(p.relative_to(root)) for p in n.mint_inputs],
            ]
            for n in plan.orders
        ],
        "regular": [str(p.relative_to(root)) for p in plan.regular_inputs],
        "odd": plan.odd_inputs,
    }


def _decode(layout: Layout, data: dict[str, Any]) -> Plan:
    root = layout.root
    return Plan(
        layout,
        [
            OrderNode(o, r, ph, prev, tuple(root / p for p in inputs))
            for o, r, ph, prev, inputs in data["orders"]
        ],
        [root / p for p in data["regular"]],
        [(a, b) for a, b in data["odd"]],
    )


def load(layout: Layout) -> Plan:
    """The plan, from the dependency DB when nothing it was read from has changed."""
    from toyfoundry.graph import backend

    files = listing(layout)
    db = backend.current()
    key = signature(files)
    if db is not None:
        text = db.get_meta("plan")
        cached = json.loads(text) if text else None
        if cached is not None and cached.get("signature") == key:
            return _decode(layout, cached["plan"])
    plan = scan(layout, files)
    if db is not None:
        db.put_meta("plan", _json({"signature": key, "plan": _encode(plan)}))
    return plan
