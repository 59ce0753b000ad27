"""A plain `doit` hands doit only what may be stale (`graph/stale.py`): the same tasks run as
when doit checks every task itself, and the output still names every task."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import doit, executed, make_project
from tests.test_graph import artefact_bytes
from toyfoundry.graph import backend
from toyfoundry.store.layout import Layout

ORDER = "2025-10-20-011"


def _built_pair(tmp_path: Path) -> tuple[Layout, Layout]:
    """Two built copies of the sample project: one pruned, one where doit checks every task
    (`--reporter console` turns the pruning off)."""
    pruned = make_project(tmp_path / "pruned")
    assert doit(pruned.root).code == 0
    full = Layout(tmp_path / "full")
    shutil.copytree(pruned.root, full.root, symlinks=True)
    assert doit(full.root, "--reporter", "console").code in (0, 1)
    assert executed(doit(full.root, "--reporter", "console").out) == []
    return pruned, full


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))


def _edit_notes(layout: Layout) -> None:
    path = layout.orders_dir / f"{ORDER}.json"
    path.write_text(path.read_text().replace('"notes": "', '"notes": "Edited. '))


def _new_order(layout: Layout) -> None:
    source = layout.orders_dir / f"{ORDER}.json"
    text = source.read_text().replace(ORDER, "2025-10-31-001")
    (layout.orders_dir / "2025-10-31-001.json").write_text(text)


def _forget_record(layout: Layout) -> None:
    with sqlite3.connect(layout.state / "doit.sqlite") as conn:
        conn.execute("delete from doit where task_id = ?", (f"rituals:{ORDER}",))


EDITS: dict[str, Callable[[Layout], None]] = {
    "nothing": lambda layout: None,
    "notes edited": _edit_notes,
    "input touched, same bytes": lambda layout: _touch_later(layout.orders_dir / f"{ORDER}.json"),
    "artefact touched, same bytes": lambda layout: _touch_later(layout.mint_artefact(ORDER)),
    "report deleted": lambda layout: layout.report_md(ORDER).unlink(),
    "mint.json deleted": lambda layout: layout.mint_artefact(ORDER).unlink(),
    "order withdrawn": lambda layout: (layout.orders_dir / f"{ORDER}.json").unlink(),
    "new order": _new_order,
    "record forgotten": _forget_record,
}


@pytest.mark.slow
@pytest.mark.parametrize("edit", list(EDITS))
def test_a_pruned_build_runs_what_doit_checking_every_task_runs(tmp_path: Path, edit: str) -> None:
    pruned, full = _built_pair(tmp_path)
    for layout in (pruned, full):
        EDITS[edit](layout)
    ours = doit(pruned.root)
    reference = doit(full.root, "--reporter", "console")
    assert ours.code == reference.code, ours.out + ours.err
    assert executed(ours.out) == executed(reference.out)
    met = sorted(line[3:] for line in ours.out.splitlines() if line.startswith(("-- ", ".  ")))
    met_reference = sorted(
        line[3:] for line in reference.out.splitlines() if line.startswith(("-- ", ".  "))
    )
    assert met == met_reference  # every task named once, as doit names it
    assert artefact_bytes(pruned) == artefact_bytes(full)
    assert executed(doit(pruned.root).out) == executed(doit(full.root).out)


def test_a_no_op_hands_doit_nothing_and_counts_every_task(project: Layout) -> None:
    assert doit(project.root).code == 0
    result = doit(project.root)
    lines = result.out.splitlines()
    assert not [line for line in lines if line.startswith(".  ")]
    uptodate = [line for line in lines if line.startswith("-- ")]
    assert len(uptodate) == 16
    assert lines[-1].startswith("toyfoundry: 0 task(s) run, 16 up to date of 16 in ")
    with sqlite3.connect(project.state / "doit.sqlite") as conn:
        stamped = {row[0] for row in conn.execute("select task_id from stamps")}
    assert {line[3:] for line in uptodate} == stamped


def _stamps(layout: Layout) -> dict[str, str]:
    conn = sqlite3.connect(layout.state / "doit.sqlite")
    try:  # closed here, not when collected: the last close removes the WAL files
        return dict(conn.execute("select task_id, stamp from stamps"))
    finally:
        conn.close()


def test_a_fresh_copy_is_stamped_by_its_first_run_and_an_edit_still_rebuilds(
    tmp_path: Path,
) -> None:
    """A CI checkout with `.toyfoundry/` restored: every mtime new, the same bytes. Its first
    run finds every task equal by hash and stamps it at the new mtimes, so the run after
    it settles every task by its stamp; an input edited in a copy still rebuilds."""
    built = make_project(tmp_path / "built")
    assert doit(built.root).code == 0
    assert executed(doit(built.root).out) == []
    for name, edit in (("copy", None), ("edited", _edit_notes)):
        copy = Layout(tmp_path / name)
        shutil.copytree(built.root, copy.root, copy_function=shutil.copyfile)
        before = _stamps(copy)
        if edit is not None:
            edit(copy)
        first = doit(copy.root)
        assert first.code == 0, first.out + first.err
        ran = executed(first.out)
        if edit is None:
            assert ran == []
            after = _stamps(copy)
            assert set(after) == set(before)
            assert all(after[task] != before[task] for task in after)  # every mtime moved
        else:
            assert any(ORDER in task for task in ran), first.out
            assert not any("2025-10-20-012" in task for task in ran)
        assert executed(doit(copy.root).out) == []
        reference = Layout(tmp_path / f"{name}-reference")
        shutil.copytree(copy.root, reference.root, symlinks=True)
        assert executed(doit(reference.root, "--reporter", "console").out) == []


def test_a_record_written_by_anything_else_loses_its_stamp(tmp_path: Path) -> None:
    """The triggers: a stamp never outlives the record it was made from."""
    db = backend.FoundryDB(str(tmp_path / ".toyfoundry" / "doit.sqlite"), None)
    try:
        db.set("t", "checker:", "FoundryChecker")
        db.set("t", "a.json", (1.5, 3, "ab" * 32))
        db.set("t", "deps:", ("a.json",))
        db.commit()  # records wait for a few more, or a moment (see `backend`)
        assert db.stamps() == {"t": backend.stamp_of(["a.json"], [1.5])}
        conn = db._conn
        conn.execute("update doit set task_data = task_data where task_id = 't'")
        assert db.stamps() == {}
        db.set("t", "deps:", ("a.json",))
        db.commit()
        conn.execute("insert or replace into doit values ('t', '{}')")
        assert db.stamps() == {}
        db.set("t", "deps:", ("a.json",))
        db.commit()
        conn.execute("delete from doit")
        assert db.stamps() == {}
        # an ignored task, or a dep refused last time, needs the record's full check
        db.set("u", "checker:", "FoundryChecker")
        db.set("u", "b.json", (1.5, 3, "refused: not a regular file"))
        db.set("u", "deps:", ("b.json",))
        db.set("v", "checker:", "FoundryChecker")
        db.set("v", "b.json", (1.5, 3, "ab" * 32))
        db.set("v", "ignore:", "1")
        db.set("v", "deps:", ("b.json",))
        db.commit()
        assert db.stamps() == {}
    finally:
        db.dump()
