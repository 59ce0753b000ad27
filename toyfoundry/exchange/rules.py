"""Cross-field rules a schema cannot say: ids match file names, caps per phase, recipe coherence."""

from __future__ import annotations

import datetime as dt

import orjson

from toyfoundry.errors import Problem
from toyfoundry.formats.models import PHASE_CAPS, Checkpoint, FloatParam, Order, Recipe, Review
from toyfoundry.formats.params import (
    MAX_FLOAT_STEPS,
    MAX_SPACE,
    cardinality,
    describe,
    index_of,
    matches,
    weight_key_names_a_value,
)


def _date_ok(order_id: str) -> bool:
    try:
        dt.date.fromisoformat(order_id[:10])
    except ValueError:
        return False
    return True


def order_rules(order: Order, path: str, stem: str, recipe: Recipe | None) -> list[Problem]:
    """Rules on a schema-valid order; `recipe` is None when the recipe is missing or invalid."""
    out = []
    if order.order_id != stem:
        out.append(
            Problem(path, "order_id", f"is {order.order_id!r} but the file is named {stem!r}")
        )
    if not _date_ok(order.order_id):
        out.append(Problem(path, "order_id", f"{order.order_id[:10]!r} is not a calendar date"))
    cap = PHASE_CAPS[order.phase]
    if order.batch_size > cap:
        out.append(
            Problem(
                path, "batch_size", f"{order.batch_size} is over the {order.phase} cap of {cap}"
            )
        )
    if order.phase == "pilot" and not order.dry_run:
        out.append(Problem(path, "dry_run", "pilot orders must be dry runs (set dry_run: true)"))
    if order.rituals is not None and len(set(order.rituals)) != len(order.rituals):
        out.append(Problem(path, "rituals", "lists a ritual more than once"))
    if recipe is not None and recipe.experimental and order.phase != "operational":
        out.append(
            Problem(
                path,
                "recipe",
                f"{recipe.recipe_id!r} is experimental: only operational orders may use it",
            )
        )
    return out


def _params_rules(
    recipe: Recipe, path: str, field: str, params: dict[str, object], complete: bool
) -> list[Problem]:
    out = []
    for name, value in params.items():
        spec = recipe.parameters.get(name)
        if spec is None:
            out.append(Problem(path, f"{field}.{name}", "is not a parameter of this recipe"))
        elif index_of(spec, value) is None:  # type: ignore[arg-type]
            out.append(Problem(path, f"{field}.{name}", f"{value!r} is not {describe(spec)}"))
    if complete:
        for name in recipe.parameters:
            if name not in params:
                out.append(Problem(path, f"{field}.{name}", "is missing: baselines are complete"))
    return out


def recipe_rules(recipe: Recipe, path: str, stem: str) -> list[Problem]:
    out = []
    if recipe.recipe_id != stem:
        out.append(
            Problem(path, "recipe_id", f"is {recipe.recipe_id!r} but the file is named {stem!r}")
        )
    space = 1
    for name, spec in recipe.parameters.items():
        n = cardinality(spec)
        if n < 1:
            out.append(Problem(path, f"parameters.{name}", "has an empty range (max < min)"))
        if isinstance(spec, FloatParam) and n > MAX_FLOAT_STEPS:
            out.append(
                Problem(path, f"parameters.{name}", f"has {n} steps, over {MAX_FLOAT_STEPS}")
            )
        if len(set(getattr(spec, "values", []))) != len(getattr(spec, "values", [])):
            out.append(Problem(path, f"parameters.{name}.values", "lists a value more than once"))
        space *= max(n, 1)
    if space > MAX_SPACE:
        out.append(Problem(path, "parameters", f"the space has {space} permutations, over 2^62"))
    for i, base in enumerate(recipe.baselines):
        out += _params_rules(recipe, path, f"baselines.{i}", dict(base), complete=True)
    for i, forbidden in enumerate(recipe.forbidden):
        if not forbidden:
            out.append(Problem(path, f"forbidden.{i}", "is empty: it would forbid every Alfa"))
        out += _params_rules(recipe, path, f"forbidden.{i}", dict(forbidden), complete=False)
    for i, baseline in enumerate(recipe.baselines):
        for j, combination in enumerate(recipe.forbidden):
            if combination and matches(baseline, combination):
                out.append(Problem(path, f"baselines.{i}", f"matches forbidden combination {j}"))
    for i, rule in enumerate(recipe.scoring.defects):
        out += _params_rules(recipe, path, f"scoring.defects.{i}.when", dict(rule.when), False)
    for name, weights in recipe.scoring.weights.items():
        weighed = recipe.parameters.get(name)
        if weighed is None:
            out.append(
                Problem(path, f"scoring.weights.{name}", "is not a parameter of this recipe")
            )
            continue
        for key in weights:
            if not weight_key_names_a_value(weighed, key):
                out.append(
                    Problem(
                        path,
                        f"scoring.weights.{name}.{key}",
                        f"is not {describe(weighed)}, so its weight would never count",
                    )
                )
    if recipe.promote_score < recipe.pass_score:
        out.append(
            Problem(
                path,
                "promote_score",
                f"{recipe.promote_score} is below pass_score {recipe.pass_score}",
            )
        )
    return out


def checkpoint_rules(checkpoint: Checkpoint, path: str, stem: str) -> list[Problem]:
    if checkpoint.phase != stem:
        return [Problem(path, "phase", f"is {checkpoint.phase!r} but the file is named {stem!r}")]
    return []


def review_rules(
    review: Review, path: str, stem: str, batch_size: int | None = None
) -> list[Problem]:
    """`batch_size`: of the reviewed order when it loads, so a slot past the batch is caught here.

    A decision with a `key` is matched by what the reviewer saw; its `alfa_id` only
    records the slot it had then, so neither the batch size nor a repeat of the id
    makes it wrong. The same key decided twice is.
    """
    out = []
    if review.order_id != stem:
        out.append(
            Problem(path, "order_id", f"is {review.order_id!r} but the file is named {stem!r}")
        )
    seen: set[str] = set()
    keys: set[bytes] = set()
    for i, decision in enumerate(review.decisions):
        if not decision.alfa_id.startswith(review.order_id + "."):
            out.append(
                Problem(
                    path,
                    f"decisions.{i}.alfa_id",
                    f"{decision.alfa_id!r} is not an Alfa of order {review.order_id}",
                )
            )
        elif decision.key is not None:
            key = orjson.dumps(decision.key.model_dump(), option=orjson.OPT_SORT_KEYS)
            if key in keys:
                out.append(
                    Problem(
                        path,
                        f"decisions.{i}.key",
                        f"the Alfa shown as {decision.alfa_id!r} is decided twice",
                    )
                )
            keys.add(key)
            continue
        elif batch_size is not None and int(decision.alfa_id.split(".a")[1][:3]) >= batch_size:
            out.append(
                Problem(
                    path,
                    f"decisions.{i}.alfa_id",
                    f"{decision.alfa_id!r} is not an Alfa of order {review.order_id}"
                    f" (its batch has {batch_size} slots)",
                )
            )
        if decision.alfa_id in seen:
            out.append(
                Problem(path, f"decisions.{i}.alfa_id", f"{decision.alfa_id!r} is decided twice")
            )
        seen.add(decision.alfa_id)
    return out
