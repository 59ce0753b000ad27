"""Property tests: whatever bytes arrive, the exchange loader answers with a model or with problems.

Hypothesis generates valid orders, recipes, checkpoints and reviews, near-valid ones
(a field dropped, retyped, added or pushed out of range) and byte-level damage of both
(truncation, stray bytes, NaN, duplicate keys, BOM). Loading must never raise: it gives a
model or one-line problems naming the file. A valid order of a valid generated recipe
must then mint or be refused with a reason, never crash. The long form
(`TOYFOUNDRY_SOAK=1`) runs many more examples; fuzz/ holds an atheris harness.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_project
from toyfoundry.errors import FoundryError
from toyfoundry.exchange.loader import Exchange
from toyfoundry.exchange.validate import validate_paths
from toyfoundry.forge.mint import mint_order
from toyfoundry.formats.models import PHASE_CAPS, RITUALS
from toyfoundry.store.layout import Layout

SOAK = os.environ.get("TOYFOUNDRY_SOAK") == "1"
FUZZ = settings(
    max_examples=4000 if SOAK else 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=not SOAK,
)
FOLDER = {"order": "orders", "recipe": "recipes", "checkpoint": "checkpoints", "review": "reviews"}

# --------------------------------------------------------------------------- JSON values

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
slugs = st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True)
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
order_ids = st.builds(
    lambda y, m, d, n: f"{y:04d}-{m:02d}-{d:02d}-{n:03d}",
    st.integers(2020, 2030),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 999),
)
timestamps = st.sampled_from(["2025-11-01T09:00:00Z", "2025-11-01T09:00:00.5+02:00", "soon"])
extreme_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, 1e-12, 1e308, -1e308, 1.7976931348623157e308]
)


dated_order_ids = st.builds(
    lambda day, n: f"{day.isoformat()}-{n:03d}",
    st.dates(dt.date(2025, 1, 1), dt.date(2026, 12, 31)),
    st.integers(0, 999),
)


@st.composite
def orders(draw: st.DrawFn, recipe: str | None = None) -> dict[str, Any]:
    phase = draw(st.sampled_from(sorted(PHASE_CAPS)))
    doc: dict[str, Any] = {
        "schema_version": 1,
        "order_id": draw(dated_order_ids if recipe else order_ids),
        "phase": phase,
        "recipe": recipe or draw(st.sampled_from(["bolt-bunny", "sprocket-scout", "marble-mech"])),
        "batch_size": draw(st.integers(1, PHASE_CAPS[phase])),
        "seed": draw(st.integers(0, 2**63 - 1)),
        "dry_run": draw(st.booleans()) or phase == "pilot",
        "issued_by": draw(st.text(min_size=1, max_size=20)),
    }
    if draw(st.booleans()):
        doc["rituals"] = draw(st.lists(st.sampled_from(RITUALS), max_size=4, unique=True))
    if draw(st.booleans()):
        doc["mutation"] = {
            "rate": draw(st.floats(0, 1)),
            "max_changes": draw(st.integers(1, 16)),
        }
    if draw(st.booleans()):
        novel = draw(st.sampled_from([0.6, 0.7, 1.0]))
        carry = draw(st.sampled_from([0.0, round(1 - novel, 2)]))
        doc["diversity"] = {
            "novel": novel,
            "carryover": carry,
            "baseline": round(1 - novel - carry, 2),
        }
    return doc


@st.composite
def param_specs(draw: st.DrawFn, sane: bool = False) -> dict[str, Any]:
    """A parameter's domain; `sane` keeps it within what the recipe rules accept."""
    kind = draw(st.sampled_from(["int", "float", "enum"]))
    if kind == "int":
        first = draw(st.integers(-(2**40), 2**40))
        return {
            "kind": "int",
            "min": first,
            "max": first + draw(st.integers(0 if sane else -1, 50)),
        }
    if kind == "float" and sane:
        low = draw(st.floats(-1e6, 1e6))
        step = draw(st.sampled_from([0.001, 0.1, 0.25, 1.0, 7.5]))
        top = low + step * draw(st.integers(0, 2000))
        return {"kind": "float", "min": low, "max": top, "step": step}
    if kind == "float":
        return {
            "kind": "float",
            "min": draw(extreme_floats),
            "max": draw(extreme_floats),
            "step": draw(extreme_floats),
        }
    return {
        "kind": "enum",
        "values": draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6)),
    }


def first_value(spec: dict[str, Any]) -> Any:
    return spec["values"][0] if spec["kind"] == "enum" else spec["min"]


@st.composite
def recipes(draw: st.DrawFn, recipe_id: str | None = None, sane: bool = False) -> dict[str, Any]:
    params = draw(st.dictionaries(names, param_specs(sane), min_size=1, max_size=4))
    baseline = {name: first_value(spec) for name, spec in params.items()}
    weights = {
        name: {str(first_value(spec)): draw(st.floats(-10, 10))}
        for name, spec in params.items()
        if draw(st.booleans())
    }
    pass_score = draw(st.floats(-100, 100))
    doc: dict[str, Any] = {
        "schema_version": 1,
        "recipe_id": recipe_id or draw(slugs),
        "version": draw(st.sampled_from(["1", "1.2.3"] if sane else ["1", "1.2", "v1"])),
        "experimental": draw(st.booleans()),
        "parameters": params,
        "baselines": [baseline],
        "forbidden": [] if sane else draw(st.lists(st.just(baseline), max_size=1)),
        "scoring": {
            "base": draw(st.floats(-100, 100)),
            "weights": weights,
            "noise": draw(st.floats(0, 10)),
            "defects": [{"when": baseline, "defect": "odd"}] if draw(st.booleans()) else [],
        },
        "pass_score": pass_score,
        "promote_score": pass_score + draw(st.floats(0, 50)),
    }
    if draw(st.booleans()):
        doc["promotion"] = {
            "max_per_order": draw(st.integers(0, 96)),
            "pool_limit": draw(st.integers(1, 1024)),
        }
    return doc


@st.composite
def checkpoints(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "phase": draw(st.sampled_from(sorted(PHASE_CAPS))),
        "approved_by": draw(st.text(max_size=10)),
        "approved_at": draw(timestamps),
    }


@st.composite
def reviews(draw: st.DrawFn) -> dict[str, Any]:
    order_id = draw(order_ids)
    decision = st.fixed_dictionaries(
        {
            "alfa_id": st.builds(lambda n: f"{order_id}.a{n:03d}", st.integers(0, 120)),
            "decision": st.sampled_from(["waive", "reroll", "reject", "approve"]),
            "by": st.text(max_size=10),
            "at": timestamps,
        }
    )
    return {
        "schema_version": 1,
        "order_id": order_id,
        "decisions": draw(st.lists(decision, max_size=4)),
    }


DOCS = {"order": orders(), "recipe": recipes(), "checkpoint": checkpoints(), "review": reviews()}


@st.composite
def near(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with one field dropped, retyped, added or nested somewhere inside it."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    target = out
    while draw(st.booleans()):
        inner = [v for v in target.values() if isinstance(v, dict) and v]
        if not inner:
            break
        target = draw(st.sampled_from(inner))
    key = draw(st.sampled_from(sorted(target)))
    how = draw(st.sampled_from(["drop", "retype", "add", "nest"]))
    if how == "drop":
        del target[key]
    elif how == "retype":
        target[key] = draw(values)
    elif how == "add":
        target[draw(st.text(max_size=8))] = draw(values)
    else:
        target[key] = [[[target[key]]]]
    return out


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte-level damage: cut, stray bytes, a non-JSON constant, a repeated key, a BOM."""
    how = draw(st.sampled_from(["cut", "insert", "flip", "nan", "dupkey", "bom", "huge-int"]))
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if how == "cut":
        return data[:at]
    if how == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if how == "nan":
        return data.replace(
            b"1", draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"])), 1
        )
    if how == "dupkey":
        return data.replace(b'{"', b'{"schema_version": 1, "', 1)
    if how == "huge-int":
        return data.replace(b"1", b"1" + b"0" * 30, 1)
    return b"\xef\xbb\xbf" + data


@st.composite
def exchange_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(DOCS)))
    doc = draw(DOCS[kind])
    if draw(st.booleans()):
        doc = draw(near(doc))
    data = json.dumps(doc).encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 2)) == 0:
        data = draw(damaged(data))
    return kind, data


# --------------------------------------------------------------------------- the properties


@pytest.fixture(scope="module")
def fuzz_project(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return make_project(tmp_path_factory.mktemp("fuzz") / "project", orders=False)


def check_loaded(layout: Layout, kind: str, path: Path, schema_check: bool) -> None:
    loaded = Exchange(layout, schema_check=schema_check).load(kind, path)
    assert loaded.model is not None or loaded.problems, "neither a model nor a problem"
    shown = str(path.relative_to(layout.root))
    for problem in loaded.problems:
        line = str(problem)
        assert "\n" not in line and line.startswith(f"{shown}: "), line
        assert line.isprintable(), line


@FUZZ
@given(file=exchange_files(), schema_check=st.booleans())
def test_loader_gives_a_model_or_problems(
    fuzz_project: Layout, file: tuple[str, bytes], schema_check: bool
) -> None:
    kind, data = file
    path = fuzz_project.exchange / FOLDER[kind] / "fuzzed.json"
    path.write_bytes(data)
    try:
        check_loaded(fuzz_project, kind, path, schema_check)
        for problem in validate_paths(fuzz_project, [path], schema_check=schema_check):
            assert "\n" not in str(problem)
    finally:
        path.unlink()


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_are_a_model_or_problems(fuzz_project: Layout, data: bytes) -> None:
    path = fuzz_project.orders_dir / "2025-11-03-001.json"
    path.write_bytes(data)
    try:
        check_loaded(fuzz_project, "order", path, schema_check=True)
    finally:
        path.unlink()


@st.composite
def recipe_and_order(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    recipe = draw(recipes(recipe_id="fuzz-recipe", sane=draw(st.integers(0, 3)) > 0))
    order = draw(orders(recipe="fuzz-recipe"))
    return recipe, order


@settings(FUZZ, max_examples=1000 if SOAK else 40)
@given(pair=recipe_and_order())
def test_a_valid_order_mints_or_is_refused(tmp_path: Path, pair: tuple[Any, Any]) -> None:
    recipe, order = pair
    root = tmp_path / "mint"
    shutil.rmtree(root, ignore_errors=True)
    layout = make_project(root, orders=False)
    (layout.recipes_dir / "fuzz-recipe.json").write_text(json.dumps(recipe))
    order_path = layout.orders_dir / f"{order['order_id']}.json"
    order_path.write_text(json.dumps(order))
    loaded = Exchange(layout).load("order", order_path)
    try:
        artefact = mint_order(layout, order["order_id"])
    except FoundryError as exc:  # a user-level refusal (an id that is no order id)
        assert str(exc)
        return
    if loaded.ok:
        assert artefact.status in ("built", "dry-run", "blocked", "rejected", "awaiting-review")
    else:
        assert artefact.status == "rejected" and artefact.problems
