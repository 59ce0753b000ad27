"""Chains: a hand-off that does not grow with the recipe's history, and exact novelty along it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, doit
from tests.support import build, load, write_json
from toyfoundry import caches
from toyfoundry.errors import FoundryError
from toyfoundry.forge import carried, mint
from toyfoundry.forge.mint import mint_order
from toyfoundry.forge.space import Space
from toyfoundry.formats.models import Recipe
from toyfoundry.store.layout import Layout

#: 3,000 permutations: a few hundred orders use most of them, so the cursor keeps
#: reaching positions that earlier orders minted as carryover.
SMALL: dict[str, Any] = {
    "schema_version": 1,
    "recipe_id": "pocket-pony",
    "version": "1.0.0",
    "title": "Pocket Pony: a small space",
    "parameters": {
        "mane": {"kind": "int", "min": 1, "max": 10},
        "tail": {"kind": "int", "min": 1, "max": 10},
        "coat": {"kind": "enum", "values": ["bay", "grey", "dun", "roan", "pinto"]},
        "hooves": {"kind": "int", "min": 1, "max": 6},
    },
    "baselines": [
        {"mane": 3, "tail": 3, "coat": "bay", "hooves": 2},
        {"mane": 7, "tail": 5, "coat": "grey", "hooves": 4},
    ],
    "forbidden": [],
    "scoring": {
        "base": 50.0,
        "weights": {"coat": {"bay": 1.0, "grey": 2.0, "dun": 0.0, "roan": -1.0, "pinto": 3.0}},
        "noise": 6.0,
        "defects": [],
    },
    "pass_score": 50.0,
    "promote_score": 52.0,
    "mutation": {"rate": 0.5, "max_changes": 2},
    "promotion": {"max_per_order": 3, "pool_limit": 8},
}
ORDERS = 320


def _project(root: Path, orders: int) -> tuple[Layout, list[str]]:
    layout = Layout(root)
    write_json(root / "exchange" / "recipes" / "pocket-pony.json", SMALL)
    write_json(
        root / "exchange" / "checkpoints" / "operational.json",
        {
            "schema_version": 1,
            "phase": "operational",
            "approved_by": "tests",
            "approved_at": "2025-11-01T00:00:00Z",
            "note": "tests",
        },
    )
    ids = [f"2025-11-03-{n:03d}" for n in range(1, orders + 1)]
    for number, order_id in enumerate(ids, start=1):
        write_json(
            layout.order_file(order_id),
            {
                "schema_version": 1,
                "order_id": order_id,
                "phase": "operational",
                "recipe": "pocket-pony",
                "batch_size": 10,
                "seed": 7919 * number,
                "dry_run": False,
                "issued_by": "tests",
            },
        )
    return layout, ids


@pytest.fixture(scope="module")
def long_chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Layout, list[str]]:
    """One recipe, 320 orders of 10 Alfas, minted and put through their rituals in order."""
    layout, ids = _project(tmp_path_factory.mktemp("chain"), ORDERS)
    build(layout, *ids)
    return layout, ids


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def test_chain_file_size_does_not_grow_with_the_position(
    long_chain: tuple[Layout, list[str]],
) -> None:
    layout, ids = long_chain
    sizes = [layout.chain_file(order_id).stat().st_size for order_id in ids]
    chains = [json.loads(layout.chain_file(order_id).read_bytes()) for order_id in ids]
    assert len(chains[-1]["pool"]) == SMALL["promotion"]["pool_limit"]
    # a full pool, a parent link and a bounded number of positions per carryover slot (its
    # own, and the mutations kept for its rerolls): the same bound at order 40 as at 320
    per_slot = 1 + mint._KEPT_LEVELS * mint._KEPT_TRIES
    bound = 2 * per_slot
    early, late = max(sizes[30:60]), max(sizes[60:])
    assert late <= early + bound * 8, (early, late)
    assert all(len(c["carried"]) <= bound for c in chains)


def test_novel_draws_are_exactly_the_first_unseen_positions_along_a_long_chain(
    long_chain: tuple[Layout, list[str]],
) -> None:
    """Never minted by an earlier order of the recipe, and no unseen position passed over."""
    layout, ids = long_chain
    assert _check_exact(layout, ids, SMALL) >= 50  # the test exercises what it claims to


def _check_exact(layout: Layout, ids: list[str], recipe: dict[str, Any]) -> int:
    """Check each order's novel draws against the history; how many draws passed over an
    earlier order's carryover."""
    space = Space(Recipe.model_validate(recipe))
    baseline = {space.index(b) for b in recipe["baselines"]}
    minted: set[str] = set()
    minted_positions: set[int] = set()
    cursor = 0
    caught_up = 0
    for order_id in ids:
        alfas = load(layout, order_id).alfas
        novel = [a for a in alfas if a.share == "novel"]
        novel_keys = {_key(a.params) for a in novel}
        assert len(novel_keys) == len(novel), order_id
        assert not novel_keys & minted, order_id
        expected = []
        position = cursor
        while len(expected) < len(novel):
            if position not in minted_positions and space.at(position) not in baseline:
                expected.append(position)
            elif position in minted_positions:
                caught_up += 1
            position += 1
        assert [space.position(a.params) for a in novel] == expected, order_id
        cursor = expected[-1] + 1
        assert json.loads(layout.chain_file(order_id).read_bytes())["cursor"] == cursor
        for alfa in alfas:
            minted.add(_key(alfa.params))
            found = space.position(alfa.params)
            assert found is not None
            minted_positions.add(found)
    return caught_up


def test_a_fresh_process_gathers_the_same_positions_from_the_files(
    long_chain: tuple[Layout, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold mint walks the chain files back instead of extending what it gathered."""
    layout, ids = long_chain
    last = ids[-1]
    before = layout.mint_artefact(last).read_bytes()
    caches.fresh(())
    mint_order(layout, last)
    assert layout.mint_artefact(last).read_bytes() == before


def test_a_changed_earlier_chain_is_a_one_line_failure_not_a_wrong_batch(tmp_path: Path) -> None:
    layout, ids = _project(tmp_path, 6)
    build(layout, *ids)
    path = layout.chain_file(ids[2])
    doc = json.loads(path.read_bytes())
    doc["carried"] = [*doc["carried"], 2999]
    path.write_text(json.dumps(doc), encoding="utf-8")
    caches.current().table("frontiers").clear()
    with pytest.raises(FoundryError, match="has changed since the next order"):
        mint_order(layout, ids[-1])


def test_a_cold_walk_passes_through_dry_runs_and_stops_at_a_new_space(tmp_path: Path) -> None:
    """Pass-ons are aliases of the chain they copy; a changed parameter space starts afresh."""
    layout, ids = _project(tmp_path, 8)
    dry = layout.order_file(ids[2])
    doc = json.loads(dry.read_text())
    write_json(dry, {**doc, "dry_run": True})
    build(layout, *ids[:5])
    assert layout.chain_file(ids[2]).read_bytes() == layout.chain_file(ids[1]).read_bytes()
    _remint_cold_equals_warm(layout, ids[4])
    recipe = json.loads((tmp_path / "exchange" / "recipes" / "pocket-pony.json").read_text())
    recipe["parameters"]["hooves"]["max"] = 7
    write_json(tmp_path / "exchange" / "recipes" / "pocket-pony.json", recipe)
    build(layout, *ids[5:])
    chains = [json.loads(layout.chain_file(i).read_bytes()) for i in ids]
    assert chains[5]["space"] != chains[4]["space"]
    assert chains[5]["cursor"] < chains[4]["cursor"]  # the novel sequence started again
    assert chains[5]["parent"] is None and chains[6]["parent"]["order"] == ids[5]
    assert chains[3]["parent"]["order"] == ids[2]  # the dry run's copy of ids[1]'s chain
    _check_exact(layout, ids[5:], recipe)  # nothing of the old space is skipped
    _remint_cold_equals_warm(layout, ids[-1])


def _remint_cold_equals_warm(layout: Layout, order_id: str) -> None:
    warm = load(layout, order_id).alfas
    caches.current().table("frontiers").clear()
    mint_order(layout, order_id)
    assert load(layout, order_id).alfas == warm


@pytest.mark.slow
def test_workers_that_each_get_some_of_a_chain_mint_what_one_process_mints(
    tmp_path: Path,
) -> None:
    """Forked workers walk back over chain files other workers wrote: same bytes as serial."""
    built = {}
    for jobs in ("0", "3"):
        root = tmp_path / f"n{jobs}"
        _, ids = _project(root, 40)
        shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
        shutil.copy2(REPO / "dodo.py", root / "dodo.py")
        done = doit(root, "-n", jobs, "report")
        assert done.code == 0, done.out + done.err
        layout = Layout(root)
        built[jobs] = [
            (layout.mint_artefact(i).read_bytes(), layout.chain_file(i).read_bytes()) for i in ids
        ]
    assert built["0"] == built["3"]


def test_a_chain_file_is_its_models_canonical_dump(long_chain: tuple[Layout, list[str]]) -> None:
    """`chain.encode` (orjson from the models' fields) writes what `dumps_canonical` does."""
    from toyfoundry.forge import chain as chains
    from toyfoundry.formats.models import Chain
    from toyfoundry.store.atomic import dumps_canonical

    layout, ids = long_chain
    for order_id in [*ids[:3], *ids[::29]]:
        data = layout.chain_file(order_id).read_bytes()
        model = Chain.model_validate_json(data)
        assert chains.encode(model) == dumps_canonical(model) == data


def test_the_pool_ranks_by_score_then_id_whatever_its_entries_are() -> None:
    """Best first, ties by id (-0.0 ties 0.0), a promotion replacing an entry of its id,
    at most the recipe's pool_limit; promotions ranked before their entries are made."""
    from typing import NamedTuple

    from toyfoundry.forge.chain import merge_pool
    from toyfoundry.formats.models import PoolEntry

    class Promotion(NamedTuple):
        alfa_id: str
        score: float

    recipe = Recipe.model_validate(SMALL)  # pool_limit 8
    pool = [
        PoolEntry(
            alfa_id=f"2025-11-03-001.a{i:03d}",
            order_id="2025-11-03-001",
            params={"mane": i},
            score=score,
        )
        for i, score in enumerate([3.0, 1.0, 2.0, 2.0, -0.0, 0.0, 5.5, 1.0])
    ]
    promoted = [
        Promotion(f"2025-11-03-001.a{i:03d}", score)
        for i, score in [(9, 2.0), (1, 4.0), (10, 0.0), (11, -1.0)]
    ]
    by_id: dict[str, Any] = {e.alfa_id: e for e in pool}
    by_id.update((e.alfa_id, e) for e in promoted)
    want = sorted(by_id.values(), key=lambda e: (-e.score, e.alfa_id))[:8]
    got = merge_pool(pool, promoted, recipe)
    assert got == want
    assert [e.alfa_id[-4:] for e in got] == [
        "a006",
        "a001",
        "a000",
        "a002",
        "a003",
        "a009",
        "a007",
        "a004",
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "drop"]),
            st.lists(st.integers(min_value=0, max_value=400), max_size=40),
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=16),
)
def test_carried_positions_read_as_the_set_they_replace(
    steps: list[tuple[str, list[int]]], merge_at: int
) -> None:
    """`carried.Positions`, the sorted array a worker keeps per recipe, answers membership,
    size, order from a cursor and counts below it as a plain set of the same positions,
    whichever positions wait unmerged."""
    held = carried.Positions()
    held.MERGE_AT = merge_at
    plain: set[int] = set()
    for action, values in steps:
        if action == "add":
            held.add_all(values)
            plain.update(values)
        elif values:
            held.drop_below(values[0])
            plain = {p for p in plain if p >= values[0]}
        assert len(held) == len(plain)
        assert all((p in held) == (p in plain) for p in range(-1, 402))
        assert "1" not in held
        for cursor in (0, 7, 200, 401):
            assert list(held.upcoming(cursor)) == sorted(p for p in plain if p >= cursor)
            assert held.count_below(cursor) == sum(1 for p in plain if p < cursor)
    assert sorted(held) == sorted(plain)
