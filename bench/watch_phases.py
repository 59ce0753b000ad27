"""Where a new order's cycle under the warm watcher spends its CPU, phase by phase.

    python -m bench.watch_phases PROJECT N [--drops 8] [--skip 2]

Drives `GraphWatcher.run_cycle` in process on a built W(N) (in place: each drop adds
an order after the project's last, `watch_caches._first_new`), handing each cycle the
path of the new order as its event would, and reads `time.process_time` around each
phase: the scan, the plan, what the change feeds, doit's start (to the mint's action),
the order's three actions, the global tasks' actions, and taking the new plan. The host
is shared, so CPU per phase is the figure to compare; wall time is printed beside it.
Prints the per-drop rows and the medians after the first `--skip` drops.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import workload
from bench.watch_caches import _first_new

ACTIONS = ("mint", "rituals", "report", "quilt", "export", "dashboard", "validate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_phases", description=__doc__)
    parser.add_argument("project", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--drops", type=int, default=8)
    parser.add_argument("--skip", type=int, default=2)
    args = parser.parse_args(argv)

    from toyfoundry.graph import tasks
    from toyfoundry.store.layout import Layout
    from toyfoundry.watch import graph_watcher as gw
    from toyfoundry.watch.observer import ScriptedSource

    marks: list[tuple[str, float]] = []

    def timed(owner: Any, attr: str, name: str) -> None:
        inner: Callable[..., Any] = getattr(owner, attr)

        @functools.wraps(inner)
        def wrapper(*a: Any, **k: Any) -> Any:
            marks.append((name + "<", time.process_time()))
            try:
                return inner(*a, **k)
            finally:
                marks.append((name + ">", time.process_time()))

        setattr(owner, attr, wrapper)

    watcher_cls = gw.GraphWatcher
    timed(watcher_cls, "_scan", "scan")
    timed(watcher_cls, "_current_plan", "plan")
    timed(gw, "affected_tasks", "affected")
    timed(gw, "run_graph", "doit")
    timed(watcher_cls, "_adopt", "adopt")
    for action in ACTIONS:
        timed(tasks, f"{action}_action", action)

    watcher = watcher_cls(
        Layout(args.project), source=ScriptedSource(), initial_build=False, out=sys.stderr
    )
    watcher.run_cycle("start")
    hinted = "hints" in inspect.signature(watcher.run_cycle).parameters
    k = _first_new(args.project, args.n)
    rows: list[dict[str, float]] = []
    for i in range(args.drops):
        order_id = workload.extra(args.project, args.n, k + i)
        hint = watcher.layout.orders_dir / f"{order_id}.json"
        marks.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        if hinted:
            watcher.run_cycle("event", [hint])
        else:  # a tree from before the watcher took its events' paths
            watcher.run_cycle("event")
        row = {"wall": time.perf_counter() - wall, "total": time.process_time() - cpu}
        opened: dict[str, float] = {}
        for name, at in marks:
            if name.endswith("<"):
                opened[name[:-1]] = at
            else:
                row[name[:-1]] = row.get(name[:-1], 0.0) + at - opened[name[:-1]]
        first = {name: at for name, at in reversed(marks)}
        if "report>" in first:
            row["to report"] = first["report>"] - cpu
        if "doit<" in first and "mint<" in first:
            row["doit start"] = first["mint<"] - first["doit<"]
        if "report>" in first and "quilt<" in first:
            row["doit between"] = first["quilt<"] - first["report>"]
        rows.append(row)
        print(i, {key: round(v * 1000) for key, v in row.items()}, file=sys.stderr)
    kept = rows[args.skip :] or rows
    keys = [key for key in rows[-1] if key not in ACTIONS or key in kept[-1]]
    print("| phase (CPU ms, median) | |\n|---|---:|")
    for key in keys:
        print(f"| {key} | {statistics.median(r.get(key, 0.0) for r in kept) * 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
