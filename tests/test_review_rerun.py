"""A review decision re-runs its own order only: the chain an order hands on to the next
order of its recipe does not depend on the decisions, so later orders stay up to date."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import workload
from tests.conftest import REPO, doit, executed
from tests.support import cli
from tests.test_incremental_equals_clean import deliverables, diff, inputs, write_inputs
from toyfoundry.store.layout import Layout

ORDERS = 24


def _pending(layout: Layout, order_id: str) -> list[str]:
    """The order's quarantined Alfas, as its mint.json holds them."""
    mint = json.loads(layout.mint_artefact(order_id).read_bytes())
    return [a["alfa_id"] for a in mint["alfas"] if a["outcome"] == "quarantined"]


def _recipe(layout: Layout, order_id: str) -> str:
    recipe: str = json.loads(layout.order_file(order_id).read_bytes())["recipe"]
    return recipe


def test_a_further_reroll_re_runs_only_its_own_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "factory"
    order_ids = workload.write(root, ORDERS, forbidden=workload.REVIEW_FORBIDDEN)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy2(REPO / "dodo.py", root / "dodo.py")
    layout = Layout(root)
    first = doit(root)
    assert first.code in (0, 1), first.out + first.err

    # one reroll decision in every order that holds a quarantined Alfa
    for order_id in order_ids:
        pending = _pending(layout, order_id)
        if pending:
            code, out, err = cli(
                capsys, layout, "review", "decide", order_id, pending[0], "reroll", "--by", "QA"
            )
            assert code == 0, out + err
    second = doit(root)
    assert second.code in (0, 1), second.out + second.err

    # a further reroll in an early order whose recipe has later orders
    target = next(
        o
        for i, o in enumerate(order_ids)
        if _pending(layout, o)
        and any(_recipe(layout, p) == _recipe(layout, o) for p in order_ids[i + 1 :])
    )
    later = [
        o
        for o in order_ids[order_ids.index(target) + 1 :]
        if _recipe(layout, o) == _recipe(layout, target)
    ]
    assert later, "the order has later orders of its recipe"
    chains = {o: layout.chain_file(o).read_bytes() for o in [target, *later]}
    code, out, err = cli(
        capsys,
        layout,
        "review",
        "decide",
        target,
        _pending(layout, target)[0],
        "reroll",
        "--by",
        "QA",
    )
    assert code == 0, out + err
    third = doit(root)
    assert third.code in (0, 1), third.out + third.err
    ran = executed(third.out)

    per_order = sorted(t for t in ran if t.rsplit(":", 1)[-1] in order_ids)
    assert per_order == [f"mint:{target}", f"report:{target}", f"rituals:{target}"], ran
    assert {o: layout.chain_file(o).read_bytes() for o in chains} == chains
    print(
        f"\na further reroll in {target} ({len(later)} later orders of its recipe):"
        f" {len(ran)} tasks run ({len(per_order)} of the order, {len(ran) - len(per_order)}"
        f" global) of {3 * len(order_ids) + 4}: {ran}"
    )

    assert executed(doit(root).out) == [], "the decision is applied once"
    clean = tmp_path / "clean"
    write_inputs(clean, inputs(root))
    result = doit(clean)
    assert result.code in (0, 1), result.out + result.err
    assert diff(deliverables(root), deliverables(clean)) == []
