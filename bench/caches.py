"""What each cache buys: every figure with all caches on and with one turned off, side by side.

    python -m bench.caches [--n 100] [--rounds 3] [--only name,name] [--full name,name]

For each round, for each setting (all on, then each cache of `toyfoundry.caches.NAMES`
off through `TOYFOUNDRY_NO_CACHE`, then all off), in turn: a fresh W(N) is written,
built (`full`), built once more untimed (a warm-up: the records a build keeps are
then those of this setting), built again with nothing to do (`noop`), then after
one new order (`new_order`), then a copy of it with every mtime and inode new, as a
CI checkout with a restored `.toyfoundry/` is (`fresh_copy`). With `--full`, only
the settings named there (and all on) build W(N) themselves; the others start
from a copy of this round's all-on build (copied right after it was built, mtimes
kept), which saves a full build each at N = 1,000. Rounds interleave the settings,
so a busy host slows them alike. Each figure is the median over the rounds of the
machine's busy CPU time while the child runs (user + system of every process, from
/proc/stat: `wait4` would leave out the build's workers), with the wall time beside
it; run it on a host doing nothing else. Projects are deleted when the run ends, not
between settings. Prints one JSON object and a Markdown table: per cache and figure,
the CPU time off over on (1.10 = turning it off costs 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import workload
from bench.runner import REPO, child_env, doit_cmd, run
from bench.suite import make_project

FIGURES = ("full", "noop", "new_order", "fresh_copy")


def _names() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", "from toyfoundry.caches import NAMES; print(','.join(NAMES))"],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return out.stdout.strip().split(",")


def _timed(cwd: Path, off: str) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one `doit` in `cwd` with the caches `off` turned off.

    The CPU is the machine's busy time while it runs (`Run.busy_s`), so a quiet host is
    needed: `wait4`'s rusage of doit leaves out its workers, which are the fork server's
    children and never its own, and with them the actions of a parallel build. Without
    /proc/stat, that rusage."""
    done = run(doit_cmd(), cwd, env={"TOYFOUNDRY_NO_CACHE": off} if off else None)
    if done.code != 0:
        raise RuntimeError(f"doit failed with {off or 'all caches on'}:\n{done.err[-2000:]}")
    cpu = done.busy_s if done.busy_s is not None else done.cpu_s
    assert cpu is not None
    return cpu, done.wall


def measure(
    n: int,
    rounds: int,
    settings: list[str],
    work: Path,
    full_only: bool = False,
    full: set[str] | None = None,
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Samples per setting and figure; `full` (None: every setting) builds W(n) itself."""
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        s: {f: [] for f in FIGURES} for s in settings
    }
    for r in range(rounds):
        base = work / f"base-{r}"
        for setting in settings:
            project = work / f"p-{r}-{setting or 'on'}"
            if full is None or setting in full or not setting or not base.exists():
                make_project(project, n)
                samples[setting]["full"].append(_timed(project, setting))
                if not setting and full is not None:
                    shutil.copytree(project, base, symlinks=True)
            else:
                shutil.copytree(base, project, symlinks=True)
            if not full_only:
                _timed(project, setting)  # warm-up: this setting's records, these inodes
                samples[setting]["noop"].append(_timed(project, setting))
                workload.extra(project, n)
                samples[setting]["new_order"].append(_timed(project, setting))
                copy = project.with_name(project.name + "-copy")
                shutil.copytree(project, copy, symlinks=True, copy_function=shutil.copyfile)
                samples[setting]["fresh_copy"].append(_timed(copy, setting))
                _set_aside(work, copy)
            _set_aside(work, project)
            print(f"round {r + 1}/{rounds} {setting or 'on'} done", file=sys.stderr, flush=True)
        _set_aside(work, base)
    return samples


def _set_aside(work: Path, path: Path) -> None:
    """Move a finished project into `work`'s trash, deleted with `work` when the run ends.

    Deleted between settings, each project slowed the next setting's builds: this
    machine's ext4 has no journal, and its inode allocator then walks past every inode
    freed in the last minutes for each file a build creates (see `suite.Options.discard`).
    The full build's CPU, all caches on, went 3.7, 5.7 and 6.3 s over three rounds of
    W(100). The run keeps every project until it ends: about 2 x 23 projects a round."""
    if path.exists():
        trash = work / "trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{len(os.listdir(trash))}-{path.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.caches", description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated caches (default: all)")
    parser.add_argument("--full-only", action="store_true", help="measure the full build alone")
    parser.add_argument(
        "--full",
        default=None,
        help="comma-separated settings that time a full build (default: every one)",
    )
    parser.add_argument("--out", default="", help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    names = [s for s in args.only.split(",") if s] or _names()
    settings = ["", *names, "all"]
    figures = ("full",) if args.full_only else FIGURES
    work = Path(tempfile.mkdtemp(prefix="toyfoundry-caches-"))
    try:
        full = None if args.full is None else {s for s in args.full.split(",") if s}
        samples = measure(args.n, args.rounds, settings, work, args.full_only, full)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {
        s: {
            f: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
            for f, v in figs.items()
            if v
        }
        for s, figs in samples.items()
    }
    result = json.dumps({"n": args.n, "rounds": args.rounds, "samples": samples, "median": med})
    print(result)
    if args.out:
        Path(args.out).write_text(result + "\n")
    print(f"\n| cache off | {' | '.join(f'{f} cpu s (off/on)' for f in figures)} |")
    print("|---|" + "---:|" * len(figures))
    for s in settings:
        cells = []
        for f in figures:
            if f not in med[s]:
                cells.append("-")
                continue
            cpu, wall = med[s][f]
            ratio = cpu / med[""][f][0]
            cells.append(f"{cpu:.2f} ({ratio:.2f}x; wall {wall:.2f})")
        print(f"| {s or '(none: all on)'} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
