"""The loom: per-order outputs for the orders that changed, then the rollup, exports and dashboard.

This is what `toyfoundry loom` runs outside the doit graph; the graph calls the
same functions as separate tasks. Which orders changed is decided cheaply:
`quilt/loom_state.json` remembers each order's artefact file stats (inode,
size, mtime) and the telemetry fingerprint. An order whose stats match and
whose outputs all exist is not even read; one whose stats moved is hashed and
rebuilt only if the digest differs from its part's `source`. New code (another
fingerprint) rebuilds every order once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import QuiltRollup
from toyfoundry.store.atomic import remove_file, write_json_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import artefacts, dashboard, exports, fingerprint, quilt, reports
from toyfoundry.telemetry.parts import part_path

STATE_VERSION = 1
Stat = list[int] | None


def state_path(layout: Layout) -> Path:
    return layout.quilt_dir / "loom_state.json"


@dataclass
class LoomResult:
    orders: list[str]
    built: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rollup: QuiltRollup | None = None
    exports: exports.ExportsResult | None = None
    dashboard: list[Path] = field(default_factory=list)


def _stat(path: Path) -> Stat:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return [info.st_ino, info.st_size, info.st_mtime_ns]


def _load_state(layout: Layout, code: str) -> dict[str, Any]:
    try:
        data = orjson.loads(state_path(layout).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    ok = isinstance(data, dict) and data.get("version") == STATE_VERSION
    if not ok or data.get("fingerprint") != code or not isinstance(data.get("orders"), dict):
        return {}
    orders: dict[str, Any] = data["orders"]
    return orders


def _outputs_exist(layout: Layout, order_id: str) -> bool:
    return all(p.is_file() for p in reports.outputs_of(layout, order_id))


def needs_refresh(
    layout: Layout, order_id: str, known: dict[str, Any] | None
) -> tuple[bool, dict[str, Any]]:
    """Whether one order's outputs must be made again (its artefacts changed); (that, its
    new state entry)."""
    stats = [_stat(layout.mint_artefact(order_id)), _stat(layout.rituals_artefact(order_id))]
    have_outputs = _outputs_exist(layout, order_id)
    if known and known.get("stats") == stats and have_outputs:
        return False, known
    if known is not None and reports.is_current(layout, order_id):
        return False, {"stats": stats}
    return True, {"stats": stats}


def refresh_order(
    layout: Layout, order_id: str, known: dict[str, Any] | None
) -> tuple[bool, dict[str, Any]]:
    """Rebuild one order's outputs if its artefacts changed; (rebuilt?, its new state entry)."""
    rebuild, entry = needs_refresh(layout, order_id, known)
    if rebuild:
        reports.build_order_outputs(layout, order_id)
    return rebuild, entry


def run_loom(
    layout: Layout,
    *,
    export: bool = False,
    today: str | None = None,
    before_writing: Callable[[list[str]], None] | None = None,
) -> LoomResult:
    """Stitch the quilt; with `export`, also the exports, summary.md and the dashboard.

    An order whose artefacts cannot be read is listed in `skipped` and left out
    of the rollup (its stale part is removed), and the other orders still build.
    `before_writing` is told, before anything is written, the graph tasks whose
    files the loom is about to write (`report:<order>`, `quilt`, `export`,
    `dashboard`): the CLI drops their records so the graph makes them again.
    The caller holds the foundry lock.
    """
    code = fingerprint()
    previous = _load_state(layout, code)
    result = LoomResult(orders=artefacts.exchange_order_ids(layout))
    state: dict[str, Any] = {}
    problems = []
    todo: dict[str, bool] = {}
    for oid in result.orders:
        if not artefacts.is_built(layout, oid):
            continue
        result.built.append(oid)
        try:
            todo[oid], state[oid] = needs_refresh(layout, oid, previous.get(oid))
        except FoundryError as exc:
            problems.append(str(exc))
            remove_file(part_path(layout, oid))
    if before_writing is not None:
        stages = ["quilt", *(["export", "dashboard"] if export else [])]
        before_writing([*(f"report:{oid}" for oid, redo in todo.items() if redo), *stages])
    for oid, redo in todo.items():
        if not redo:
            continue
        try:
            reports.build_order_outputs(layout, oid)
        except FoundryError as exc:
            problems.append(str(exc))
            remove_file(part_path(layout, oid))
            state.pop(oid, None)
            continue
        result.rebuilt.append(oid)
    result.rollup = quilt.build_rollup(layout, result.orders, problems=problems)
    result.skipped = list(result.rollup.skipped)
    write_json_atomic(
        state_path(layout), {"version": STATE_VERSION, "fingerprint": code, "orders": state}
    )
    if export:
        result.exports = exports.build_exports(layout, result.orders)
        result.dashboard = dashboard.build_dashboard(layout, today)
    return result
