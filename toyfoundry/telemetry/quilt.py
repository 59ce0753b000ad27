"""The quilt rollup: one summary per order plus foundry totals, with attempt stats from the ledgers.

Everything in `quilt_rollup_all.json` is determined by the orders' build
artefacts (through their parts in `quilt/parts/`) except each summary's
`telemetry` (attempts and last attempt time) and the `skipped` list, which come
from the ledgers: two foundries with the same builds but different attempt
histories differ only there.

The ledgers grow forever, so they are read incrementally. `quilt/ledger_index.json`
keeps, per ledger, the byte offset and line count consumed, the file's
identity (inode, and a sha256 of its first bytes up to 4 KiB), the per-order
stats so far and the lines skipped so far. A run reads only the bytes after
the offset; a ledger that shrank, was replaced or rewritten is rescanned from 0.

The parts are read incrementally too. Reading and validating every part was
most of a run's cost, and the graph knows which orders changed, so a run
given `changed` starts from the previous rollup (when its bytes are
those recorded in `quilt/rollup_state.json`, see `parts`) and reads only the
parts of changed orders and parts whose file identity moved. Batches, totals
and skip lines are then made by the same code as on a full build, from plain
data, so an incremental rollup is byte for byte the one a full build writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import hashlib
import operator
import os
import pickle
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from toyfoundry.children import die_with, running_server
from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import (
    AttemptStats,
    BatchSummary,
    Outcomes,
    QuiltRollup,
    WatcherState,
)
from toyfoundry.store.atomic import dumps_canonical, remove_file
from toyfoundry.store.layout import ORDER_ID_RE, Layout
from toyfoundry.telemetry import artefacts, ledgers, reports
from toyfoundry.telemetry.artefacts import display
from toyfoundry.telemetry.parts import (
    Stat,
    Stored,
    code_digest,
    load_rollup,
    part_path,
    part_stats,
    read_part_data,
    write_rollup,
)
from toyfoundry.telemetry.summary import group_key

INDEX_VERSION = 1
HEAD_BYTES = 4096
#: Skipped lines kept per ledger; beyond this only a count, so garbage cannot bloat the index.
MAX_SKIPPED = 1000
#: Orders to bring up to date from which the quilt reads the ledgers in a child (`aside`):
#: a few new orders add a few ledger lines, which a fork would cost more than.
ASIDE_AT = 200
#: A batch's `telemetry` for an order no ledger mentions.
NO_ATTEMPTS: dict[str, Any] = AttemptStats().model_dump(mode="json")
OUTCOMES = tuple(Outcomes.model_fields)
_outcome_values = operator.itemgetter(*OUTCOMES)
#: The keys every batch the rollup holds has; a carried-over batch without them is read again.
_BATCH_KEYS = frozenset(BatchSummary.model_fields)


def index_path(layout: Layout) -> Path:
    return layout.quilt_dir / "ledger_index.json"


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _same_shape(a: str, b: str) -> bool:
    """Same length and the same UTC offset: ISO 8601 text then sorts as the instants do."""
    if len(a) != len(b):
        return False
    if a[-1] == "Z":
        return b[-1] == "Z"
    return a[-6] in "+-" and a[-6:] == b[-6:]


def later(a: str | None, b: str | None) -> str | None:
    """The later of two ledger timestamps, compared as instants (offsets may differ).

    Timestamps of one writer share their offset and precision, and the rollup asks
    this twice per order per ledger, so those are compared as text, not parsed.
    """
    if a is None or b is None:
        return a or b
    if _same_shape(a, b):
        return b if b > a else a
    return b if _time(b) > _time(a) else a


def _fresh(inode: int, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "inode": inode,
        "head": hashlib.sha256(b"").hexdigest(),
        "head_size": 0,
        "offset": 0,
        "lines": 0,
        "orders": {},
        "skipped": [],
        "skipped_more": 0,
    }


def _head(path: Path, size: int) -> str:
    return hashlib.sha256(ledgers.read_prefix(path, size)).hexdigest()


def _same_file(path: Path, kind: str, state: dict[str, Any], extent: ledgers.Extent) -> bool:
    """True when `state` describes a prefix of this very file: same inode, same first bytes."""
    return (
        state.get("kind") == kind
        and state.get("inode") == extent.inode
        and isinstance(state.get("offset"), int)
        and state["offset"] <= extent.end
        and _head(path, state["head_size"]) == state["head"]
    )


def _consume(
    layout: Layout, path: Path, kind: str, state: dict[str, Any], extent: ledgers.Extent
) -> None:
    """Fold the lines appended since `state["offset"]` into `state`.

    One task's lines are one append, so most lines repeat the line before's order,
    time and run: the reader then returns the same `Facts`, and only the count moves.
    """
    shown = display(layout, path)
    orders: dict[str, dict[str, Any]] = state["orders"]
    skipped: list[str] = state["skipped"]
    mint = kind == "mint"
    read = ledgers.Reader(kind, extent.end - state["offset"]).read
    last: ledgers.Facts | None = None
    stats: dict[str, Any] = {}
    number = state["lines"]
    for number, line in ledgers.lines(path, state["offset"], extent.end, state["lines"] + 1):
        facts, problem = read(line)
        if facts is None:
            if len(skipped) < MAX_SKIPPED:
                skipped.append(f"{shown}:{number}: {problem}")
            else:
                state["skipped_more"] += 1
            continue
        if facts is last:  # the reader's same order, time and run as the line before
            stats["records"] += 1
            continue
        last = facts
        found = orders.get(facts.order_id)
        if found is None:
            found = orders[facts.order_id] = {
                "first_line": number,
                "records": 0,
                "runs": [],
                "last_attempt": None,
            }
        stats = found
        stats["records"] += 1
        stats["last_attempt"] = later(stats["last_attempt"], facts.time)
        if mint and facts.run_id not in stats["runs"]:
            stats["runs"].append(facts.run_id)
    state["lines"] = number
    state["offset"] = extent.end
    if state["head_size"] < HEAD_BYTES:
        state["head_size"] = min(HEAD_BYTES, extent.end)
        state["head"] = _head(path, state["head_size"])


def _load_index(layout: Layout) -> dict[str, Any]:
    try:
        data = orjson.loads(index_path(layout).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
        return {}
    found = data.get("ledgers")
    return found if isinstance(found, dict) else {}


def update_index(layout: Layout) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Read what the ledgers gained since the last run; returns the index and this run's notes.

    The notes are about the ledgers' current tails, not history: a torn last
    line and the fragments earlier repairs set aside in `<ledger>.torn`.
    """
    previous = _load_index(layout)
    index: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for path, kind in ledgers.ledgers(layout):
        extent = ledgers.extent(path)
        notes += torn_notes(layout, path)
        if extent is None:
            continue
        state = previous.get(path.name)
        try:
            reusable = isinstance(state, dict) and _same_file(path, kind, state, extent)
        except (KeyError, TypeError, OSError):
            reusable = False
        if not reusable or state is None:
            state = _fresh(extent.inode, kind)
        _consume(layout, path, kind, state, extent)
        index[path.name] = state
        if extent.torn:
            notes.append(
                f"{display(layout, path)}:{state['lines'] + 1}: torn last line"
                f" ({extent.size - extent.end} bytes without a newline), not read"
            )
    return index, notes


def index_bytes(index: dict[str, dict[str, Any]]) -> bytes:
    """The ledger index as written: `update_index`'s result, for `stitch` to write with the rollup."""
    return dumps_canonical({"version": INDEX_VERSION, "ledgers": index})


def torn_notes(layout: Layout, ledger: Path) -> list[str]:
    """One note per fragment a repair moved to `<ledger>.torn`."""
    return [
        f"{display(layout, torn)}:{number}: {fragment}"
        for torn, number, fragment in ledgers.torn_fragments(ledger)
    ]


def attempt_stats(index: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per order: distinct mint runs, ritual invocations, and the last attempt in either ledger.

    Each as the plain data of an AttemptStats: what a batch's `telemetry` holds.
    """
    merged: dict[str, dict[str, Any]] = {}
    for state in index.values():
        ritual = state["kind"] == "ritual"
        for oid, stats in state["orders"].items():
            into = merged.get(oid)
            if into is None:
                into = merged[oid] = dict(NO_ATTEMPTS)
            if stats["runs"]:
                into["mint_attempts"] += len(stats["runs"])
            if ritual:
                into["ritual_invocations"] += stats["records"]
            into["last_attempt"] = later(into["last_attempt"], stats["last_attempt"])
    return merged


def totals(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Outcome sums per phase, recipe and day, and order counts per status, as Totals data."""
    groups: dict[str, dict[str, list[tuple[int, ...]]]] = {
        "by_phase": {},
        "by_recipe": {},
        "by_day": {},
    }
    phase, recipe, day = groups.values()
    status: dict[str, int] = {}
    for b in batches:
        row = _outcome_values(b["outcomes"])
        phase.setdefault(group_key(b["phase"]), []).append(row)
        recipe.setdefault(group_key(b["recipe"]), []).append(row)
        day.setdefault(b["day"], []).append(row)
        status[b["status"]] = status.get(b["status"], 0) + 1
    out: dict[str, Any] = {
        name: {
            key: dict(zip(OUTCOMES, map(sum, zip(*rows, strict=True)), strict=True))
            for key, rows in sorted(group.items())
        }
        for name, group in groups.items()
    }
    out["by_status"] = dict(sorted(status.items()))
    return out


def _watcher_notes(layout: Layout) -> list[str]:
    path = layout.watcher_state
    try:
        WatcherState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return []
    except ValidationError as exc:
        return [
            f"{display(layout, path)}: not a valid watcher snapshot ({exc.error_count()} errors)"
        ]
    return []


@dataclass(frozen=True)
class Stitched:
    """What one quilt run wrote: the rollup as plain data, and which parts it had to read."""

    #: Shared with later readers of the rollup in this process (`parts.load_rollup`): read only.
    document: dict[str, Any]
    #: Orders whose part was read and validated in this run (all of them on a full build).
    read: list[str]
    #: True when the previous rollup was the base, False on a full build.
    reused: bool

    @property
    def skipped(self) -> list[str]:
        found: list[str] = self.document["skipped"]
        return found

    @property
    def order_ids(self) -> list[str]:
        return [b["order_id"] for b in self.document["batches"]]

    def model(self) -> QuiltRollup:
        return QuiltRollup.model_validate(self.document)


def build_quilt(
    layout: Layout,
    order_ids: Iterable[str],
    changed: Iterable[str] | None = None,
    current: Collection[str] = frozenset(),
) -> Stitched:
    """Bring the parts of `changed` orders (None: all) up to date, then stitch the rollup.

    The graph's report task normally wrote the parts already; this only
    rebuilds an order whose part is missing or was made from other artefacts.
    An order whose artefacts cannot be read loses its part and is listed as
    skipped, and the rest still builds. With `changed` given, the previous
    rollup is the base (see `stitch`); None rebuilds it from every part.
    `current`: orders whose part the caller knows was just made from their
    artefacts as they are (the graph's reports that succeeded): not checked.
    """
    ids = list(order_ids)
    fresh = None if changed is None else set(changed)
    wanted = set(ids) if fresh is None else fresh
    # many new orders are many new ledger lines: read them beside the parts (see `aside`)
    ledger_index = aside(update_index, layout) if len(wanted) >= ASIDE_AT else None
    check = wanted - set(current) if current else wanted
    have = _part_ids(layout)
    problems = []
    try:
        for oid in ids:
            if oid not in check and oid in have:
                continue
            if not artefacts.is_built(layout, oid):
                continue
            try:
                if not reports.is_current(layout, oid):
                    reports.build_order_outputs(layout, oid)
            except FoundryError as exc:
                problems.append(str(exc))
                remove_file(part_path(layout, oid))
        return stitch(layout, ids, problems=problems, changed=fresh, ledger_index=ledger_index)
    except BaseException:
        if isinstance(ledger_index, _Aside):
            with contextlib.suppress(Exception):  # the caller's error wins
                ledger_index.reap()
        raise


def aside(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """`fn(*args)` in a child process while the caller goes on; call the result for its value.

    A full build's quilt reads every ledger line (100,000 at 1,000 orders, 60% of its
    time) and every order's part, one after the other, at the end of the build when the
    other cores have nothing left to do. The child returns the small index, pickled.

    In a parallel build the child comes from the workers' fork server (`_from_server`),
    which holds the imports and no graph. A fork of the build process shared its 190 MB
    at 10,000 orders, and each object the child made in a free slot of the parent's
    memory pools copied a page of it: the child held 130 MB (PSS) of its own, the build's
    peak memory. Without a server the child is a fork (`_forked`); it ends with `os._exit`,
    so no buffer or exit handler of the parent runs twice. Anything amiss in the child (no
    fork here, an exception, a result that does not pickle) and `fn` runs again in the
    caller when its value is asked for, so its errors surface as they would have.
    """
    again = functools.partial(fn, *args)
    served = _from_server(fn, args, again)
    if served is not None:
        return served
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return again  # a fork copies one thread: not with others
    return _forked(fn, args, again)


def _from_server(
    fn: Callable[..., Any], args: tuple[Any, ...], again: Callable[[], Any]
) -> _Aside | None:
    """`aside`'s child from the fork server; None when no server runs or `fn` cannot go."""
    server = running_server()
    if server is None:
        return None
    ctx, pid = server
    read, write = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_serve_aside, args=(fn, args, write, os.getcwd(), pid))
    try:
        process.start()
    except Exception:  # `fn` or its arguments do not pickle, the server is gone
        read.close()
        write.close()
        return None
    write.close()

    def result() -> bytes:
        try:
            data: bytes = read.recv_bytes()
        except (EOFError, OSError):
            data = b""
        finally:
            read.close()
        process.join()
        return data if process.exitcode == 0 else b""

    return _Aside(result, again)


def _serve_aside(
    fn: Callable[..., Any], args: tuple[Any, ...], out: Any, cwd: str, server: int | None
) -> None:
    """The fork server's child: `fn(*args)`, pickled to `out`, from the caller's folder."""
    gc.freeze()  # the server's objects stay shared: a collection would touch their pages
    die_with(server)
    if os.getcwd() != cwd:
        os.chdir(cwd)
    try:
        data = pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # the caller runs `fn` again and shows the error as its own
        os._exit(1)
    out.send_bytes(data)
    out.close()


def _forked(
    fn: Callable[..., Any], args: tuple[Any, ...], again: Callable[[], Any]
) -> Callable[[], Any]:
    """`aside`'s child as a fork of this process."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return again
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_end)
            gc.disable()  # a collection would touch, and so copy, the parent's pages
            data = pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)

    def result() -> bytes:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        return data if status == 0 else b""

    return _Aside(result, again)


class _Aside:
    """The value of `aside`'s child, read once; a caller that fails before asking for it
    reaps the child (`reap`), which would otherwise wait on a full pipe."""

    def __init__(self, result: Callable[[], bytes], again: Callable[[], Any]) -> None:
        self.result, self.again = result, again
        self.value: Any = None
        self.done = False

    def __call__(self) -> Any:
        if not self.done:
            data = self.reap()
            try:
                if not data:
                    raise ValueError("no value from the child")
                self.value = pickle.loads(data)
            except Exception:
                self.value = self.again()
        return self.value

    def reap(self) -> bytes:
        """What the child sent (empty when it failed), once; it has ended when this returns."""
        if self.done:
            return b""
        self.done = True
        return self.result()


def _part_ids(layout: Layout) -> set[str]:
    """Order ids that have a part file, from one listing of `quilt/parts/`."""
    try:
        names = os.listdir(layout.quilt_parts)
    except FileNotFoundError:
        return set()
    return {name[:-5] for name in names if name.endswith(".json")}


def build_rollup(
    layout: Layout, order_ids: Iterable[str], *, problems: Sequence[str] = ()
) -> QuiltRollup:
    """Rebuild the rollup from every part of `order_ids` and write it; returns it validated."""
    return stitch(layout, order_ids, problems=problems).model()


def stitch(
    layout: Layout,
    order_ids: Iterable[str],
    *,
    problems: Sequence[str] = (),
    changed: Iterable[str] | None = None,
    ledger_index: Callable[[], tuple[dict[str, dict[str, Any]], list[str]]] | None = None,
) -> Stitched:
    """Assemble the rollup from the parts of `order_ids` and the ledgers' new lines, and write it.

    With `changed` None every part is read and validated. Otherwise the
    previous rollup is the base when `parts.load_rollup` trusts it: a batch is
    carried over when its order is not in `changed` and its part still has the
    identity (inode, size, mtime) recorded when it was read, and every other
    part is read. Either way the batches, totals and skip lines are made by the
    same code from the same values, so both give the same bytes. Every batch's
    `telemetry` comes from the ledger index.

    Records for orders not in `order_ids` (an order withdrawn from the exchange)
    are history: left out of the batches, and not listed as skipped.
    `problems` are the caller's own skips (orders whose artefacts it could not
    read), listed first. `ledger_index`: `update_index`'s result, read aside (`aside`).
    """
    ids = sorted(set(order_ids))
    code = code_digest()
    stored = None if changed is None else load_rollup(layout, code)
    base, known = _base(stored)
    fresh = set(changed or ())
    stats_now = part_stats(layout, [oid for oid in ids if ORDER_ID_RE.match(oid)])
    skipped: list[str] = list(problems)
    batches: list[dict[str, Any]] = []
    seen: dict[str, Stat] = {}
    read: list[str] = []
    for oid in ids:
        stat = stats_now.get(oid)
        batch = base.get(oid)
        if batch is None or stat is None or oid in fresh or known.get(oid) != stat:
            read.append(oid)
            batch, problem = read_part_data(layout, oid)
            if batch is None:
                skipped.append(problem or f"{oid}: no summary")
                continue
        if stat is not None:
            seen[oid] = stat
        batches.append(batch)
    index, notes = update_index(layout) if ledger_index is None else ledger_index()
    stats = attempt_stats(index)
    # a carried-over batch belongs to the previous document, which other readers in this
    # process may share (see `parts.load_rollup`): one whose telemetry moved is copied
    for number, batch in enumerate(batches):
        telemetry = stats.get(batch["order_id"]) or dict(NO_ATTEMPTS)
        if batch["telemetry"] != telemetry:
            batches[number] = {**batch, "telemetry": telemetry}
    skipped += _ledger_skips(layout, index, set(ids))
    skipped += notes + _watcher_notes(layout)
    document = {
        "schema_version": 1,
        "batches": batches,
        "totals": totals(batches),
        "skipped": skipped,
    }
    write_rollup(layout, document, seen, code, before=[(index_path(layout), index_bytes(index))])
    return Stitched(document, read, stored is not None)


def _base(stored: Stored | None) -> tuple[dict[str, dict[str, Any]], dict[str, Stat]]:
    """The previous rollup's batches by order and the part identities they were read at.

    Only batches that look like the ones this code writes are kept; anything
    else is read again from its part.
    """
    if stored is None:
        return {}, {}
    base: dict[str, dict[str, Any]] = {}
    for batch in stored.document["batches"]:
        oid = batch.get("order_id") if isinstance(batch, dict) else None
        if isinstance(oid, str) and _BATCH_KEYS.issubset(batch):
            base[oid] = batch
    return base, stored.parts


def _ledger_skips(layout: Layout, index: dict[str, dict[str, Any]], known: set[str]) -> list[str]:
    """Each ledger's bad lines. Records of orders not in `known` (withdrawn orders) are
    history: the ledger keeps them, and they are neither skipped nor listed."""
    skipped: list[str] = []
    for path, _kind in ledgers.ledgers(layout):
        state = index.get(path.name)
        if state is None:
            continue
        shown = display(layout, path)
        skipped += state["skipped"]
        if state["skipped_more"]:
            skipped.append(f"{shown}: {state['skipped_more']} more bad lines not listed")
    return skipped
