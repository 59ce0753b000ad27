"""What each cache buys the warm watcher: a new order's latency with one cache turned off.

    python -m bench.watch_caches [--n 1000] [--rounds 3] [--drops 3] [--only name,name]
    python -m bench.watch_caches --n 10000 --project PATH   # in place, on a built W(10,000)
    python -m bench.watch_caches --n 10000 --project PATH --only "" --against OLD_TREE

`python -m bench.caches` times `doit` runs; the caches a watcher keeps between its
cycles (`GraphWatcher.KEPT`, `caches.WHOLE`, `caches.PROCESS`) serve its cycles
instead, so each is measured here the way the suite's watch figure is: a built W(N)
is copied per setting, a `toyfoundry watch` per setting starts on its copy with the
cache turned off (`TOYFOUNDRY_NO_CACHE`) and lives through the whole run, and new
orders are dropped one at a time, each timed until its report and export partition
exist. Drops interleave the settings (the same new order for each in turn), so a busy
host slows them alike; beside the latency, the watcher's CPU time for the whole cycle
(from /proc), which a busy host moves less. Prints a Markdown table: per setting, the
medians and their ratios to all caches on (1.10 = turning it off costs 10%).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import watching, workload
from bench.suite import doit, make_project

DEFAULT = "entry_points,frontiers,plan_record,parsed"


def _cpu(pid: int) -> float:
    """CPU seconds the process's main thread, where the watcher's cycles run, has run so
    far: /proc's scheduler statistics, in nanoseconds (/proc/PID/stat counts 10 ms ticks).
    The pid is `env`'s, which becomes the watcher's own when it execs it."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def _start(project: Path, n: int, off: str, warmups: Sequence[int] = (0,)) -> watching.Session:
    # "@PATH": every cache on, the watcher run from the source tree at PATH (`--against`)
    env = f"PYTHONPATH={off[1:]}" if off.startswith("@") else f"TOYFOUNDRY_NO_CACHE={off}"
    cmd = ["env", env, sys.executable, "-m", "toyfoundry"]
    cmd += ["--root", str(project), "watch", "--quiet-period", "0.05"]
    session = watching.start(cmd, project)
    if not session.ready("watch: start", timeout=600):
        raise RuntimeError(f"watcher never started: {session.lines[-3:]}")
    watching.wait_idle(project, session)
    # a copy's first build re-reads what is indexed by inode, and the first order of each
    # recipe its recipe's chain links: not measured
    for k in warmups:
        watching.drop(project, session, n, k)
        watching.wait_idle(project, session)
    return session


def _first_new(project: Path, n: int) -> int:
    """The k after the last order n + k of W(n)'s sequence that the project holds: a new order
    there comes after every order of its recipe, as a new order does (one dropped into a
    gap would come before later orders of its recipe, which it makes stale)."""
    rng = random.Random(1)  # `workload.extra`'s sequence
    for index in range(n):
        workload.order(index, rng)
    orders = project / "exchange" / "orders"
    k = last = 0
    while k - last < 1_000:  # ids only grow along the sequence: a long run of absent ones ends it
        if (orders / f"{workload.order(n + k, rng)['order_id']}.json").exists():
            last = k + 1
        k += 1
    return last


def _drop(project: Path, session: watching.Session, n: int, k: int) -> tuple[float, float]:
    """(seconds to the order's report and partition, CPU seconds of the whole cycle)."""
    cpu = _cpu(session.proc.pid)
    wall = watching.drop(project, session, n, k)
    watching.wait_idle(project, session)
    return wall, _cpu(session.proc.pid) - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_caches", description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drops", type=int, default=3, help="drops per setting and round")
    parser.add_argument("--only", default=DEFAULT, help="comma-separated caches to turn off")
    parser.add_argument(
        "--project",
        type=Path,
        help="a built W(N) to drop into in place, one watcher at a time (for the big sizes,"
        " where a copy per setting is gigabytes): a watcher per setting and round, after"
        " a warm-up order per recipe",
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="with --project: also a watcher run from this source tree (an earlier"
        " checkout), all caches on, in the same rounds; its row reads @PATH",
    )
    args = parser.parse_args(argv)
    settings = ["", *[s for s in args.only.split(",") if s]]
    if args.against is not None:
        settings.append(f"@{args.against.resolve()}")
    if args.project is not None:
        return _report(
            args.n, settings, _in_place(args.project, args.n, settings, args.rounds, args.drops)
        )
    work = Path(tempfile.mkdtemp(prefix="toyfoundry-watch-caches-"))
    samples: dict[str, list[tuple[float, float]]] = {s: [] for s in settings}
    sessions: dict[str, watching.Session] = {}
    try:
        base = work / "base"
        make_project(base, args.n)
        doit(base).check()
        for setting in settings:
            project = work / f"p-{setting or 'on'}"
            shutil.copytree(base, project)  # mtimes kept: a no-op to start
            sessions[setting] = _start(project, args.n, setting)
        # every watcher lives through every round, as a watcher does: the caches it keeps
        # across cycles are what is measured
        for r in range(args.rounds):
            for k in range(1 + r * args.drops, 1 + (r + 1) * args.drops):
                for setting in settings:
                    project = work / f"p-{setting or 'on'}"
                    samples[setting].append(_drop(project, sessions[setting], args.n, k))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for session in sessions.values():
            watching.stop(session)
        shutil.rmtree(work, ignore_errors=True)
    return _report(args.n, settings, samples)
    return 0


def _in_place(
    project: Path, n: int, settings: list[str], rounds: int, drops: int
) -> dict[str, list[tuple[float, float]]]:
    samples: dict[str, list[tuple[float, float]]] = {s: [] for s in settings}
    k = _first_new(project, n)
    for r in range(rounds):
        for setting in settings:
            session = _start(project, n, setting, warmups=range(k, k + 3))
            k += 3
            try:
                for _ in range(drops):
                    samples[setting].append(_drop(project, session, n, k))
                    k += 1
            finally:
                watching.stop(session)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    return samples


def _report(n: int, settings: list[str], samples: dict[str, list[tuple[float, float]]]) -> int:
    on_wall = statistics.median(w for w, _ in samples[""])
    on_cpu = statistics.median(c for _, c in samples[""])
    head = "new order: latency, median s | off/on | CPU of its cycle, median s | off/on"
    print(f"\n| cache off (N = {n}) | {head} |")
    print("|---|---:|---:|---:|---:|")
    for setting in settings:
        wall = statistics.median(w for w, _ in samples[setting])
        cpu = statistics.median(c for _, c in samples[setting])
        print(
            f"| {setting or '(none: all on)'} | {wall:.3f} | {wall / on_wall:.2f}x"
            f" | {cpu:.3f} | {cpu / on_cpu:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
