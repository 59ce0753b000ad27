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
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import (
    AttemptStats,
    BatchSummary,
    MintRecord,
    Outcomes,
    QuiltRollup,
    Totals,
    WatcherState,
)
from toyfoundry.store.atomic import remove_file, write_json_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import artefacts, ledgers, reports
from toyfoundry.telemetry.artefacts import display
from toyfoundry.telemetry.parts import part_path, read_part
from toyfoundry.telemetry.summary import group_key

INDEX_VERSION = 1
HEAD_BYTES = 4096
#: Skipped lines kept per ledger; beyond this only a count, so garbage cannot bloat the index.
MAX_SKIPPED = 1000


def index_path(layout: Layout) -> Path:
    return layout.quilt_dir / "ledger_index.json"


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def later(a: str | None, b: str | None) -> str | None:
    """The later of two ledger timestamps, compared as instants (offsets may differ)."""
    if a is None or b is None:
        return a or b
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
    """Fold the lines appended since `state["offset"]` into `state`."""
    shown = display(layout, path)
    orders: dict[str, dict[str, Any]] = state["orders"]
    skipped: list[str] = state["skipped"]
    number = state["lines"]
    for number, line in ledgers.lines(path, state["offset"], extent.end, state["lines"] + 1):
        record, problem = ledgers.check_line(kind, line)
        if record is None:
            if len(skipped) < MAX_SKIPPED:
                skipped.append(f"{shown}:{number}: {problem}")
            else:
                state["skipped_more"] += 1
            continue
        stats = orders.get(record.order_id)
        if stats is None:
            stats = orders[record.order_id] = {
                "first_line": number,
                "records": 0,
                "runs": [],
                "last_attempt": None,
            }
        stats["records"] += 1
        stats["last_attempt"] = later(stats["last_attempt"], record.time)
        if isinstance(record, MintRecord) and record.run_id not in stats["runs"]:
            stats["runs"].append(record.run_id)
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
    write_json_atomic(index_path(layout), {"version": INDEX_VERSION, "ledgers": index})
    return index, notes


def torn_notes(layout: Layout, ledger: Path) -> list[str]:
    """One note per fragment a repair moved to `<ledger>.torn`."""
    return [
        f"{display(layout, torn)}:{number}: {fragment}"
        for torn, number, fragment in ledgers.torn_fragments(ledger)
    ]


def attempt_stats(index: dict[str, dict[str, Any]]) -> dict[str, AttemptStats]:
    """Per order: distinct mint runs, ritual invocations, and the last attempt in either ledger."""
    merged: dict[str, dict[str, Any]] = {}
    for state in index.values():
        for oid, stats in state["orders"].items():
            into = merged.setdefault(oid, {"runs": 0, "rituals": 0, "last": None})
            if stats["runs"]:
                into["runs"] += len(stats["runs"])
            if state["kind"] == "ritual":
                into["rituals"] += stats["records"]
            into["last"] = later(into["last"], stats["last_attempt"])
    return {
        oid: AttemptStats(
            mint_attempts=m["runs"], ritual_invocations=m["rituals"], last_attempt=m["last"]
        )
        for oid, m in merged.items()
    }


def _sum(items: Iterable[Outcomes]) -> Outcomes:
    totals = dict.fromkeys(Outcomes.model_fields, 0)
    for item in items:
        for name in totals:
            totals[name] += getattr(item, name)
    return Outcomes(**totals)


def totals(batches: list[BatchSummary]) -> Totals:
    """Outcome sums per phase, recipe and day, and order counts per status."""
    groups: dict[str, dict[str, list[Outcomes]]] = {"phase": {}, "recipe": {}, "day": {}}
    status: dict[str, int] = {}
    for b in batches:
        groups["phase"].setdefault(group_key(b.phase), []).append(b.outcomes)
        groups["recipe"].setdefault(group_key(b.recipe), []).append(b.outcomes)
        groups["day"].setdefault(b.day, []).append(b.outcomes)
        status[b.status] = status.get(b.status, 0) + 1
    by = {k: {key: _sum(v) for key, v in sorted(g.items())} for k, g in groups.items()}
    return Totals(
        by_phase=by["phase"],
        by_recipe=by["recipe"],
        by_day=by["day"],
        by_status=dict(sorted(status.items())),
    )


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


def build_quilt(
    layout: Layout, order_ids: Iterable[str], changed: Iterable[str] | None = None
) -> QuiltRollup:
    """Bring the parts of `changed` orders (None: all) up to date, then build the rollup.

    The graph's report task normally wrote the parts already; this only
    rebuilds an order whose part is missing or was made from other artefacts.
    An order whose artefacts cannot be read loses its part and is listed as
    skipped, and the rest still builds.
    """
    ids = list(order_ids)
    wanted = set(ids) if changed is None else set(changed)
    problems = []
    for oid in ids:
        if not artefacts.is_built(layout, oid):
            continue
        if oid not in wanted and part_path(layout, oid).is_file():
            continue
        try:
            if not reports.is_current(layout, oid):
                reports.build_order_outputs(layout, oid)
        except FoundryError as exc:
            problems.append(str(exc))
            remove_file(part_path(layout, oid))
    return build_rollup(layout, ids, problems=problems)


def build_rollup(
    layout: Layout, order_ids: Iterable[str], *, problems: Sequence[str] = ()
) -> QuiltRollup:
    """Assemble the rollup from the parts of `order_ids` and the ledgers' new lines, and write it.

    Records for orders not in `order_ids` (an order file deleted from the
    exchange) are skipped and listed, one line per ledger and order.
    `problems` are the caller's own skips (orders whose artefacts it could not
    read), listed first.
    """
    ids = sorted(set(order_ids))
    skipped: list[str] = list(problems)
    parts: list[BatchSummary] = []
    for oid in ids:
        part, problem = read_part(layout, oid)
        if part is None:
            skipped.append(problem or f"{oid}: no summary")
        else:
            parts.append(part)
    index, notes = update_index(layout)
    stats = attempt_stats(index)
    known = set(ids)
    for path, _kind in ledgers.ledgers(layout):
        state = index.get(path.name)
        if state is None:
            continue
        shown = display(layout, path)
        skipped += state["skipped"]
        if state["skipped_more"]:
            skipped.append(f"{shown}: {state['skipped_more']} more bad lines not listed")
        for oid, s in sorted(state["orders"].items()):
            if oid not in known:
                n = s["records"]
                skipped.append(
                    f"{shown}:{s['first_line']}: {n} record{'s' if n > 1 else ''} for order {oid},"
                    " which is not in the exchange"
                )
    skipped += notes + _watcher_notes(layout)
    batches = [
        p.model_copy(update={"telemetry": stats.get(p.order_id, AttemptStats())}) for p in parts
    ]
    rollup = QuiltRollup(schema_version=1, batches=batches, totals=totals(batches), skipped=skipped)
    write_json_atomic(layout.rollup, rollup)
    return rollup
