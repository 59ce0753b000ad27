"""The reference watcher: watchdog on exchange/, and a fresh `doit` process for each burst of events.

This is the watcher anyone writes first (`watchmedo shell-command ... doit`, or doit's
own `auto`, which forks a run per change): it pays for starting Python, importing
the graph and loading every task on every change. It ignores the foundry's own
outputs and temp files and debounces like ours, so the gap to `toyfoundry watch` is
the cost of a restart, not of sloppier event handling.

    python -m bench.restart_watcher PROJECT [--debounce 0.1]

Prints `ready` once watching and `ran <exit code> <seconds>` after each run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

OWNED = ("reports", "outbox")


class _Hint(FileSystemEventHandler):
    def __init__(self, exchange: Path) -> None:
        self.exchange = exchange
        self.pending = threading.Event()
        self.last = 0.0

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(str(raw))
            try:
                parts = path.relative_to(self.exchange).parts
            except ValueError:
                continue
            if parts and parts[0] in OWNED:
                continue
            if path.suffix != ".json" and not event.is_directory:
                continue
            self.last = time.monotonic()
            self.pending.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--debounce", type=float, default=0.1)
    args = parser.parse_args(argv)
    project = args.project.resolve()
    hint = _Hint(project / "exchange")
    observer = Observer()
    observer.schedule(hint, str(project / "exchange"), recursive=True)
    observer.start()
    print("ready", flush=True)
    try:
        while True:
            hint.pending.wait()
            while (quiet := time.monotonic() - hint.last) < args.debounce:
                time.sleep(args.debounce - quiet)
            hint.pending.clear()
            started = time.perf_counter()
            code = subprocess.run(
                [sys.executable, "-m", "doit"],
                cwd=project,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ).returncode
            print(f"ran {code} {time.perf_counter() - started:.3f}", flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        observer.stop()
        observer.join()


if __name__ == "__main__":
    sys.exit(main())
