"""The manufacturing order watcher: tell people, once, when the set of pending orders changes.

A valid order is pending when it has no report yet ("new"), when its build is
older than its inputs ("stale": a file its mint read, as recorded with its
sha256 in the mint artefact's `inputs`, now has other bytes, or the order file
is not among them), or when its report says it waits for a person ("blocked" on
a checkpoint or quota, "awaiting-review" for quarantined Alfas). The last set is
kept in `.toyfoundry/telemetry/order_watcher_state.json`, so a scheduler that
runs `--once` every few minutes notifies exactly once per change.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from pydantic import ValidationError

from toyfoundry.exchange.loader import Exchange
from toyfoundry.formats.models import OrderWatcherState, PendingKind
from toyfoundry.store import safe_read
from toyfoundry.store.atomic import write_json_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import FoundryLock
from toyfoundry.store.runid import utc_now
from toyfoundry.watch.observer import EventSource, Wake, WatchLoop, WatchRoot

_ARTEFACT_MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class Pending:
    kind: PendingKind
    detail: str


def _digest(path: Path) -> str | None:
    """sha256 as the mint records it: None when absent or not a readable regular file."""
    try:
        return hashlib.sha256(safe_read.read_bytes(path, max_bytes=_ARTEFACT_MAX_BYTES)).hexdigest()
    except safe_read.ReadError:
        return None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = safe_read.read_json(path, max_bytes=_ARTEFACT_MAX_BYTES)
    except safe_read.ReadError:
        return None
    return data if isinstance(data, dict) else None


def stale_reason(layout: Layout, order_id: str) -> str | None:
    """Why the order's build is older than its inputs, or None when it is current."""
    mint = _json(layout.mint_artefact(order_id))
    if mint is None:
        return "not minted yet"
    inputs = mint.get("inputs")
    if not isinstance(inputs, dict):
        return None
    order = layout.order_file(order_id).relative_to(layout.root).as_posix()
    if order not in inputs:
        return f"{order} is not among the inputs it was built from"
    for key, recorded in sorted(inputs.items()):
        rel = PurePosixPath(str(key))
        if rel.is_absolute() or ".." in rel.parts:
            continue
        if _digest(layout.root / rel) != recorded:
            return f"{key} changed since it was built"
    return None


def pending_orders(layout: Layout) -> dict[str, Pending]:
    """Every valid order that is not built from its current inputs or waits for a person."""
    exchange = Exchange(layout)
    out: dict[str, Pending] = {}
    for order_id in exchange.order_ids():
        if not exchange.order(order_id).ok:
            # a rejected order waits for a fix of its file; its report says what is wrong
            continue
        report = _json(layout.report_json(order_id))
        if report is None:
            out[order_id] = Pending("new", "no report yet")
            continue
        stale = stale_reason(layout, order_id)
        status = report.get("status")
        waiting = report.get("awaiting_review")
        if stale is not None:
            out[order_id] = Pending("stale", stale)
        elif status == "blocked":
            out[order_id] = Pending("blocked", str(report.get("reason") or "blocked"))
        elif status == "awaiting-review" or (isinstance(waiting, list) and waiting):
            count = len(waiting) if isinstance(waiting, list) else 0
            out[order_id] = Pending("awaiting-review", f"{count} Alfa(s) await a review")
    return out


@dataclass
class PendingChange:
    """How the pending set moved since it was last announced."""

    current: dict[str, Pending]
    added: list[str] = field(default_factory=list)
    removed: dict[str, str] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.moved)

    def summary(self) -> str:
        parts = [f"+{len(self.added)} new"] if self.added else []
        parts += [f"-{len(self.removed)} done"] if self.removed else []
        parts += [f"~{len(self.moved)} changed"] if self.moved else []
        return f"{len(self.current)} pending order(s) ({', '.join(parts) or 'no change'})"

    def lines(self) -> list[str]:
        out = [f"watch-orders: {self.summary()}"]
        for oid in self.added:
            p = self.current[oid]
            out.append(f"  + {oid}  {p.kind}: {p.detail}")
        for oid, was in sorted(self.removed.items()):
            out.append(f"  - {oid}  no longer pending (was {was})")
        for oid, was in sorted(self.moved.items()):
            p = self.current[oid]
            out.append(f"  ~ {oid}  {was} -> {p.kind}: {p.detail}")
        return out


def compare(before: Mapping[str, str], now: dict[str, Pending]) -> PendingChange:
    change = PendingChange(now)
    change.added = sorted(o for o in now if o not in before)
    change.removed = {o: k for o, k in before.items() if o not in now}
    change.moved = {o: k for o, k in before.items() if o in now and now[o].kind != k}
    return change


class Notifier:
    """The terminal bell (only on a terminal) and a desktop notification (where notify-send is)."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        quiet: bool = False,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.out = out
        self.quiet = quiet
        self.which = which

    def __call__(self, title: str, body: str) -> None:
        if self.quiet:
            return
        out = self.out or sys.stdout
        if getattr(out, "isatty", lambda: False)():
            out.write("\a")
            out.flush()
        program = self.which("notify-send")
        if program is None:
            return
        # a notification is a courtesy: a broken desktop session must not stop the watcher
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [program, "--app-name=Toyfoundry", title, body],
                check=False,
                timeout=10,
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )


class OrderWatcher:
    """Compares the pending set with the last announced one; `check()` once or `run()` a loop."""

    def __init__(
        self,
        layout: Layout,
        *,
        build: bool = False,
        notify: Callable[[str, str], None] | None = None,
        dodo: Any = None,
        source: EventSource | None = None,
        quiet: float = 1.0,
        out: TextIO | None = None,
    ) -> None:
        self.layout = layout
        self.build = build
        self.notify = notify or Notifier(out)
        self.dodo = dodo
        self.out = out
        self.loop = WatchLoop(
            source, quiet=quiet, max_delay=max(5.0, quiet), rescan=30.0, accept=self.relevant
        )
        self.lock = FoundryLock(layout.lock_file, purpose="watch-orders")

    def relevant(self, path: Path) -> bool:
        try:
            path.relative_to(self.layout.exchange)
        except ValueError:
            return False
        return not safe_read.is_skipped_name(path.name)

    def _say(self, lines: list[str]) -> None:
        stream = self.out or sys.stdout
        stream.write("\n".join(lines) + "\n")
        stream.flush()

    def load_state(self) -> dict[str, str]:
        path = self.layout.order_watcher_state
        if not path.exists():
            return {}
        try:
            data = safe_read.read_json(path, max_bytes=_ARTEFACT_MAX_BYTES)
            return dict(OrderWatcherState.model_validate(data).pending)
        except (safe_read.ReadError, ValidationError):
            print(
                f"watch-orders: {path.name} cannot be read; taking every pending order as new",
                file=sys.stderr,
            )
            return {}

    def check(self) -> PendingChange:
        """Build (if asked), compute the pending set, and announce and record it if it moved.

        Under the foundry lock, so reports and artefacts are not read halfway through a build.
        """
        with self.lock:
            if self.build:
                from toyfoundry.watch.graph_watcher import run_graph

                run_graph(self.layout, dodo=self.dodo)
            change = compare(self.load_state(), pending_orders(self.layout))
            if change.any or not self.layout.order_watcher_state.exists():
                write_json_atomic(
                    self.layout.order_watcher_state,
                    OrderWatcherState(
                        schema_version=1,
                        updated_at=utc_now(),
                        pending={o: p.kind for o, p in sorted(change.current.items())},
                    ),
                )
        if change.any:
            self._say(change.lines())
            body = "; ".join(line.strip() for line in change.lines()[1:6])
            self.notify(f"Toyfoundry: {change.summary()}", body)
        return change

    def run(self, *, interval: float = 30.0) -> int:
        """Check now, then on settled exchange events and every `interval` seconds; returns 0."""
        self.loop.rescan = interval
        with contextlib.suppress(KeyboardInterrupt):
            self.loop.run([WatchRoot(self.layout.exchange)], self._cycle)
        return 0

    def _cycle(self, wake: Wake) -> None:
        change = self.check()
        if wake.trigger == "start" and not change.any:
            self._say([f"watch-orders: {change.summary()}"])

    def stop(self) -> None:
        self.loop.stop()
