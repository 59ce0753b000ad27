"""W(N): a deterministic, valid exchange of N orders over three recipes in the three phases."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path
from typing import Any

RECIPES = ("gear-golem", "kite-knight", "drum-dragon")
START = dt.date(2025, 11, 3)
ORDERS_PER_DAY = 24


#: Forbidden combinations as a quality desk writes them: about 1 Alfa in 20 is refused, so
#: most operational batches hold a few quarantined Alfas (the review queue's workload).
REVIEW_FORBIDDEN: list[dict[str, Any]] = [
    {"colour": "white", "finish": "raw"},
    {"legs": 7, "size": 99},
    {"colour": "ochre", "legs": 8},
    {"finish": "satin", "teeth": 13},
    {"colour": "slate", "finish": "gloss", "legs": 1},
]


def recipe(
    recipe_id: str, salt: int, *, forbidden: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A recipe with a space of about 10^8 permutations, so 1,000s of orders never run dry.

    `forbidden`: its forbidden combinations (default: two, rarely met)."""
    colours = ["red", "olive", "navy", "sand", "white", "teal", "ochre", "slate"]
    return {
        "schema_version": 1,
        "recipe_id": recipe_id,
        "version": f"1.{salt}.0",
        "title": f"Benchmark recipe {recipe_id}",
        "parameters": {
            "size": {"kind": "int", "min": 1, "max": 100},
            "tension": {"kind": "float", "min": 0.0, "max": 10.0, "step": 0.1},
            "colour": {"kind": "enum", "values": colours},
            "teeth": {"kind": "int", "min": 4, "max": 103},
            "finish": {"kind": "enum", "values": ["matte", "gloss", "satin", "raw"]},
            "legs": {"kind": "int", "min": 1, "max": 8},
        },
        "baselines": [
            {
                "size": 10 + salt,
                "tension": 2.5,
                "colour": "red",
                "teeth": 20,
                "finish": "matte",
                "legs": 4,
            },
            {
                "size": 50,
                "tension": 5.0,
                "colour": "navy",
                "teeth": 40 + salt,
                "finish": "gloss",
                "legs": 2,
            },
        ],
        "forbidden": forbidden
        if forbidden is not None
        else [{"colour": "white", "finish": "raw"}, {"legs": 7, "size": 99}],
        "scoring": {
            "base": 50.0,
            "weights": {
                "colour": {c: float((i * 3 + salt) % 7 - 3) for i, c in enumerate(colours)},
                "finish": {"matte": 2.0, "gloss": 4.0, "satin": 1.0, "raw": -3.0},
                "legs": {str(n): float((n * 5 + salt) % 9 - 4) for n in range(1, 9)},
            },
            "noise": 6.0,
            "defects": [
                {"when": {"finish": "raw", "legs": 8}, "defect": "wobble"},
                {"when": {"size": 1}, "defect": "too-small"},
            ],
        },
        "pass_score": 50.0,
        "promote_score": 57.0,
        "mutation": {"rate": 0.4, "max_changes": 2},
        "promotion": {"max_per_order": 8, "pool_limit": 32},
    }


def order(index: int, rng: random.Random) -> dict[str, Any]:
    day = START + dt.timedelta(days=index // ORDERS_PER_DAY)
    order_id = f"{day.isoformat()}-{index % ORDERS_PER_DAY + 1:03d}"
    if index < 3:
        phase, size, dry = "pilot", 12, True
    elif index < 6:
        phase, size, dry = "expansion", 48, False
    else:
        phase, size, dry = "operational", 96, False
    return {
        "schema_version": 1,
        "order_id": order_id,
        "phase": phase,
        "recipe": RECIPES[index % len(RECIPES)],
        "batch_size": size,
        "seed": rng.randrange(2**63),
        "dry_run": dry,
        "issued_by": "Benchmark Command",
        "notes": f"workload order {index}",
    }


def write(
    root: Path, n: int, *, seed: int = 1, forbidden: list[dict[str, Any]] | None = None
) -> list[str]:
    """Write W(n) under root/exchange (recipes, checkpoints, orders); returns the order ids.

    `forbidden`: the recipes' forbidden combinations (`REVIEW_FORBIDDEN` for a review queue)."""
    rng = random.Random(seed)
    ex = root / "exchange"
    for folder in ("recipes", "checkpoints", "orders", "reviews"):
        (ex / folder).mkdir(parents=True, exist_ok=True)
    for salt, recipe_id in enumerate(RECIPES):
        _dump(ex / "recipes" / f"{recipe_id}.json", recipe(recipe_id, salt, forbidden=forbidden))
    for phase in ("expansion", "operational"):
        _dump(
            ex / "checkpoints" / f"{phase}.json",
            {
                "schema_version": 1,
                "phase": phase,
                "approved_by": "Benchmark Command",
                "approved_at": "2025-11-01T00:00:00Z",
                "note": "benchmark",
            },
        )
    ids = []
    for index in range(n):
        doc = order(index, rng)
        _dump(ex / "orders" / f"{doc['order_id']}.json", doc)
        ids.append(doc["order_id"])
    return ids


def extra(root: Path, n: int, k: int = 0, *, seed: int = 1) -> str:
    """Drop order n + k of the sequence W(n) was drawn from (a new order), atomically; its id.

    Atomic (a temp name watchers ignore, then a rename) so a watcher never sees half a file.
    """
    rng = random.Random(seed)
    for index in range(n + k):
        order(index, rng)  # each order draws once: this replays the sequence up to n + k
    doc = order(n + k, rng)
    path = root / "exchange" / "orders" / f"{doc['order_id']}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    _dump(tmp, doc)
    os.replace(tmp, path)
    return str(doc["order_id"])


def alfas(n: int) -> int:
    """Alfas W(n) mints: every batch but the dry-run pilots."""
    return sum(0 if i < 3 else 48 if i < 6 else 96 for i in range(n))


def _dump(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args()
    print(len(write(ns.root, ns.n, seed=ns.seed)), "orders written")
