"""The graph's plan: the cached record answers exactly what a fresh read of the exchange would,
and a change re-reads only the files whose bytes changed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_project
from toyfoundry import caches
from toyfoundry.exchange import loader
from toyfoundry.graph import backend, plan
from toyfoundry.store.layout import Layout


@contextmanager
def db(layout: Layout) -> Iterator[backend.FoundryDB]:
    opened = backend.FoundryDB(str(layout.dep_db), None)
    try:
        yield opened
    finally:
        opened.dump()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """File names the exchange loader parses."""
    seen: list[str] = []
    original = loader.Exchange._load

    def counting(self: loader.Exchange, kind: str, path: Path) -> object:
        seen.append(path.name)
        return original(self, kind, path)

    monkeypatch.setattr(loader.Exchange, "_load", counting)
    return seen


def cached(layout: Layout) -> plan.Plan:
    with db(layout):
        return plan.load(layout)


def same(a: plan.Plan, b: plan.Plan) -> None:
    assert a.orders == b.orders
    assert a.regular_inputs == b.regular_inputs
    assert a.odd_inputs == b.odd_inputs


def test_cached_plan_equals_a_fresh_read_through_changes(tmp_path: Path, reads: list[str]) -> None:
    layout = make_project(tmp_path / "p")
    same(cached(layout), plan.scan(layout))
    orders = layout.exchange / "orders"

    # a new order of an existing recipe: that order file parsed (and the recipe its rules
    # check), every other order remembered
    doc = json.loads((orders / "2025-10-28-002.json").read_text())
    doc.update(order_id="2025-10-29-001", seed=99)
    (orders / "2025-10-29-001.json").write_text(json.dumps(doc))
    reads.clear()
    after = cached(layout)
    assert sorted(reads) == ["2025-10-29-001.json", "bolt-bunny.json"], reads
    same(after, plan.scan(layout))
    new = after.by_id["2025-10-29-001"]
    assert new.previous == "2025-10-28-002" and new.recipe == "bolt-bunny"

    # a review appears: it becomes a dep of its order only
    review = layout.exchange / "reviews" / "2025-10-29-001.json"
    review.write_text("{}")
    same(cached(layout), plan.scan(layout))
    assert str(review.relative_to(layout.root)) in cached(layout).by_id["2025-10-29-001"].deps

    # a recipe turned experimental: its orders read their sprint's orders and the settings
    recipe = layout.exchange / "recipes" / "bolt-bunny.json"
    data = json.loads(recipe.read_text())
    data["experimental"] = True
    recipe.write_text(json.dumps(data))
    reads.clear()
    after = cached(layout)
    same(after, plan.scan(layout))
    assert "pyproject.toml" in after.by_id["2025-10-29-001"].deps

    # an order replaced by a link and a broken order: neither parses, both are tracked
    os.unlink(orders / "2025-10-29-001.json")
    os.symlink(orders / "2025-10-28-002.json", orders / "2025-10-29-001.json")
    (orders / "2025-10-30-001.json").write_text("{not json")
    after = cached(layout)
    same(after, plan.scan(layout))
    assert after.by_id["2025-10-29-001"].odd == ("exchange/orders/2025-10-29-001.json:symlink",)
    assert after.by_id["2025-10-30-001"].recipe is None


def test_unchanged_exchange_parses_nothing(tmp_path: Path, reads: list[str]) -> None:
    layout = make_project(tmp_path / "p")
    first = cached(layout)
    reads.clear()
    same(cached(layout), first)
    assert reads == []


def test_copy_with_new_mtimes_reuses_the_plan_by_content(tmp_path: Path, reads: list[str]) -> None:
    layout = make_project(tmp_path / "p")
    first = cached(layout)
    copy = Layout(tmp_path / "copy")
    shutil.copytree(layout.root, copy.root)  # new inodes; touch every input too
    for path in (copy.root / "exchange").rglob("*.json"):
        os.utime(path, ns=(1, 1))
    reads.clear()
    again = cached(copy)
    assert reads == []
    same(again, first)


def test_settings_change_forgets_the_facts(tmp_path: Path, reads: list[str]) -> None:
    """The size and depth limits decide which files parse, so new settings re-read everything."""
    layout = make_project(tmp_path / "p")
    cached(layout)
    settings = layout.settings_file
    settings.write_text(settings.read_text() + "\n# edited\n")
    reads.clear()
    same(cached(layout), plan.scan(layout))
    assert sum(r.endswith(".json") for r in reads) >= 4


def test_a_record_read_back_in_the_same_process_is_not_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm watcher reads back the record it wrote; another writer's record is parsed."""
    caches.fresh(keep=("plan_record",))  # as the graph watcher's set does
    layout = make_project(tmp_path / "p")
    first = cached(layout)
    parsed: list[int] = []
    original = plan._loads

    def counting(text: str | bytes) -> object:
        parsed.append(len(text))
        return original(text)

    monkeypatch.setattr(plan, "_loads", counting)
    same(cached(layout), first)
    assert parsed == []
    # a record another process wrote (other text) is parsed, and it is still right
    with db(layout) as opened:
        text = opened.get_meta("plan")
        assert text is not None
        opened.put_meta("plan", text.replace('"version":', '"version" :', 1))
    same(cached(layout), first)
    assert len(parsed) == 1


def test_a_few_task_records_are_read_one_query_each(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "p")
    with db(layout) as opened:
        for i in range(200):
            opened.set(f"t{i}", "deps:", [])
    with db(layout) as opened:
        assert opened.in_("t7") and opened.in_("t8") and not opened.in_("nope")
        assert opened._raw is None  # a watcher's rebuild asks about a few tasks
        assert all(opened.in_(f"t{i}") for i in range(200))  # then all are read at once
        assert opened._raw is not None


def test_facts_read_from_other_bytes_than_hashed_are_not_remembered(tmp_path: Path) -> None:
    """Found by CI: an order that was a FIFO when its facts were read but whole when it was
    hashed was remembered as "no recipe" under the whole file's hash, so every later build
    planned it in no chain ("belongs to no chain") until the file changed."""
    layout = make_project(tmp_path / "p")
    entries = plan.scan_inputs(layout)
    contents = [plan.content_of(layout, e) for e in entries]
    order = layout.order_file("2025-10-20-011")
    good = order.read_bytes()
    order.unlink()
    os.mkfifo(order)  # the read of its facts finds a FIFO
    try:
        drawn, facts, mixed = plan.draw(layout, entries, contents)
    finally:
        order.unlink()
        order.write_bytes(good)
    rel = "exchange/orders/2025-10-20-011.json"
    assert mixed and rel not in facts
    assert drawn.by_id["2025-10-20-011"].recipe is None  # right for that build at most
    again, facts, mixed = plan.draw(layout, entries, contents)
    assert not mixed and facts[rel][1] is not None
    assert again.by_id["2025-10-20-011"].recipe is not None


def test_a_build_keeps_no_plan_record_in_memory(tmp_path: Path) -> None:
    """Only a set of caches that carries the record to its next build (a watcher's) keeps it:
    a `doit` loads the plan once, and would hold the text and the parsed record to its end."""
    caches.fresh()
    layout = make_project(tmp_path / "p")
    first = cached(layout)
    assert caches.current().table("plan_record") == {}
    same(cached(layout), first)


def test_an_orders_own_paths_are_the_layouts_and_not_in_the_record(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "p")
    drawn = cached(layout)
    for node in drawn.orders:
        mint, rituals, chain, outputs = plan._outputs(layout, node.order_id)
        assert (node.mint, node.rituals, node.chain) == (mint, rituals, chain)
        assert drawn.paths.outputs(node.order_id) == list(outputs)
    with db(layout) as opened:
        text = opened.get_meta("plan")
    assert text is not None and "mint.json" not in text and "reports" not in text


def test_a_reports_targets_are_made_from_its_id_once_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tasks.slim_targets` gives each report task its outputs as `plan.Outputs`: the same
    paths, in the same order, read as doit reads a target list; any other task keeps its own."""
    from doit.task import Task

    from toyfoundry.graph import tasks

    caches.fresh()
    layout = make_project(tmp_path / "p")
    monkeypatch.chdir(layout.root)
    drawn = tasks.current_plan()
    order_id = drawn.orders[0].order_id
    listed = drawn.paths.outputs(order_id)
    report = Task(
        f"report:{order_id}", [(tasks.report_action, [str(layout.root), order_id])], targets=listed
    )
    other = Task(f"mint:{order_id}", [(tasks.mint_action, [])], targets=listed)
    tasks.slim_targets([report, other])
    assert isinstance(report.targets, plan.Outputs) and type(other.targets) is list
    assert report.targets == listed and list(report.targets) == listed
    assert len(report.targets) == len(listed) and report.targets[-1] == listed[-1]
    assert sorted(report.targets) == sorted(listed) and " ".join(report.targets) == " ".join(listed)


def test_a_record_of_another_version_is_not_trusted(tmp_path: Path, reads: list[str]) -> None:
    """A record whose rows have another shape (an older release's kept each order's output
    paths) is drawn again, never decoded as this version's."""
    layout = make_project(tmp_path / "p")
    first = cached(layout)
    with db(layout) as opened:
        record = json.loads(opened.get_meta("plan") or "")
        record["version"] = plan.RECORD_VERSION - 1
        record["plan"][0] = [[*row, "x", "y", "z", ["w"]] for row in record["plan"][0]]
        opened.put_meta("plan", json.dumps(record))
    reads.clear()
    same(cached(layout), first)
    assert reads  # read again from the exchange, not from the old record


def test_a_recorded_task_leaves_memory_and_reads_back_the_same(tmp_path: Path) -> None:
    """A full build does not keep every task's record in memory: once committed it is read
    back from the file if doit ever asks again."""
    layout = make_project(tmp_path / "p")
    with db(layout) as opened:
        opened._records()  # every record read up front, as a no-op's check does
        opened.set("t", "checker:", "FoundryChecker")
        opened.set("t", "deps:", ["a"])
        assert "t" not in opened._cache
        assert opened.get("t", "checker:") == "FoundryChecker" and opened.recorded("t")
        opened.starting("t")  # a task chosen to run again loses its record in the file
        assert opened.in_("t")  # the copy in memory still spares re-checking its deps
    with db(layout) as opened:
        assert not opened.recorded("t")


# --------------------------------------------------------------------------- drawn again in part


ORDER_IDS = [f"2025-11-{day:02d}-00{n}" for day in (3, 4, 5) for n in (1, 2)]
RECIPES = ["sprocket-scout", "bolt-bunny", "marble-mech", "no-such-recipe"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["write", "delete", "garble", "review", "recipe"]),
            st.sampled_from(ORDER_IDS),
            st.sampled_from(RECIPES),
            st.sampled_from(["pilot", "expansion"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_plan_drawn_again_in_part_equals_a_fresh_read(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str, str]]
) -> None:
    """After any sequence of order edits (and now and then another input), the plan a warm
    process draws from the last one (orders whose files did not change keep their nodes)
    is the plan a fresh read of the exchange gives."""
    caches.fresh(keep=("plan_record",))
    layout = make_project(tmp_path_factory.mktemp("p") / "p")
    with db(layout):
        plan.load(layout)
    for what, order_id, recipe, phase in steps:
        path = layout.order_file(order_id)
        if what == "write":
            doc = {"schema_version": 1, "order_id": order_id, "phase": phase, "recipe": recipe}
            doc.update(batch_size=12, seed=7, dry_run=False, issued_by="t", notes="n")
            path.write_text(json.dumps(doc))
        elif what == "delete":
            path.unlink(missing_ok=True)
        elif what == "garble":
            path.write_text("{")
        elif what == "review":
            review = {"schema_version": 1, "order_id": order_id, "decisions": []}
            layout.review_file(order_id).write_text(json.dumps(review))
        else:
            recipe_file = layout.recipe_file("sprocket-scout")
            doc = json.loads(recipe_file.read_text())
            doc["experimental"] = not doc.get("experimental", False)
            recipe_file.write_text(json.dumps(doc))
        with db(layout):
            warm = plan.load(layout)
        same(warm, plan.scan(layout))
    caches.fresh(())


def test_a_new_order_draws_only_itself(tmp_path: Path, reads: list[str]) -> None:
    """A warm process that sees one new order keeps every other order's node as it was."""
    caches.fresh(keep=("plan_record",))
    layout = make_project(tmp_path / "p")
    with db(layout):
        first = plan.load(layout)
    doc = json.loads(layout.order_file("2025-10-28-002").read_text())
    doc["order_id"] = "2025-10-29-001"
    layout.order_file("2025-10-29-001").write_text(json.dumps(doc))
    reads.clear()
    with db(layout):
        second = plan.load(layout)
    # no other order's file (its recipe, for the inputs a new order reads, is parsed)
    assert [name for name in reads if name.startswith("2025")] == ["2025-10-29-001.json"]
    same(second, plan.scan(layout))
    kept = {n.order_id for n in second.orders if any(n is m for m in first.orders)}
    assert kept == {n.order_id for n in first.orders} - {"2025-10-29-001"}
    caches.fresh(())


# --------------------------------------------------------------------------- patched


PATCH_IDS = [*ORDER_IDS, "2025-10-20-005", "2025-10-24-004", "2025-10-01-001"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["write", "write", "delete", "garble", "link", "touch", "review"]),
            st.sampled_from(PATCH_IDS),
            st.sampled_from(RECIPES),
            st.sampled_from(["pilot", "expansion"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_plan_patched_for_the_changes_named_equals_a_fresh_read(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str, str]]
) -> None:
    """A process told which inputs changed (a watcher trusting its events) patches its last
    plan for those: after any sequence of order edits (new ones, in the middle of a chain,
    removed, garbled, made links) and now and then another input, the plan, its inputs'
    contents and the record it writes are those of a fresh read."""
    caches.fresh(keep=("plan_record",))
    layout = make_project(tmp_path_factory.mktemp("p") / "p")
    with db(layout):
        plan.load(layout, plan.scan_inputs(layout))
    for what, order_id, recipe, phase in steps:
        path = layout.order_file(order_id)
        touched = [path]
        if what in ("write", "delete", "garble", "link"):
            path.unlink(missing_ok=True)
        if what == "write":
            doc = {"schema_version": 1, "order_id": order_id, "phase": phase, "recipe": recipe}
            doc.update(batch_size=12, seed=7, dry_run=False, issued_by="t", notes="n")
            path.write_text(json.dumps(doc))
        elif what == "garble":
            path.write_text("{")
        elif what == "link":
            path.symlink_to(layout.order_file("2025-10-20-011"))
        elif what == "touch":
            touched = [layout.order_file("2025-10-20-011")]
            os.utime(touched[0], ns=(1, 1))
        elif what == "review":
            touched = [layout.review_file(order_id)]
            review = {"schema_version": 1, "order_id": order_id, "decisions": []}
            touched[0].write_text(json.dumps(review))
        entries = plan.scan_inputs(layout)
        by_rel = {e.rel: e for e in entries}
        changed = {r: by_rel.get(r) for r in (plan.rel(layout, p) for p in touched)}
        with db(layout) as opened:
            warm = plan.load(layout, entries, changed=changed)
        fresh = plan.scan(layout)
        same(warm, fresh)
        assert warm.contents == fresh.contents
        assert warm.by_id == fresh.by_id
        with db(layout) as opened:
            record = json.loads(opened.get_meta("plan") or "")
        assert record["stat"] == plan.stat_key(entries)
        same(plan._decode(layout, record["plan"]), fresh)
    caches.fresh(())
