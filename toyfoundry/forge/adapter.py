"""The forge adapter's push: promoted Alfas, hydrated with their recipe pack, for toysoldiers.

`exchange/outbox/toysoldiers/<order>.json` lists an order's promoted Alfas, best
first, each parameter carrying its value and the recipe's definition of it, so
the receiving system needs no recipe pack of its own. Every order the rituals
handle gets one, written atomically with their artefacts: an order that promoted
nothing (a dry run, a blocked or rejected order, a batch below the bar) gets an
empty list and no recipe (`empty_manifest`). So the manifest is always there after
the order's rituals, and the graph can declare it as their target: doit restores a
deleted manifest, and a cache without the outbox ends with the same files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from toyfoundry.formats.models import (
    SCHEMA_VERSION,
    AlfaId,
    OrderId,
    ParamName,
    ParamSpec,
    ParamValue,
    Recipe,
    Sha256,
    Share,
    Strict,
    Version,
)


class HydratedParam(Strict):
    value: ParamValue
    definition: ParamSpec


class OutboxAlfa(Strict):
    alfa_id: AlfaId
    share: Share
    parent_id: AlfaId | None
    score: float
    rank: int | None
    doctrine: Sha256 | None
    params: dict[ParamName, HydratedParam]


class OutboxRecipe(Strict):
    recipe_id: str
    version: str
    title: str
    parameters: dict[ParamName, ParamSpec]


class OutboxManifest(Strict):
    """`exchange/outbox/toysoldiers/<order>.json`; `recipe` is None when nothing was promoted."""

    schema_version: Version
    order_id: OrderId
    recipe: OutboxRecipe | None
    alfas: list[OutboxAlfa]


def empty_manifest(order_id: str) -> dict[str, Any]:
    """The manifest of an order that promoted nothing: it says so, and needs no recipe."""
    return {"schema_version": SCHEMA_VERSION, "order_id": order_id, "recipe": None, "alfas": []}


def manifest(
    order_id: str,
    recipe: Recipe,
    promoted: Iterable[Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The order's `OutboxManifest` as the plain data it dumps to: what the rituals write.

    `promoted`: each promoted Alfa's doctrine entry, best first; `results`: their rows of
    rituals.json, by Alfa id; both plain data the rituals made from validated models
    (the batch, the recipe), so the manifest's shape is all there is to check, and the
    tests check it against the model; a model per hydrated parameter cost a twentieth
    of the rituals, a model per promoted Alfa and its result a fiftieth.
    """
    definitions = {name: spec.model_dump(mode="json") for name, spec in recipe.parameters.items()}
    alfas = []
    for p in promoted:
        result = results.get(p["alfa_id"])
        alfas.append(
            {
                "alfa_id": p["alfa_id"],
                "share": p["share"],
                "parent_id": p["parent_id"],
                "score": p["score"],
                "rank": result["rank"] if result else None,
                "doctrine": result["doctrine"] if result else None,
                "params": {
                    name: {"value": value, "definition": definitions[name]}
                    for name, value in p["params"].items()
                    if name in definitions
                },
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "order_id": order_id,
        "recipe": {
            "recipe_id": recipe.recipe_id,
            "version": recipe.version,
            "title": recipe.title,
            "parameters": definitions,
        },
        "alfas": alfas,
    }
