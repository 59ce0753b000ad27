"""Two `doit` builds, a `toyfoundry watch` and a `toyfoundry mint`, started together on one foundry.

The foundry lock must serialize them (ledger records of different processes never
interleave), the dependency DB must keep every record (a build afterwards runs nothing)
and the outputs must be those of one uninterrupted build.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import IO

import orjson

from bench import workload
from tests.conftest import REPO, doit, executed, make_project
from tests.test_crash_loop import outputs
from toyfoundry.store.layout import Layout

ORDERS = 12
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def workload_project(dest: Path) -> Layout:
    layout = make_project(dest, orders=False)
    workload.write(layout.root, ORDERS)
    return layout


def start(args: list[str], root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=root,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


class Lines:
    """The lines a long-running process prints, gathered by a thread, waited on with a bound."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, test: Callable[[str], bool], timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if test(line)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, "waited in vain; got:\n" + "\n".join(self.lines)
                self._changed.wait(left)

    def text(self) -> str:
        self._thread.join(timeout=30)
        return "\n".join(self.lines)


def ledger_blocks(path: Path) -> list[tuple[str, str, str]]:
    """(run id, first time, last time) of each run of consecutive lines from one process."""
    blocks: list[tuple[str, str, str]] = []
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        run, at = record["run_id"], record["time"]
        if blocks and blocks[-1][0] == run:
            blocks[-1] = (run, blocks[-1][1], at)
        else:
            blocks.append((run, at, at))
    return blocks


def test_builds_a_watcher_and_a_mint_share_one_foundry(tmp_path: Path) -> None:
    reference = workload_project(tmp_path / "reference")
    extra = workload.extra(reference.root, ORDERS)
    assert doit(reference.root).code == 0

    layout = workload_project(tmp_path / "foundry")
    first_order = sorted(p.stem for p in layout.orders_dir.glob("*.json"))[0]
    toyfoundry = ["-m", "toyfoundry", "--root", str(layout.root)]
    watcher = start([*toyfoundry, "watch", "--quiet-period", "0.2", "--rescan", "2"], layout.root)
    watched = Lines(watcher.stdout)
    watch_err = Lines(watcher.stderr)
    try:
        # serial builds (`-n 0`): each build's ledger lines then come from one process, so
        # the check below sees any interleaving between builds (the workers of one parallel
        # build append side by side, each line whole: test_store_ledger.py)
        others = [
            start(["-m", "doit", "-n", "0"], layout.root),
            start(["-m", "doit", "-n", "0"], layout.root),
            start([*toyfoundry, "mint", first_order], layout.root),
        ]
        outs = [p.communicate(timeout=300) for p in others]
        assert [p.returncode for p in others] == [0, 0, 0], outs
        # the watcher builds in-process: its tasks show in its own output, not in the others
        watched.wait_for(lambda line: line.startswith("watch: start"))

        # a new order while the watcher is warm, and a third build racing it for the lock
        assert workload.extra(layout.root, ORDERS) == extra
        third = start(["-m", "doit", "-n", "0"], layout.root)
        outs.append(third.communicate(timeout=300))
        assert third.returncode == 0, outs[-1]
        watched.wait_for(lambda line: f"orders/{extra}.json" in line)
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=60)
    assert watcher.returncode == 0, watched.text() + watch_err.text()
    log = watched.text() + "\n" + watch_err.text()
    assert "Traceback" not in log and "FAILED" not in log, log
    assert "watch: stopped" in log

    # each order's tasks ran once across the two builds: the second waited, then found them
    # done (the global tasks may run again: a `toyfoundry mint` between them adds ledger lines,
    # and it drops its order's mint record, so the graph redoes that mint rather than trust it)
    runs = [{t for t in executed(out) if ":" in t} for out, _ in outs[:2]]
    assert not (runs[0] & runs[1]) - {f"mint:{first_order}"}, runs
    everything = "\n".join(err for _, err in outs) + log
    assert "waiting for the foundry lock (held by pid" in everything

    # no DB record lost: one more build has nothing to do
    again = doit(layout.root)
    assert again.code == 0 and executed(again.out) == [], again.out + again.err

    # serialized: a process's records never interleave with another's
    for ledger in (layout.mint_ledger, layout.ritual_ledger):
        blocks = ledger_blocks(ledger)
        overlapping = [(a, b) for a, b in pairwise(blocks) if a[2] > b[1]]
        assert overlapping == [], overlapping

    assert outputs(layout) == outputs(reference)
