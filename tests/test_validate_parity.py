"""`toyfoundry validate` refuses exactly what the build refuses, with the same lines.

The pre-commit hook is only worth running if a file it passes builds and a file it
refuses is refused by the build too. A hypothesis property generates orders, recipes,
checkpoints and reviews, valid and broken (wrong types, missing and unknown fields,
forbidden rules that forbid a baseline or everything, weights for values that do not
exist, weights that would overflow a score, impossible calendar times), and holds that
the lines `validate` prints about the file are the lines the build prints about it:
none for both, or the same ones.

The build's lines about a file are those of the graph's `validate` task (for recipes,
checkpoints and reviews) and those of the mint of an order that reads it, as its
report task prints them. Reviews decide Alfas the mint quarantined: whether an Alfa
was quarantined is known only by minting (see the threat model's limits).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLE, make_project
from toyfoundry.errors import Problem
from toyfoundry.exchange.loader import display
from toyfoundry.exchange.validate import validate_paths
from toyfoundry.forge.mint import mint_order
from toyfoundry.forge.rituals import run_rituals
from toyfoundry.store.layout import Layout

SOAK = os.environ.get("TOYFOUNDRY_SOAK") == "1"
ORDER = "2025-10-27-014"  # operational, sprocket-scout, with quarantined Alfas
EARLIER = ("2025-10-12-005", "2025-10-20-011")
QUARANTINED = ("2025-10-27-014.a010", "2025-10-27-014.a015")


def _sample(folder: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLE / folder / f"{name}.json").read_bytes())
    return data


BASE: dict[str, dict[str, Any]] = {
    "order": _sample("orders", ORDER),
    "recipe": _sample("recipes", "sprocket-scout"),
    "checkpoint": _sample("checkpoints", "operational"),
    "review": {
        "schema_version": 1,
        "order_id": ORDER,
        "decisions": [
            {
                "alfa_id": QUARANTINED[0],
                "decision": "waive",
                "by": "QA",
                "at": "2025-10-28T10:00:00Z",
            },
            {
                "alfa_id": QUARANTINED[1],
                "decision": "reject",
                "by": "QA",
                "at": "2025-10-28T10:05:00Z",
            },
        ],
    },
}

# --------------------------------------------------------------------------- strategies

timestamps = st.builds(
    "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format,
    st.integers(1999, 2031),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.sampled_from([0, 1, 12, 48, 96, 97, -1, 2**63, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e6, 1e6 + 1, -1e6, 1e308, -1e308, 0.5, 3.0]),
    st.text(max_size=12),
    st.sampled_from(["12", "3.0", "pilot", "sprocket-scout", "../x", "", "2025-10-27-014"]),
    timestamps,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _set(doc: dict[str, Any], path: list[str | int], value: Any) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _paths(doc: Any, prefix: list[str | int]) -> list[list[str | int]]:
    """Every path to a value in `doc` (to mutate one of them)."""
    out: list[list[str | int]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append([*prefix, key])
            out += _paths(value, [*prefix, key])
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out.append([*prefix, index])
            out += _paths(value, [*prefix, index])
    return out


@st.composite
def documents(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A document of `kind`: the sample as it is, or with a few hostile changes."""
    doc = copy.deepcopy(BASE[kind])
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["set", "delete", "unknown", "special"]))
        paths = _paths(doc, [])
        if how == "set" and paths:
            _set(doc, draw(st.sampled_from(paths)), draw(values))
        elif how == "delete" and paths:
            path = draw(st.sampled_from(paths))
            node: Any = doc
            for part in path[:-1]:
                node = node[part]
            if isinstance(node, dict):
                node.pop(path[-1], None)
            elif isinstance(node, list) and isinstance(path[-1], int):
                del node[path[-1]]
        elif how == "unknown":
            doc[draw(st.text(min_size=1, max_size=8))] = draw(scalars)
        elif how == "special":
            _special(draw, kind, doc)
    return doc


def _special(draw: st.DrawFn, kind: str, doc: dict[str, Any]) -> None:
    """The changes of the issue: what validate once passed and the build refused."""
    if kind == "recipe":
        choice = draw(st.sampled_from(["forbid-all", "forbid-baseline", "weight", "overflow"]))
        if choice == "forbid-all":
            doc["forbidden"] = [{}]
        elif choice == "forbid-baseline" and isinstance(doc.get("baselines"), list):
            base = doc["baselines"][0] if doc["baselines"] else {}
            if isinstance(base, dict) and base:
                name = draw(st.sampled_from(sorted(base)))
                doc["forbidden"] = [{name: base[name]}]
        elif choice == "weight" and isinstance(doc.get("scoring"), dict):
            name = draw(st.sampled_from(["gear_teeth", "spring_tension", "chassis", "fur"]))
            key = draw(st.sampled_from(["mink", "3.0", "8", "08", "1.5", "1.50", "tin", "41"]))
            doc["scoring"].setdefault("weights", {})
            if isinstance(doc["scoring"]["weights"], dict):
                doc["scoring"]["weights"][name] = {key: draw(st.sampled_from([5, 1e308, -2.5]))}
        elif choice == "overflow" and isinstance(doc.get("scoring"), dict):
            doc["scoring"]["base"] = draw(st.sampled_from([1e308, -1e308, 1e6, 1000001.0]))
    elif kind == "checkpoint":
        doc["approved_at"] = draw(timestamps)
    elif kind == "review" and isinstance(doc.get("decisions"), list) and doc["decisions"]:
        if isinstance(doc["decisions"][0], dict):
            doc["decisions"][0]["at"] = draw(timestamps)
    elif kind == "order":
        doc[draw(st.sampled_from(["batch_size", "phase", "seed", "dry_run"]))] = draw(scalars)


# --------------------------------------------------------------------------- the two views

FILES = {
    "order": ("orders", ORDER),
    "recipe": ("recipes", "sprocket-scout"),
    "checkpoint": ("checkpoints", "operational"),
    "review": ("reviews", ORDER),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """The sample with the orders before ORDER built, so ORDER's chain is there to mint from."""
    layout = make_project(tmp_path_factory.mktemp("parity") / "project")
    for order_id in EARLIER:
        mint_order(layout, order_id)
        run_rituals(layout, order_id)
    return layout


def _place(layout: Layout, kind: str, doc: dict[str, Any]) -> Path:
    folder, name = FILES[kind]
    path = layout.exchange / folder / f"{name}.json"
    temp = path.with_name(f".{name}.json.tmp")
    temp.write_text(json.dumps(doc))
    os.replace(temp, path)  # a new inode each time: no parse is taken for another's
    return path


def validate_lines(layout: Layout, path: Path) -> set[str]:
    """What `toyfoundry validate PATH` prints."""
    return {str(p) for p in validate_paths(layout, [path], schema_check=True)}


def build_lines(layout: Layout, path: Path, kind: str) -> set[str]:
    """What the build prints about the file: its `validate` task's lines (every kind but
    orders) and the lines of ORDER's mint that name the file (its report prints them)."""
    shown = display(layout, path)
    lines = set()
    if kind != "order":
        lines |= {str(p) for p in validate_paths(layout, [path], schema_check=False)}
    artefact = mint_order(layout, ORDER, force_dry_run=True)
    lines |= {str(Problem(p.path, p.field, p.reason)) for p in artefact.problems if p.path == shown}
    return lines


def _check(layout: Layout, kind: str, doc: dict[str, Any]) -> None:
    path = _place(layout, kind, doc)
    try:
        said = validate_lines(layout, path)
        refused = build_lines(layout, path, kind)
    finally:
        _place(layout, kind, BASE[kind])
    assert said == refused, f"{kind}: {json.dumps(doc)[:600]}"


PROPERTY = settings(
    max_examples=400 if SOAK else 60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("kind", sorted(FILES))
def test_validate_refuses_what_the_build_refuses(built: Layout, kind: str) -> None:
    if kind == "review":
        _place(built, "review", BASE["review"])

    @PROPERTY
    @given(doc=documents(kind))
    def holds(doc: dict[str, Any]) -> None:
        _check(built, kind, doc)

    try:
        holds()
    finally:
        path = built.review_file(ORDER)
        if kind == "review" and path.exists():
            path.unlink()


# --------------------------------------------------------------------------- the issue's cases

ISSUE_CASES: list[tuple[str, str, Any, str]] = [
    ("recipe", "schema_version", True, "schema_version: Input should be 1 (got True)"),
    ("recipe", "forbidden", [{}], "forbidden.0: is empty: it would forbid every Alfa"),
    (
        "recipe",
        "forbidden",
        [{"chassis": "tin"}],
        "baselines.0: matches forbidden combination 0",
    ),
    (
        "recipe",
        "scoring.weights",
        {"fur": {"mink": 5}},
        "scoring.weights.fur: is not a parameter of this recipe",
    ),
    (
        "recipe",
        "scoring.weights",
        {"chassis": {"mink": 5}},
        "scoring.weights.chassis.mink: is not one of 'tin', 'oak', 'resin', 'brass'",
    ),
    (
        "recipe",
        "scoring.weights",
        {"gear_teeth": {"3.0": 5}},
        "scoring.weights.gear_teeth.3.0: is not an integer from 8 to 40",
    ),
    (
        "recipe",
        "scoring.weights",
        {"chassis": {"tin": 1e308}},
        "scoring.weights.chassis.tin: Input should be less than or equal to 1000000",
    ),
    ("recipe", "scoring.base", 1e308, "scoring.base: Input should be less than or equal to"),
    ("recipe", "pass_score", -1e300, "pass_score: Input should be greater than or equal to"),
    (
        "checkpoint",
        "approved_at",
        "2025-02-30T25:61:61Z",
        "approved_at: '2025-02-30T25:61:61Z' is not a real calendar date and time",
    ),
    (
        "review",
        "decisions.0.at",
        "2025-02-29T10:00:00Z",
        "decisions.0.at: '2025-02-29T10:00:00Z' is not a real calendar date and time",
    ),
]


@pytest.mark.parametrize(("kind", "field", "value", "line"), ISSUE_CASES)
def test_the_issues_cases_are_refused_by_both(
    built: Layout, kind: str, field: str, value: Any, line: str
) -> None:
    doc = copy.deepcopy(BASE[kind])
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in field.split(".")]
    _set(doc, parts, value)
    path = _place(built, kind, doc)
    try:
        said = validate_lines(built, path)
        refused = build_lines(built, path, kind)
    finally:
        _place(built, kind, BASE[kind])
        if kind == "review":
            built.review_file(ORDER).unlink()
    shown = display(built, path)
    assert any(x.startswith(f"{shown}: {line}") for x in said), said
    assert said == refused
