"""The exchange watcher: which artefacts addressed to a target are new, changed or gone.

An artefact is addressed to target T when it sits anywhere under
`exchange/inbox/T/`, or when its file name starts with `T__` anywhere else in
`exchange/` outside the areas the foundry writes (`reports/`, `outbox/`). The
address is in the path only: no file is parsed to find it, so a producer can drop
any format, and an untrusted file cannot claim another target from inside.

What was seen is kept in `.toyfoundry/telemetry/exchange_watcher_state.json`
(the `WatcherState` format): path, sha256, size, first and last seen, written
atomically. A file still being written is left for the next run, and an entry is
dropped ("gone") only when its file is no longer there.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import SeenArtefact, WatcherState
from toyfoundry.store import safe_read
from toyfoundry.store.atomic import write_json_atomic
from toyfoundry.store.layout import Layout, UnsafeIdError, check_slug
from toyfoundry.store.lock import FoundryLock
from toyfoundry.store.runid import utc_now
from toyfoundry.watch.observer import EventSource, StableScanner, Wake, WatchLoop, WatchRoot

INBOX = "inbox"
#: The state file holds one entry per artefact; far more than 1 MiB of them is still fine.
_STATE_MAX_BYTES = 64 << 20


def check_target(target: str) -> str:
    """A target id is a slug (`toyfoundry_ai_0`): it becomes a folder name."""
    try:
        return check_slug(target)
    except UnsafeIdError as exc:
        raise FoundryError(f"--target: {exc}") from None


def addressed_to(layout: Layout, target: str) -> Iterator[Path]:
    """Every entry of the exchange addressed to `target`; links are listed, never followed."""
    inbox = layout.exchange / INBOX / target
    prefix = f"{target}__"
    for folder, dirs, files in os.walk(layout.exchange):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not safe_read.is_skipped_name(d) and not layout.is_owned_output(here / d)
        )
        in_inbox = here == inbox or here.is_relative_to(inbox)
        for name in sorted(files):
            if safe_read.is_skipped_name(name):
                continue
            if in_inbox or name.startswith(prefix):
                yield here / name


@dataclass
class ExchangeDiff:
    """What one run found: new, changed and gone artefacts, and what it had to leave."""

    target: str
    new: list[SeenArtefact] = field(default_factory=list)
    changed: list[SeenArtefact] = field(default_factory=list)
    gone: list[SeenArtefact] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tracked: int = 0

    @property
    def any(self) -> bool:
        return bool(self.new or self.changed or self.gone)

    def lines(self) -> list[str]:
        if not self.any:
            head = f"watch-exchange: {self.target}: no change; {self.tracked} tracked"
        else:
            head = (
                f"watch-exchange: {self.target}: {len(self.new)} new, {len(self.changed)}"
                f" changed, {len(self.gone)} gone; {self.tracked} tracked"
            )
        out = [head]
        for label, items in (("new", self.new), ("changed", self.changed)):
            out += [
                f"  {label:<8} {a.path} ({a.size} bytes, sha256 {a.sha256[:12]})" for a in items
            ]
        out += [f"  {'gone':<8} {a.path}" for a in self.gone]
        out += [f"  {'waiting':<8} {p} (still being written; next run)" for p in self.waiting]
        out += [f"  {'skipped':<8} {p}" for p in self.skipped]
        return out


class ExchangeWatcher:
    """Records the artefacts addressed to one target; `check()` once, or `run()` until stopped."""

    def __init__(
        self,
        layout: Layout,
        target: str,
        *,
        quiet: float = 1.0,
        source: EventSource | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.layout = layout
        self.target = check_target(target)
        self.quiet = quiet
        self.out = out
        self.scanner = StableScanner(quiet=quiet, settle=quiet, check="bytes")
        self.loop = WatchLoop(
            source, quiet=quiet, max_delay=max(5.0, quiet), rescan=300.0, accept=self.relevant
        )
        self._told: set[str] = set()
        # the state is a file dep of the quilt: a scheduled run waits for a build, never races it
        self.lock = FoundryLock(layout.lock_file, purpose=f"watch-exchange {target}")

    def relevant(self, path: Path) -> bool:
        try:
            path.relative_to(self.layout.exchange)
        except ValueError:
            return False
        return not self.layout.is_owned_output(path)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    def _say(self, lines: list[str]) -> None:
        stream = self.out or sys.stdout
        stream.write("\n".join(lines) + "\n")
        stream.flush()

    def load_state(self) -> WatcherState | None:
        """The last state, None if there is none; a corrupt one is set aside, not overwritten."""
        path = self.layout.watcher_state
        if not path.exists():
            return None
        try:
            state = WatcherState.model_validate(
                safe_read.read_json(path, max_bytes=_STATE_MAX_BYTES)
            )
        except (safe_read.ReadError, ValidationError) as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)
            reason = exc.problem.reason if isinstance(exc, safe_read.ReadError) else "invalid"
            print(
                f"watch-exchange: {self._rel(path)} {reason}; moved it to {aside.name}"
                " and started afresh",
                file=sys.stderr,
            )
            return None
        if state.target != self.target:
            raise FoundryError(
                f"{self._rel(path)}: target: records {state.target!r}, not {self.target!r};"
                f" run with --target {state.target} or remove the file to start afresh"
            )
        return state

    def check(self, *, wait: float = 0.0) -> ExchangeDiff:
        """Scan (waiting up to `wait` seconds for files still being written) and record the state."""
        scan = self.scanner.scan(addressed_to(self.layout, self.target))
        deadline = time.monotonic() + wait
        while scan.pending and scan.retry_after is not None:
            pause = min(scan.retry_after, deadline - time.monotonic())
            if pause <= 0:
                break
            time.sleep(pause)
            scan = self.scanner.scan(addressed_to(self.layout, self.target))
        with self.lock:
            return self._record([self._rel(p) for p in scan.pending])

    def _record(self, pending: list[str]) -> ExchangeDiff:
        now = utc_now()
        state = self.load_state()
        before = {a.path: a for a in state.artefacts} if state is not None else {}
        diff = ExchangeDiff(self.target)
        kept: dict[str, SeenArtefact] = {}
        for path, seen in sorted(self.scanner.snapshot.items()):
            rel = self._rel(path)
            if seen.kind != "regular" or seen.sha256 is None:
                diff.skipped.append(f"{rel}: is a {seen.kind}, not a regular file; not recorded")
                continue
            old = before.get(rel)
            entry = SeenArtefact(
                path=rel,
                sha256=seen.sha256,
                size=seen.size,
                first_seen=old.first_seen if old is not None else now,
                last_seen=now,
            )
            kept[rel] = entry
            if old is None:
                diff.new.append(entry)
            elif old.sha256 != entry.sha256:
                diff.changed.append(entry)
        for rel, old in before.items():
            if rel in kept:
                continue
            if rel in pending:
                # being rewritten: keep what we knew until the new bytes are complete
                kept[rel] = old
            else:
                diff.gone.append(old)
        diff.waiting = pending
        diff.tracked = len(kept)
        write_json_atomic(
            self.layout.watcher_state,
            WatcherState(
                schema_version=1,
                target=self.target,
                updated_at=now,
                artefacts=sorted(kept.values(), key=lambda a: a.path),
            ),
        )
        return diff

    def run(self, *, interval: float = 300.0) -> int:
        """Record on every settled change and every `interval` seconds, until stopped; returns 0."""
        self.loop.rescan = interval
        with contextlib.suppress(KeyboardInterrupt):
            self.loop.run([WatchRoot(self.layout.exchange)], self._cycle)
        return 0

    def _cycle(self, wake: Wake) -> float | None:
        diff = self.check()
        # say each skipped or waiting file once, not on every cycle
        diff.skipped = [s for s in diff.skipped if s not in self._told]
        diff.waiting = [w for w in diff.waiting if w not in self._told]
        self._told |= set(diff.skipped) | set(diff.waiting)
        if wake.trigger == "start" or diff.any or diff.skipped or diff.waiting:
            self._say(diff.lines())
        return self.quiet if self.scanner.pending else None

    def stop(self) -> None:
        self.loop.stop()
