"""doit as its users expect: `doit dumpdb` on the foundry's DB, one summary line off a terminal."""

from __future__ import annotations

import re

from tests.conftest import doit
from toyfoundry.store.layout import Layout

ORDERS = re.compile(
    r"; orders: (\d+) built, (\d+) dry run, (\d+) awaiting review, (\d+) blocked, (\d+) rejected$"
)


def test_dumpdb_prints_the_foundrys_db(project: Layout) -> None:
    assert doit(project.root).code == 0
    result = doit(project.root, "dumpdb")
    assert result.code == 0, result.err
    assert "Traceback" not in result.out + result.err
    lines = result.out.splitlines()
    assert lines[0] == "DB type is 'toyfoundry' (SQLite holding JSON text)"
    assert any(line.startswith("mint:2025-10-20-011 -> {") for line in lines)
    assert any(line.startswith("dashboard -> {") for line in lines)


def test_a_build_off_a_terminal_ends_with_one_summary_line_counting_orders(
    project: Layout,
) -> None:
    result = doit(project.root)
    last = result.out.splitlines()[-1]
    assert last.startswith("toyfoundry: 16 task(s) run, 0 up to date of 16 in ")
    found = ORDERS.search(last)
    assert found, last
    assert sum(map(int, found.groups())) == len(list(project.orders_dir.glob("*.json")))
    # a rejected order: one failed task per stage that failed, never doit's `report` group
    bad = project.orders_dir / "2025-10-30-001.json"
    bad.write_text('{"schema_version": 1, "order_id": "2025-10-30-001", "phase": "operational"}')
    result = doit(project.root)
    assert result.code == 1
    last = result.out.splitlines()[-1]
    assert ", 1 failed: report:2025-10-30-001;" in last, last
    assert " report " not in last and not last.endswith(" report")
    assert "1 rejected" in last
    again = doit(project.root).out.splitlines()[-1]
    assert again.startswith("toyfoundry: 1 task(s) run")  # only the failing task again


def test_the_summary_counts_the_tasks_a_selection_reaches(project: Layout) -> None:
    """`doit mint:X` meets a few of the graph's tasks: the summary counts those, not all."""
    assert doit(project.root).code == 0
    result = doit(project.root, "mint:2025-10-27-014")
    assert result.code == 0, result.err
    met = [line for line in result.out.splitlines() if line.startswith(("-- ", ".  "))]
    last = result.out.splitlines()[-1]
    assert last.startswith(f"toyfoundry: 0 task(s) run, {len(met)} up to date of {len(met)} in ")
    assert 1 < len(met) < 16
