"""The doit task creators: orders -> mint -> rituals -> reports, then quilt, exports, dashboard.

Wiring only: each action is a plain function of the layout and an order id from the
forge or the telemetry rooms, callable and testable without doit. Paths are relative
to the project folder (doit runs from the dodo's folder), so a relocated copy with its
cached `.toyfoundry/` keeps every record valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doit.exceptions import InvalidDodoFile, TaskFailed
from doit.tools import config_changed

from toyfoundry import caches
from toyfoundry.errors import FoundryError, Problem, os_error_line, say
from toyfoundry.forge.snapshot import ODD_PREFIX
from toyfoundry.graph import plan as planning
from toyfoundry.graph import stale
from toyfoundry.graph.plan import rel
from toyfoundry.graph.stages import fingerprint
from toyfoundry.store.atomic import grouped_folder_syncs, write_atomic
from toyfoundry.store.layout import INPUT_FOLDERS, Layout, shared

if TYPE_CHECKING:
    from toyfoundry.graph.backend import FoundryDB

Task = dict[str, Any]


#: When set, the per-order task creators yield only these orders' tasks (see `focus`).
_focus: frozenset[str] | None = None


@contextlib.contextmanager
def focus(order_ids: Iterable[str]) -> Iterator[None]:
    """Draw only these orders' tasks (and the global ones) while the block runs.

    For the graph watcher: a change touches a few orders, and doit spends more on
    turning a thousand untouched orders into tasks than on checking the ones it
    runs. The global tasks still list every order's artefacts as file deps.
    """
    global _focus
    before, _focus = _focus, frozenset(order_ids)
    try:
        yield
    finally:
        _focus = before


def _nodes(plan: planning.Plan) -> list[planning.OrderNode]:
    if _focus is None:
        return plan.orders
    # the plan's orders are in issue order, which is their ids' order
    nodes = plan.by_id
    return [nodes[o] for o in sorted(_focus) if o in nodes]


def _plan(
    root: str,
    entries: list[planning.Entry] | None = None,
    later: list[Callable[[FoundryDB], None]] | None = None,
    changed: dict[str, planning.Entry | None] | None = None,
) -> planning.Plan:
    """The build's plan of the project at `root`: drawn once per build, then shared by every
    task creator and global action (the `plan` snapshot of `toyfoundry.caches`)."""
    table = caches.current().table("plan")
    plan = table.get(root)
    if plan is None:
        table[root] = plan = planning.load(Layout(Path(root)), entries, later, changed)
    return plan


def current_plan(
    entries: list[planning.Entry] | None = None,
    later: list[Callable[[FoundryDB], None]] | None = None,
    changed: dict[str, planning.Entry | None] | None = None,
) -> planning.Plan:
    """The plan of the project in the working folder; the rest, see `plan.load`."""
    return _plan(os.getcwd(), entries, later, changed)


def forget_plan() -> None:
    """Draw the plan again on its next use (a watcher's new cycle)."""
    caches.current().table("plan").clear()


def code_dep(layout: Layout, stage: str) -> str:
    """The stage's code fingerprint as a file dep: a stamp rewritten only when the code changes.

    A file rather than an `uptodate` callable: doit inspects every callable's signature
    on every run, which costs more than the stat of one small file per task.
    """
    return _stamp(layout, layout.state / "code" / f"{stage}.sha256", fingerprint(stage))


def _stamp(layout: Layout, path: Path, digest: str) -> str:
    """Write a stamp file (rewritten only when its digest changes) and name it as a file dep.

    Written while doit loads the graph, where any exception prints as a traceback; a
    full disk or an I/O error is not a bug: it is said in one line.
    """
    try:
        write_atomic(path, f"{digest}\n".encode())
    except OSError as exc:
        raise InvalidDodoFile(os_error_line(exc)) from exc
    return rel(layout, path)


def orders_dep(plan: planning.Plan) -> str:
    """The plan's order ids as a file dep: a stamp rewritten only when the list changes.

    For a task that reads the list of orders but none of their files (the exports):
    one `stat` per run instead of a dep on every order's artefacts.
    """
    layout = plan.layout
    ids = "\n".join(n.order_id for n in plan.orders)
    digest = hashlib.sha256(ids.encode()).hexdigest()
    return _stamp(layout, layout.state / "plan" / "orders.sha256", digest)


def odd_dep(plan: planning.Plan) -> str:
    """A stamp of the inputs that are not regular files, for the tasks that read one.

    Such an input is tracked through `config_changed`, but when it becomes a plain
    absence (a link to a review removed, a folder of mode 000 made readable) the task
    has no odd input left and doit, seeing no `uptodate` entry, would keep its old
    result. While a task reads an odd input it lists this stamp as a file dep too;
    when the input stops being odd the dep goes, and doit re-runs a task whose set of
    file deps changed.
    """
    layout = plan.layout
    listed = "\n".join(sorted({odd for node in plan.orders for odd in node.odd}))
    digest = hashlib.sha256(listed.encode()).hexdigest()
    return _stamp(layout, layout.state / "plan" / "odd.sha256", digest)


def _guard(fn: Any, *args: Any) -> TaskFailed | None:
    """Run an action; a user-level or storage failure becomes one line, not a traceback."""
    try:
        with grouped_folder_syncs():
            fn(*args)
    except FoundryError as exc:
        say(str(exc))
        return TaskFailed(str(exc))
    except OSError as exc:
        # a full disk or an I/O error is the build's, not the task's: the runner says it
        # once and starts nothing more (see `graph.run`), however many tasks hit it
        failed = TaskFailed(os_error_line(exc))
        failed.storage_error = os_error_line(exc)
        return failed
    return None


# --------------------------------------------------------------------------- actions


#: A task's returned value that asks the runner not to record it as done (see `_unless_mixed`).
UNRECORDED = "toyfoundry_unrecorded"


def _unless_mixed(
    made: list[Any], failed: TaskFailed | None
) -> TaskFailed | dict[str, bool] | None:
    """An order refused because an input changed during the build is written (its report
    says so, later orders and the quilt go on), but its task must run again next time:
    doit hashes the new bytes when it records the task, and would think them minted.
    The runner drops the record of a task that returns this value."""
    from toyfoundry.forge.snapshot import mixed

    if failed is None and made and mixed(made[0].problems):
        return {UNRECORDED: True}
    return failed


def mint_action(
    root: str, order_id: str, previous: str | None, planned: dict[str, str] | None = None
) -> TaskFailed | dict[str, bool] | None:
    """`planned`: the plan's content identity of the inputs (see `forge.snapshot`)."""
    from toyfoundry.forge.mint import mint_order

    made: list[Any] = []
    layout = shared(Layout(Path(root)))
    failed = _guard(
        lambda: made.append(mint_order(layout, order_id, previous=previous, planned=planned))
    )
    return _unless_mixed(made, failed)


def rituals_action(
    root: str,
    order_id: str,
    previous: str | None,
    planned: dict[str, str] | None = None,
    recipe: str | None = None,
) -> TaskFailed | dict[str, bool] | None:
    from toyfoundry.forge.mint import read_mint
    from toyfoundry.forge.rituals import run_rituals

    layout = Layout(Path(root))
    failed = _guard(
        lambda: run_rituals(
            layout,
            order_id,
            previous=previous,
            remint_stale=True,
            planned=planned,
            planned_recipe=recipe,
        )
    )
    minted = read_mint(layout, order_id) if failed is None else None
    return _unless_mixed([minted] if minted is not None else [], failed)


def _planned(plan: planning.Plan, node: planning.OrderNode) -> dict[str, str]:
    """The content identity the plan recorded for each of the order's inputs: the hash of a
    regular file, `odd: KIND` for a link, a FIFO or the like (the plan read none of it, so
    a regular file there now is a change too)."""
    planned = {dep: plan.contents[dep] for dep in node.deps if dep in plan.contents}
    for entry in node.odd:
        path, _, kind = entry.rpartition(":")
        planned[path] = f"{ODD_PREFIX}{kind}"
    return planned


def report_action(root: str, order_id: str) -> TaskFailed | None:
    """Write the order's report; a rejected order fails here, after its report is written."""
    from toyfoundry.telemetry.reports import build_order_outputs

    layout = shared(Layout(Path(root)))
    summaries: list[Any] = []
    failed = _guard(lambda: summaries.append(build_order_outputs(layout, order_id)))
    if failed is not None:
        return failed
    if summaries[0].status != "rejected":  # the summary's status is mint.json's
        return None
    from toyfoundry.formats import parsed
    from toyfoundry.formats.models import MintArtefact

    # the report has just read these bytes: the model comes from `parsed`'s memo
    path = layout.mint_artefact(order_id)
    artefact = parsed.parse(MintArtefact, path, path.read_bytes())
    if artefact.status == "rejected":
        lines = [str(Problem(p.path, p.field, p.reason)) for p in artefact.problems] or [
            str(Problem(rel(layout, layout.order_file(order_id)), "-", artefact.reason))
        ]
        for line in lines:
            say(line)
        return TaskFailed(f"order {order_id} rejected: " + "; ".join(lines))
    return None


#: Orders whose report task this build ran to success (`reported`): see `quilt_action`.
_reported: set[str] = set()


def reported(order_id: str) -> None:
    """The runner's note that the order's report task has just succeeded in this build."""
    _reported.add(order_id)


@contextlib.contextmanager
def reports_noted() -> Iterator[None]:
    """Note the reports that succeed while the block runs (a build); forget them after."""
    _reported.clear()
    try:
        yield
    finally:
        _reported.clear()


def quilt_action(root: str, changed: list[str]) -> TaskFailed | None:
    """The quilt of the plan's orders. An order whose report task succeeded in this build
    has its part made from its artefacts as they are (they are the report's file deps,
    and the quilt's, whose changes the graph ran it for): the quilt takes it as current
    instead of reading the part and both artefacts again to check (`reports.is_current`,
    for the other orders: a report that failed, or runs still, or a part made outside)."""
    from toyfoundry.telemetry.quilt import build_quilt

    layout = Layout(Path(root))
    orders = [n.order_id for n in _plan(root).orders]
    return _guard(
        build_quilt, layout, orders, changed_orders(layout, changed), frozenset(_reported)
    )


def export_action(root: str) -> TaskFailed | None:
    from toyfoundry.telemetry.exports import build_exports

    layout = Layout(Path(root))
    orders = [n.order_id for n in _plan(root).orders]
    return _guard(build_exports, layout, orders)


def dashboard_action(root: str) -> TaskFailed | None:
    from toyfoundry.telemetry.dashboard import build_dashboard

    return _guard(build_dashboard, Layout(Path(root)))


def validate_action(root: str) -> TaskFailed | None:
    """The exchange's files that no order task reports on: recipes, checkpoints, reviews, odd names."""
    from toyfoundry.exchange.validate import exchange_files, folder_problems, validate_paths

    layout = Layout(Path(root))
    # each order the graph knows is reported by its own report task: do not read it twice
    known = {layout.order_file(n.order_id) for n in _plan(root).orders}
    files = [p for p in exchange_files(layout) if p not in known]
    problems = folder_problems(layout) + validate_paths(layout, files, schema_check=False)
    for problem in problems:
        say(str(problem))
    if problems:
        return TaskFailed(f"{len(problems)} problem(s) in the exchange")
    return None


def changed_orders(layout: Layout, changed: list[str]) -> set[str]:
    """Orders whose build artefacts doit saw change.

    Empty when only the set of deps changed (an order was removed): the quilt then
    drops what is no longer listed. Its own record (the previous rollup's hash and
    each part's identity) decides when that is not enough and it rebuilds in full.
    """
    out: set[str] = set()
    build = rel(layout, layout.build)
    for path in changed:
        parts = Path(path).parts
        if len(parts) >= 3 and str(Path(*parts[:2])) == build:
            out.add(parts[2])
    return out


def clean_files(paths: list[str]) -> None:
    """`doit clean` for a task whose targets are not all its to remove."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# --------------------------------------------------------------------------- task creators


def _deps(layout: Layout, paths: list[Path]) -> list[str]:
    """Present regular files as file deps; absent optional ones are left out on purpose.

    doit re-runs a task whose set of file deps changed, so a file that appears or
    disappears re-runs exactly the tasks that list it.
    """
    return [rel(layout, p) for p in paths if planning.classify(p) == "regular"]


def _odd_uptodate(odd: Sequence[Any]) -> list[Any]:
    """Links and FIFOs are tracked by what they are; most exchanges have none, so no callable."""
    return [config_changed({"odd": list(odd)})] if odd else []


def _mint_tasks(plan: planning.Plan) -> Iterator[Task]:
    root = str(plan.layout.root)
    code = code_dep(plan.layout, "mint")
    odd = [odd_dep(plan)] if any(node.odd for node in plan.orders) else []
    nodes = plan.by_id
    for node in _nodes(plan):
        chain = [nodes[node.previous].chain] if node.previous else []
        yield {
            "name": node.order_id,
            "actions": [(mint_action, [root, node.order_id, node.previous, _planned(plan, node)])],
            "file_dep": [*node.deps, *chain, code, *(odd if node.odd else [])],
            "targets": [node.mint],
            "uptodate": _odd_uptodate(node.odd),
            "clean": True,
        }


def _rituals_tasks(plan: planning.Plan) -> Iterator[Task]:
    layout = plan.layout
    root = str(layout.root)
    code = code_dep(layout, "rituals")
    outbox = rel(layout, layout.outbox_dir)
    nodes = plan.by_id
    for node in _nodes(plan):
        chain = [nodes[node.previous].chain] if node.previous else []
        made = [
            node.rituals,
            # an order whose file does not parse is in no chain and hands on no chain.json
            *([node.chain] if node.recipe else []),
        ]
        yield {
            "name": node.order_id,
            "actions": [
                (
                    rituals_action,
                    [root, node.order_id, node.previous, _planned(plan, node), node.recipe],
                )
            ],
            "file_dep": [node.mint, *node.recipe_dep, *chain, code],
            # the outbox manifest is a target, so doit restores one that was deleted, but
            # `doit clean` leaves it: other systems may already have read what was pushed
            # (the plan checked the order id, so it joins as `layout.outbox_file` would)
            "targets": [*made, f"{outbox}/{node.order_id}.json"],
            "clean": [(clean_files, [made])],
        }


def _report_tasks(plan: planning.Plan) -> Iterator[Task]:
    root = str(plan.layout.root)
    code = code_dep(plan.layout, "report")
    for node in _nodes(plan):
        yield {
            "name": node.order_id,
            "actions": [(report_action, [root, node.order_id])],
            "file_dep": [node.mint, node.rituals, code],
            "targets": plan.paths.outputs(node.order_id),
            "clean": True,
        }


def slim_targets(tasks: Iterable[Any]) -> None:
    """Give each loaded report task its targets as `plan.Outputs`, made from the order id
    when read, in place of doit's list of 14 strings. Only a report whose targets are
    those outputs, in that order (so doit's target map was made from the same paths)."""
    plan: planning.Plan | None = caches.current().table("plan").get(os.getcwd())
    if plan is None:
        return  # no plan drawn: these are not the foundry's tasks
    for task in tasks:
        actions = task._actions
        if (
            len(actions) != 1
            or not isinstance(actions[0], tuple)
            or actions[0][0] is not report_action
        ):
            continue
        node = plan.by_id.get(task.name.partition(":")[2])
        if node is None:
            continue
        outputs = planning.Outputs(plan.paths, node.order_id)
        if outputs == task.targets:
            task.targets = outputs


def _draw() -> list[tuple[str, Task]]:
    """Every task of the graph as (creator's basename, dict): what the creators would yield."""
    plan = current_plan()
    drawn: list[tuple[str, Task]] = []
    for base, make in (
        ("mint", _mint_tasks),
        ("rituals", _rituals_tasks),
        ("report", _report_tasks),
    ):
        drawn += ((base, task) for task in make(plan))
    for base, single in (
        ("quilt", _quilt_task),
        ("export", _export_task),
        ("dashboard", _dashboard_task),
        ("validate", _validate_task),
    ):
        drawn.append((base, single(plan)))
    return drawn


def _subtasks(base: str, make: Any) -> Iterator[Task]:
    """A creator's tasks: those `stale` keeps in a plain run, else every one `make` draws."""
    kept = stale.kept(base, _draw)
    yield from make(current_plan()) if kept is None else kept


def _single(base: str, make: Any) -> Task | None:
    """A creator's one task, or None when a plain run leaves it out as up to date."""
    kept = stale.kept(base, _draw)
    if kept is None:
        task: Task = make(current_plan())
        return task
    return kept[0] if kept else None


def task_mint() -> Iterator[Task]:
    """Mint each order's batch under the diversity quotas and the validator hooks.

    Its inputs are the files the mint reads that are regular files now (an absent
    review or checkpoint is left out on purpose: doit re-runs a task whose set of
    file deps changed, so one that appears re-runs exactly the orders that read it).
    """
    yield from _subtasks("mint", _mint_tasks)


def task_rituals() -> Iterator[Task]:
    """Run Drill, Parade, Purge and Promote as the order's phase asks; hand the chain on."""
    yield from _subtasks("rituals", _rituals_tasks)


def task_report() -> Iterator[Task]:
    """Write each order's manufacturing report, quilt summary and export partitions."""
    yield from _subtasks("report", _report_tasks)


def _artefacts(plan: planning.Plan) -> list[str]:
    out: list[str] = []
    for node in plan.orders:
        out += (node.mint, node.rituals)
    return out


def _ledgers(plan: planning.Plan) -> list[str]:
    """The ledgers, always listed once there are orders: every mint and ritual task appends
    to them before the quilt is checked, so they exist by then and the dep set is stable."""
    layout = plan.layout
    ledgers = [layout.mint_ledger, layout.ritual_ledger] if plan.orders else []
    return [rel(layout, p) for p in ledgers] + _deps(layout, [layout.watcher_state])


def task_quilt() -> Task | None:
    """Stitch per-order summaries and ledger telemetry into quilt_rollup_all.json."""
    return _single("quilt", _quilt_task)


def _quilt_task(plan: planning.Plan) -> Task:
    layout = plan.layout
    return {
        "actions": [(quilt_action, [str(layout.root)])],
        # an order added or removed changes this list, which re-runs the quilt
        "file_dep": [*_artefacts(plan), *_ledgers(plan), code_dep(layout, "quilt")],
        "targets": [rel(layout, layout.rollup)],
        "clean": True,
    }


def task_export() -> Task | None:
    """Write the JSON/CSV datasets (per-order partitions, batches) and reports/summary.md.

    It reads the rollup and the list of orders, nothing of each order's own: those
    are its deps, not every order's artefacts (a changed artefact reaches it through
    the rollup the quilt rewrites).
    """
    return _single("export", _export_task)


def _export_task(plan: planning.Plan) -> Task:
    layout = plan.layout
    return {
        "actions": [(export_action, [str(layout.root)])],
        "file_dep": [rel(layout, layout.rollup), orders_dep(plan), code_dep(layout, "export")],
        "targets": [
            rel(layout, layout.exports / "batches.csv"),
            rel(layout, layout.exports / "batches.jsonl"),
            rel(layout, layout.summary_md),
        ],
        "clean": True,
    }


def task_dashboard() -> Task | None:
    """Draw the daily dashboard (self-contained HTML) from the quilt, and keep the day's page.

    The day's page is named by the as-of day, which only the rollup knows, so the
    history's index is the declared target beside the page.
    """
    return _single("dashboard", _dashboard_task)


def _dashboard_task(plan: planning.Plan) -> Task:
    layout = plan.layout
    return {
        "actions": [(dashboard_action, [str(layout.root)])],
        "file_dep": [rel(layout, layout.rollup), code_dep(layout, "dashboard")],
        "targets": [
            rel(layout, layout.dashboard),
            rel(layout, layout.telemetry / "dashboards" / "index.html"),
        ],
        "clean": True,
    }


def _validated(plan: planning.Plan) -> list[str]:
    """The inputs `validate` reads: every regular input but the orders (each order's own
    task reports on it), except an order a review names (a review is checked against
    its order's batch size)."""
    reviewed = {
        p.rsplit("/", 1)[-1] for p in plan.regular_inputs if p.startswith("exchange/reviews/")
    }
    orders = {n.inputs[0] for n in plan.orders if n.inputs}
    return [p for p in plan.regular_inputs if p not in orders or p.rsplit("/", 1)[-1] in reviewed]


def task_validate() -> Task | None:
    """Check recipes, checkpoints, reviews and stray files; fails (like a compiler) on problems."""
    return _single("validate", _validate_task)


def _validate_task(plan: planning.Plan) -> Task:
    layout = plan.layout
    return {
        "actions": [(validate_action, [str(layout.root)])],
        "file_dep": [*_validated(plan), code_dep(layout, "validate")],
        "uptodate": _odd_uptodate(plan.odd_inputs),
        # `doit auto` watches these folders too, so a first file in an empty one is seen
        "watch": [rel(layout, layout.exchange / folder) for folder in INPUT_FOLDERS],
        "verbosity": 1,
    }
