"""The measurements: each figure and its reference taken in the same run, so a ratio cancels the machine.

Every wall time is `perf_counter` around a child process; peak memory is that child's
own `ru_maxrss` (from `wait4`), with the child running alone. Repeated figures
alternate ours and the reference round by round and keep the median.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import bare, watching, workload
from bench.runner import REPO, Run, doit_cmd, run, run_until

#: Sizes up to which the full build is also measured serially and on a RAM-backed filesystem.
DIAGNOSE_UP_TO = 1000
#: The size the scale figures compare every other size with.
SCALE_BASE = 1000
#: The figures a big size (`--big`, `--huge`) measures besides the full build's.
BIG_STEPS = ("noop", "floor")
#: What a no-op imports: doit's run command, the project's dodo and our `run`.
NOOP_IMPORTS = "import doit.doit_cmd, doit.cmd_run, toyfoundry.graph.dodo, toyfoundry.graph.run"
#: A RAM-backed filesystem (Linux's usual tmpfs), for the diagnostic build.
RAM_FS = Path("/dev/shm")

#: Every figure a size measures (the full-build ones alone with `--big`).
FIGURES = (
    "full_build_wall",
    "full_build_alfas_per_s",
    "full_build_peak_mb",
    "full_build_tree_pss_mb",
    "full_build_cpu_per_order",
    "full_build_cpu_bound_wall",
    "full_build_serial_wall",
    "full_build_ram_fs_alfas_per_s",
    "bytes_per_order",
    "noop_wall",
    "noop_wall_vs_json",
    "noop_wall_vs_foundry_db",
    "noop_vs_floor",
    "floor_start_import_wall",
    "floor_stat_wall",
    "floor_write_flush_per_artefact",
    "fresh_copy_tasks_executed",
    "fresh_copy_wall",
    "fresh_copy_vs_floor",
    "fresh_copy_after_wall",
    "lint_lines_per_s",
    "watch_new_order_median",
    "watch_new_order_p90",
    "new_order_wall",
    "new_order_vs_bare_noop",
    "new_order_import_wall",
    "dashboard_write_wall",
    "killed_half_rerun_share",
    "host_speed_spread",
)


@dataclass
class Figure:
    """One row of the results: our value, its reference, their ratio, and the target if any."""

    n: int
    figure: str
    value: float | None
    unit: str
    reference: str
    reference_value: float | None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.reference_value:
            self.ratio = self.value / self.reference_value


@dataclass
class Options:
    """How much to repeat: `quick` proves the suite works (make test), the rest measures."""

    work: Path
    quick: bool = False
    noop_repeats: int = 5
    new_orders: int = 5
    fresh_copies: int = 3
    drops: int = 10
    lint_repeats: int = 3
    #: both watchers debounce alike: `toyfoundry watch`'s default quiet period
    debounce: float = 0.05
    watch_cmd: list[str] = field(default_factory=lambda: [sys.executable, "-m", "toyfoundry"])
    log: Callable[[str], None] = print

    def discard(self, path: Path) -> None:
        """Set a finished project aside, to be deleted when the run ends (see `empty_trash`).

        Deleting thousands of files just before a measurement slows it on some
        filesystems: ext4 without a journal (this machine's disk) skips every inode
        freed in the last minutes when it allocates one, so each file a build then
        creates walks past all of them. A rename frees nothing.
        """
        if not path.exists():
            return
        trash = self.work / "trash"
        trash.mkdir(parents=True, exist_ok=True)
        path.rename(trash / f"{len(os.listdir(trash))}-{path.name}")

    def empty_trash(self) -> None:
        shutil.rmtree(self.work / "trash", ignore_errors=True)

    @classmethod
    def for_run(cls, work: Path, quick: bool) -> Options:
        if quick:
            return cls(
                work, True, noop_repeats=1, new_orders=1, fresh_copies=1, drops=1, lint_repeats=1
            )
        return cls(work)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


#: Iterations of `host_probe`'s loop: about 0.1 s on the hosts the suite has run on.
PROBE_LOOPS = 1_000_000


def host_probe() -> float:
    """Seconds for a fixed piece of pure-Python work: how fast the host runs Python right now.

    A shared VM's speed can move by a factor of two or more within minutes. A ratio
    whose two sides were measured minutes apart moves with it, so the suite times this
    before every step and publishes the spread.
    """
    started = time.perf_counter()
    total = 0
    for i in range(PROBE_LOOPS):
        total += i * i % 7
    return time.perf_counter() - started


def make_project(dest: Path, n: int) -> list[str]:
    """W(n) plus the repo's pyproject and dodo: a project as a user has it."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ids = workload.write(dest, n)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy2(REPO / "dodo.py", dest / "dodo.py")
    return ids


def written_bytes(project: Path) -> tuple[int, int]:
    """Bytes of every file the build left (the foundry's state, reports and outbox), and of
    its chain.json files: what a build writes, each file counted once."""
    total = chains = 0
    for top in (
        project / ".toyfoundry",
        project / "exchange" / "reports",
        project / "exchange" / "outbox",
    ):
        for folder, _, names in os.walk(top):
            for name in names:
                size = os.lstat(os.path.join(folder, name)).st_size
                total += size
                if name == "chain.json":
                    chains += size
    return total, chains


def count_alfas(project: Path) -> int:
    """Alfas the build minted (the mint artefacts of every batch that was not a dry run)."""
    total = 0
    for path in sorted((project / ".toyfoundry" / "build").glob("*/mint.json")):
        doc = json.loads(path.read_bytes())
        if not doc.get("dry_run"):
            total += len(doc.get("alfas", []))
    return total


def doit(project: Path, *args: str, tree_memory: bool = False) -> Run:
    return run(doit_cmd(*args), project, tree_memory=tree_memory)


def _noop(project: Path) -> Run:
    done = doit(project).check()
    if done.executed:
        raise RuntimeError(f"not a no-op in {project}: ran {done.executed[:5]}")
    return done


class Measure:
    """All figures at one N, in an order that keeps each measurement's state clean."""

    def __init__(self, n: int, opts: Options) -> None:
        self.n = n
        self.opts = opts
        self.root = opts.work / f"n{n}"
        self.ours = self.root / "ours"
        self.figures: list[Figure] = []
        self.spec: dict[str, Any] = {}
        self.bare: dict[str, Path] = {}
        #: `host_probe` seconds, one before each step
        self.probes: list[float] = []

    def log(self, text: str) -> None:
        self.opts.log(f"[N={self.n}] {text}")

    def add(self, *, ratio_at_most: float | None = None, **kw: Any) -> Figure:
        """Record a figure; `ratio_at_most` is a target on the ratio, which then decides `met`."""
        figure = Figure(n=self.n, **kw)
        if ratio_at_most is not None:
            figure.met = figure.ratio is not None and figure.ratio <= ratio_at_most
        self.figures.append(figure)
        shown = "n/a" if figure.value is None else f"{figure.value:.4g}"
        ratio = "" if figure.ratio is None else f"  ratio {figure.ratio:.3g}"
        self.log(f"{figure.figure}: {shown} {figure.unit}{ratio}  {figure.note}")
        return figure

    def failed(self, figures: list[str], exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()
        note = "not measured: " + (reason[-1] if reason else type(exc).__name__)
        for name in figures:
            self.add(
                figure=name,
                value=None,
                unit="",
                reference="",
                reference_value=None,
                note=note[:300],
            )

    def attempt(self, figures: list[str], step: Callable[[], None]) -> None:
        """One step; a failure marks its figures unmeasured and the suite moves on."""
        self.probes.append(host_probe())
        try:
            step()
        except Exception as exc:  # a broken room must not hide the other figures
            self.failed(figures, exc)

    # ------------------------------------------------------------------ steps

    def all(self, big: bool = False, full_only: bool = False) -> list[Figure]:
        """Every figure; `big`: the full build, the no-op, the floor and the watch only (N >= 5,000);
        `full_only`: the full build's figures alone (the scale ratios in minutes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.probes.append(host_probe())
        built = self.full_build()
        if not built or full_only:
            self.probes.append(host_probe())
            self.host_speed()
            return self.figures
        if self.n <= DIAGNOSE_UP_TO and not big:
            self.attempt(["full_build_serial_wall"], self.full_build_serial)
            self.attempt(["full_build_ram_fs_alfas_per_s"], self.full_build_ram_fs)
        self.attempt(["noop_wall", "noop_wall_vs_json", "noop_wall_vs_foundry_db"], self.noop)
        self.attempt(
            [
                "noop_vs_floor",
                "floor_start_import_wall",
                "floor_stat_wall",
                "floor_write_flush_per_artefact",
            ],
            self.floor,
        )
        if not big:
            self.attempt(
                [
                    "fresh_copy_tasks_executed",
                    "fresh_copy_wall",
                    "fresh_copy_vs_floor",
                    "fresh_copy_after_wall",
                ],
                self.fresh_copy,
            )
            self.attempt(["lint_lines_per_s"], self.lint)
            self.attempt(["watch_new_order_median", "watch_new_order_p90"], self.watch)
            self.attempt(
                ["new_order_wall", "new_order_vs_bare_noop", "new_order_import_wall"],
                self.new_order,
            )
            self.attempt(["dashboard_write_wall"], self.dashboard_write)
            self.attempt(["killed_half_rerun_share"], self.killed_half)
        else:
            # last: its new orders stay in the project
            self.attempt(["watch_new_order_median", "watch_new_order_p90"], self.watch_in_place)
        self.probes.append(host_probe())
        self.host_speed()
        return self.figures

    def host_speed(self) -> None:
        """How much the host's speed moved during this size's steps (see `host_probe`)."""
        slowest, fastest = max(self.probes), min(self.probes)
        self.add(
            figure="host_speed_spread",
            value=slowest,
            unit="s",
            reference="the fastest of the same probes",
            reference_value=fastest,
            note=(
                f"diagnostic: a fixed pure-Python loop timed before each of {len(self.probes)}"
                f" steps (median {median(self.probes):.3f} s); figures and references taken"
                " minutes apart moved by up to this ratio"
            ),
        )

    def full_build(self) -> bool:
        self.log("full build (ours)")
        make_project(self.ours, self.n)
        try:
            ours = doit(self.ours, tree_memory=True).check()
            self.spec = bare.spec_of(self.ours)
        except Exception as exc:
            self.failed(list(FIGURES), exc)
            return False
        refs: dict[str, Run] = {}
        for backend in bare.BACKENDS:
            self.log(f"full build (bare doit, {backend} backend)")
            self.bare[backend] = bare.make(
                self.ours, self.root / f"bare-{backend}", self.spec, backend
            )
            refs[backend] = doit(self.bare[backend]).check()
        ref = refs["dbm"]
        tasks = bare.tasks_in(self.spec)
        shape = f"{tasks} tasks, {bare.file_deps_in(self.spec)} file deps"
        alfas = count_alfas(self.ours)
        self.add(
            figure="full_build_wall",
            value=ours.wall,
            unit="s",
            reference="bare doit graph (dbm), full build",
            reference_value=ref.wall,
            target="<= 4x reference",
            ratio_at_most=4,
            note=f"{shape}; {len(ours.executed)} tasks run; bare json {refs['json'].wall:.2f}"
            f" s, bare toyfoundry DB {refs['toyfoundry'].wall:.2f} s",
        )
        self.add(
            figure="full_build_alfas_per_s",
            value=alfas / ours.wall,
            unit="Alfas/s",
            reference="Alfas / bare doit full build (our actions free)",
            reference_value=alfas / ref.wall,
            target=">= 20,000 Alfas/s",
            met=alfas / ours.wall >= 20_000,
            note=f"{alfas} Alfas",
        )
        self.add(
            figure="full_build_peak_mb",
            value=ours.maxrss_mb,
            unit="MB",
            reference="bare doit graph (dbm), full build, peak RSS",
            reference_value=ref.maxrss_mb,
            target="<= 300 MB at N = 5,000",
            met=(ours.maxrss_mb <= 300) if self.n >= 5000 else None,
            note="the largest process's peak RSS (wait4)",
        )
        self.add(
            figure="full_build_tree_pss_mb",
            value=ours.tree_pss_mb,
            unit="MB",
            reference="our full build, the largest process's peak RSS",
            reference_value=ours.maxrss_mb,
            target="<= 300 MB at N = 10,000",
            met=(ours.tree_pss_mb <= 300) if self.n >= 10_000 and ours.tree_pss_mb else None,
            note="peak of the PSS summed over doit and its workers, sampled every 0.1 s from /proc",
        )
        self._cpu_figures(ours, ref)
        total, chains = written_bytes(self.ours)
        self.add(
            figure="bytes_per_order",
            value=total / self.n,
            unit="B",
            reference="of which chain.json files",
            reference_value=chains / self.n,
            note=f"{total} bytes in .toyfoundry/, exchange/reports/ and exchange/outbox/ after"
            f" the build, {chains} of them in chain.json files",
        )
        return True

    def _cpu_figures(self, ours: Run, ref: Run) -> None:
        """What the full build's CPU allows: the machine's busy core-seconds per order, ours
        and the bare graph's, and the wall a perfect schedule of ours would take on this
        machine's cores. That wall over the bare graph's is the lowest full-build ratio any
        scheduling of this much CPU can reach; under it only less CPU helps."""
        if ours.busy_s is None or ref.busy_s is None:
            note = "needs Linux's /proc/stat"
            for name in ("full_build_cpu_per_order", "full_build_cpu_bound_wall"):
                self.add(
                    figure=name, value=None, unit="", reference="", reference_value=None, note=note
                )
            return
        cores = os.cpu_count() or 1
        self.add(
            figure="full_build_cpu_per_order",
            value=ours.busy_s / self.n * 1000,
            unit="ms",
            reference="bare doit graph (dbm), full build, busy CPU per order",
            reference_value=ref.busy_s / self.n * 1000,
            note=f"diagnostic: the machine's busy core-seconds (user + system, /proc/stat)"
            f" during the build, over the orders: {ours.busy_s:.1f} s busy and"
            f" {ours.idle_s or 0:.1f} s idle or in I/O wait on {cores} cores",
        )
        self.add(
            figure="full_build_cpu_bound_wall",
            value=ours.busy_s / cores,
            unit="s",
            reference="bare doit graph (dbm), full build",
            reference_value=ref.wall,
            note=f"diagnostic: our build's busy CPU spread over {cores} cores with no wait,"
            f" the least wall it can take; 4x the bare graph needs at most"
            f" {4 * ref.wall * cores:.1f} core-seconds",
        )

    def full_build_serial(self) -> None:
        """The same build with `-n 0`: what the workers of a big build buy."""
        full = next(f for f in self.figures if f.figure == "full_build_wall")
        serial = self.root / "serial"
        self.log("full build (ours, -n 0)")
        make_project(serial, self.n)
        done = doit(serial, "-n", "0").check()
        self.add(
            figure="full_build_serial_wall",
            value=done.wall,
            unit="s",
            reference="our full build (its automatic workers)",
            reference_value=full.value,
            note=f"diagnostic; {len(done.executed)} tasks run in one process",
        )
        self.opts.discard(serial)

    def full_build_ram_fs(self) -> None:
        """The same build on a RAM-backed filesystem: how much of the wall is the disk's."""
        if not RAM_FS.is_dir():
            raise RuntimeError(f"no RAM-backed filesystem at {RAM_FS}")
        full = next(f for f in self.figures if f.figure == "full_build_alfas_per_s")
        project = RAM_FS / f"toyfoundry-bench-{os.getpid()}-n{self.n}"
        self.log(f"full build (ours, on {RAM_FS})")
        try:
            make_project(project, self.n)
            done = doit(project).check()
            alfas = count_alfas(project)
        finally:
            shutil.rmtree(project, ignore_errors=True)
        self.add(
            figure="full_build_ram_fs_alfas_per_s",
            value=alfas / done.wall,
            unit="Alfas/s",
            reference="our full build on the project's disk",
            reference_value=full.value,
            note=f"diagnostic ({RAM_FS}, {done.wall:.2f} s): the same build where creating"
            " and flushing a file costs no disk; the target is judged on the disk",
        )

    def noop(self) -> None:
        times: dict[str, list[float]] = {"ours": [], **{b: [] for b in self.bare}}
        order = list(times)
        for i in range(self.opts.noop_repeats):
            # rotate who goes first each round so drift (cache, thermal) falls on everyone
            for who in order[i % len(order) :] + order[: i % len(order)]:
                project = self.ours if who == "ours" else self.bare[who]
                times[who].append(_noop(project).wall)
        ours = median(times["ours"])
        reps = f"median of {self.opts.noop_repeats}"
        self.add(
            figure="noop_wall",
            value=ours,
            unit="s",
            reference="bare doit graph, default dbm backend, no-op",
            reference_value=median(times["dbm"]),
            target="<= 1.1x reference",
            ratio_at_most=1.1,
            note=reps,
        )
        self.add(
            figure="noop_wall_vs_json",
            value=ours,
            unit="s",
            reference="bare doit graph, json backend, no-op",
            reference_value=median(times["json"]),
            note=reps,
        )
        self.add(
            figure="noop_wall_vs_foundry_db",
            value=ours,
            unit="s",
            reference="bare doit graph on our SQLite DB and checker, no-op",
            reference_value=median(times["toyfoundry"]),
            note=reps,
        )

    def floor(self) -> None:
        """The least a no-op can cost (start Python, import, stat the graph) and the least a
        task's file can cost (write, flush, rename), on this disk in this run."""
        noop = next(f for f in self.figures if f.figure == "noop_wall")
        starts = []
        for _ in range(self.opts.noop_repeats):
            starts.append(run([sys.executable, "-c", NOOP_IMPORTS], self.ours).check().wall)
        start = median(starts)
        paths = self.root / "graph-paths.json"
        paths.write_text(json.dumps(sorted(bare.paths_in(self.spec))), encoding="utf-8")
        probe = [
            sys.executable,
            "-m",
            "bench.probes",
            "floor",
            str(self.ours),
            "--paths",
            str(paths),
        ]
        got = json.loads(run(probe, self.ours).check().out)
        reps = f"median of {self.opts.noop_repeats}"
        floor = start + got["stat_seconds"]
        self.add(
            figure="noop_vs_floor",
            value=noop.value,
            unit="s",
            reference="floor: start-up + import + stat of the graph's paths",
            reference_value=floor,
            target="<= 2.5x reference",
            ratio_at_most=2.5,
            note=f"start-up + import {start:.3f} s ({reps}), stat {got['stat_seconds']:.3f} s",
        )
        self.add(
            figure="floor_start_import_wall",
            value=start,
            unit="s",
            reference="our no-op",
            reference_value=noop.value,
            note=f"diagnostic, {reps}: python -c '{NOOP_IMPORTS}'",
        )
        self.add(
            figure="floor_stat_wall",
            value=got["stat_seconds"],
            unit="s",
            reference="our no-op",
            reference_value=noop.value,
            note=f"diagnostic: os.stat of the graph's {got['paths']} paths, best of 3",
        )
        full = next(f for f in self.figures if f.figure == "full_build_wall")
        files = sum(1 for _ in (self.ours / ".toyfoundry" / "build").glob("*/*.json"))
        self.add(
            figure="floor_write_flush_per_artefact",
            value=got["write_flush_seconds"] * 1000,
            unit="ms",
            reference="our full build's wall per build artefact",
            reference_value=(full.value or 0.0) * 1000 / max(1, files),
            note=f"diagnostic: temp file, write, fsync, rename of {got['artefact_bytes']} bytes"
            f" (the build's mean artefact), mean of {100}; the build wrote {files} artefacts",
        )

    def fresh_copy(self) -> None:
        executed: list[int] = []
        first: list[float] = []
        second: list[float] = []
        noops: list[float] = []
        starts: list[float] = []
        hashing: dict[str, Any] = {}
        deps = self.root / "graph-deps.json"
        deps.write_text(json.dumps(sorted(bare.deps_in(self.spec))), encoding="utf-8")
        for i in range(self.opts.fresh_copies):
            copy = self.root / f"fresh-{i}"
            self.opts.discard(copy)
            # copyfile, not copy2: every file gets a new mtime, as in a fresh CI checkout
            shutil.copytree(self.ours, copy, copy_function=shutil.copyfile)
            noops.append(_noop(self.ours).wall)
            # the floor's start-up in the same minutes as the copy's run: the host's speed
            # drifts between steps (see `host_speed`)
            starts.append(run([sys.executable, "-c", NOOP_IMPORTS], self.ours).check().wall)
            if i == 0:  # what the copy's run must read and hash at least, on the same bytes
                probe = [sys.executable, "-m", "bench.probes", "hash", str(copy)]
                probe += ["--paths", str(deps)]
                hashing = json.loads(run(probe, self.ours).check().out)
            done = doit(copy).check()
            executed.append(len(done.executed))
            first.append(done.wall)
            second.append(doit(copy).check().wall)
            self.opts.discard(copy)
        reps = f"median of {self.opts.fresh_copies} copies"
        tasks = bare.tasks_in(self.spec)
        self.add(
            figure="fresh_copy_tasks_executed",
            value=float(median(executed)),
            unit="tasks",
            reference="tasks in the graph",
            reference_value=float(tasks),
            target="0 tasks",
            met=max(executed) == 0,
            note=reps,
        )
        noop = median(noops)
        self.add(
            figure="fresh_copy_wall",
            value=median(first),
            unit="s",
            reference="our no-op",
            reference_value=noop,
            note=f"diagnostic, {reps}; the target is against the copy's floor, next row",
        )
        start = median(starts)
        stat = next((f.value for f in self.figures if f.figure == "floor_stat_wall"), None)
        if stat is not None and hashing:
            floor = start + stat + hashing["hash_seconds"]
            self.add(
                figure="fresh_copy_vs_floor",
                value=median(first),
                unit="s",
                reference="floor: start-up + import + stat + read and sha256 the graph's deps",
                reference_value=floor,
                target="<= 2x reference",
                ratio_at_most=2,
                note=f"{reps}; start-up + import {start:.3f} s (beside each copy), stat"
                f" {stat:.3f} s, read and"
                f" hash {hashing['hash_seconds']:.3f} s ({hashing['files']} files,"
                f" {hashing['bytes'] / 1e6:.1f} MB, ledgers as the check samples them)",
            )
        self.add(
            figure="fresh_copy_after_wall",
            value=median(second),
            unit="s",
            reference="our no-op",
            reference_value=noop,
            target="<= 1.1x reference",
            ratio_at_most=1.1,
            note=f"{reps}: the run right after the copy's first",
        )

    def lint(self) -> None:
        probe = run(
            [
                sys.executable,
                "-m",
                "bench.probes",
                "lint",
                str(self.ours),
                "--repeats",
                str(self.opts.lint_repeats),
            ],
            self.ours,
        ).check()
        got = json.loads(probe.out)
        wc = sum(
            p.read_bytes().count(b"\n")
            for p in (self.ours / ".toyfoundry" / "telemetry").glob("*.jsonl")
        )
        rate = got["lines"] / got["seconds"] if got["seconds"] else None
        self.add(
            figure="lint_lines_per_s",
            value=rate,
            unit="lines/s",
            reference="orjson.loads of every ledger line (parse floor)",
            reference_value=got["floor_lines"] / got["floor_seconds"],
            target=">= 100,000 lines/s",
            met=rate is not None and rate >= 100_000,
            note=f"{got['lines']} lines checked (wc -l: {wc}), {got['bytes']} bytes, "
            f"{got['findings']} findings, best of {self.opts.lint_repeats}",
        )

    def watch(self) -> None:
        """Alternate our watcher and the restart-per-event one, same debounce, same new orders."""
        q = self.opts.debounce
        ours_cmd = [*self.opts.watch_cmd, "--root", "{p}", "watch", "--quiet-period", str(q)]
        ref_cmd = [sys.executable, "-m", "bench.restart_watcher", "{p}", "--debounce", str(q)]
        watchers = {"ours": (ours_cmd, "watch: start"), "restart": (ref_cmd, "ready")}
        drops: dict[str, list[float]] = {"ours": [], "restart": []}
        per = max(1, self.opts.drops // 2)
        # order n is each copy's unmeasured warm-up: a copied project has new inodes, so
        # its first build re-reads what the foundry indexes by inode (the ledgers)
        rounds = [("ours", "restart", 1, per), ("restart", "ours", 1 + per, self.opts.drops - per)]
        for first, second, k, count in rounds:
            for who in (first, second):
                if count <= 0:
                    continue
                project = self.root / f"watch-{who}"
                warmup = not project.exists()
                if warmup:
                    shutil.copytree(self.ours, project)  # copy2: mtimes kept, a no-op to start
                cmd, ready = watchers[who]
                cmd = [part.replace("{p}", str(project)) for part in cmd]
                drops[who] += self._watch_drops(project, cmd, ready, k, count, warmup)
        for who in drops:
            self.opts.discard(self.root / f"watch-{who}")
        ours, ref = drops["ours"], drops["restart"]
        note = f"{len(ours)} drops each; both debounce {q} s (our default quiet period)"
        self._watch_figures(ours, ref, note)

    def watch_in_place(self) -> None:
        """`toyfoundry watch` on the built project itself, no restarting reference: at the big
        sizes a copy per watcher would be gigabytes and a restart per drop a minute's wait.
        The first drop of each recipe reads back its recipe's chain links (what a watcher
        keeps from then on), so the figure is the median of the drops after a warm-up."""
        q = self.opts.debounce
        cmd = [*self.opts.watch_cmd, "--root", str(self.ours), "watch", "--quiet-period", str(q)]
        drops = self._watch_drops(self.ours, cmd, "watch: start", 1, self.opts.drops, True)
        note = f"{len(drops)} drops after one warm-up; debounce {q} s; on the built project"
        self._watch_figures(drops, None, note)

    def _watch_figures(self, ours: list[float], ref: list[float] | None, note: str) -> None:
        """The watch's median (target 0.25 s, and 0.3x the restarting watcher when there is
        one) and p90."""
        name = "watcher that restarts doit per event"
        f = self.add(
            figure="watch_new_order_median",
            value=median(ours),
            unit="s",
            reference=f"{name}, median" if ref else "",
            reference_value=median(ref) if ref else None,
            target="<= 0.25 s and <= 0.3x reference" if ref else "<= 0.25 s",
            ratio_at_most=0.3 if ref else None,
            note=note,
        )
        f.met = bool(f.met if ref else True) and median(ours) <= 0.25
        self.add(
            figure="watch_new_order_p90",
            value=p90(ours),
            unit="s",
            reference=f"{name}, p90" if ref else "",
            reference_value=p90(ref) if ref else None,
            note=note,
        )

    def _watch_drops(
        self, project: Path, cmd: list[str], ready: str, first: int, count: int, warmup: bool
    ) -> list[float]:
        self.log(f"watch: {count} drops, {' '.join(cmd[2:])}")
        session = watching.start(cmd, project)
        try:
            if not session.ready(ready, timeout=600):
                raise RuntimeError(f"watcher never said {ready!r}: {session.lines[-3:]}")
            watching.wait_idle(project, session)
            if warmup:
                watching.drop(project, session, self.n, 0)
                watching.wait_idle(project, session)
            out = []
            for k in range(first, first + count):
                out.append(watching.drop(project, session, self.n, k))
                watching.wait_idle(project, session)
            return out
        finally:
            watching.stop(session)

    def new_order(self) -> None:
        walls: list[float] = []
        noops: list[float] = []
        imports: list[dict[str, Any]] = []
        # orders the watchers used are on their own copies; ours continues from N
        for k in range(self.opts.new_orders):
            workload.extra(self.ours, self.n, k)
            done = doit(self.ours).check()
            walls.append(done.wall)
            noops.append(_noop(self.ours).wall)
            probe = [sys.executable, "-m", "bench.probes", "imports", str(self.ours)]
            imports.append(json.loads(run(probe, self.ours).check().out))
        noop = median(noops)
        self.add(
            figure="new_order_wall",
            value=median(walls),
            unit="s",
            reference="our no-op right after",
            reference_value=noop,
            target="<= 1.5x reference",
            ratio_at_most=1.5,
            note=f"median of {self.opts.new_orders}; ran {len(done.executed)} tasks",
        )
        bare_noop = next((f for f in self.figures if f.figure == "noop_wall"), None)
        if bare_noop is not None and bare_noop.reference_value:
            self.add(
                figure="new_order_vs_bare_noop",
                value=median(walls),
                unit="s",
                reference="bare doit graph's no-op (the noop step's dbm median)",
                reference_value=bare_noop.reference_value,
                target="<= 1.5x reference",
                ratio_at_most=1.5,
                note="the bare no-op was measured in the noop step, minutes before",
            )
        last = imports[-1]
        pydantic = median([got["pydantic_seconds"] for got in imports])
        self.add(
            figure="new_order_import_wall",
            value=median([got["seconds"] for got in imports]),
            unit="s",
            reference="our no-op right after",
            reference_value=noop,
            note=f"diagnostic, median of {len(imports)} fresh processes: importing what a new"
            f" order's tasks add to a no-op's imports, {last['modules']} modules; pydantic's"
            f" {last['pydantic_modules']} take {pydantic:.3f} s, ours {last['ours']}",
        )

    def dashboard_write(self) -> None:
        """Writing the dashboard page for N orders against the build after a new order."""
        new_order = next(f for f in self.figures if f.figure == "new_order_wall")
        probe = [sys.executable, "-m", "bench.probes", "dashboard", str(self.ours)]
        got = json.loads(run(probe, self.ours).check().out)
        self.add(
            figure="dashboard_write_wall",
            value=got["seconds"],
            unit="s",
            reference="our build after a new order",
            reference_value=new_order.value,
            target="<= 0.1x reference",
            ratio_at_most=0.1,
            note=f"best of 3 in one process: draw and write the page ({got['bytes'] / 1e6:.1f}"
            f" MB, {got['orders']} orders); reading the rollup apart (the build shares the"
            f" quilt's parse) {got['load_seconds']:.3f} s; the first try, with imports and"
            f" the read, {got['first_seconds']:.3f} s",
        )

    def killed_half(self) -> None:
        tasks = bare.tasks_in(self.spec)
        project = self.root / "killed"
        make_project(project, self.n)
        ours = self._kill_and_resume(project, tasks)
        ref_project = self.root / "killed-bare"
        self.opts.discard(ref_project)
        bare.make(self.ours, ref_project, self.spec, "dbm")
        # a short sleep per bare task, so "half" can be hit on a graph of trivial actions
        ref = self._kill_and_resume(ref_project, tasks, {"BENCH_BARE_SLEEP": "0.002"})
        self.opts.discard(project)
        self.opts.discard(ref_project)
        self.add(
            figure="killed_half_rerun_share",
            value=ours[0],
            unit="%",
            reference="bare doit graph (dbm) killed the same way",
            reference_value=ref[0],
            target="<= 5%",
            met=ours[0] <= 5,
            note=f"SIGKILL after {ours[1]} of {tasks} tasks finished; resume re-ran "
            f"{ours[2]} of them ({ours[3]} run in all); bare re-ran {ref[2]} of "
            f"{ref[1]}",
        )

    def _kill_and_resume(
        self, project: Path, tasks: int, env: dict[str, str] | None = None
    ) -> tuple[float, int, int, int]:
        """SIGKILL a full build once half the tasks started; % of the finished ones the resume re-runs."""
        half = tasks // 2
        killed = run_until(doit_cmd(), project, lambda seen: len(seen) > half, env=env)
        if not killed.killed:
            raise RuntimeError("the build finished before it could be killed at half")
        finished = set(killed.seen[:-1])  # the last one was still running when killed
        resumed = run(doit_cmd(), project, env=env).check()
        rerun = finished & set(resumed.executed)
        return (
            100.0 * len(rerun) / max(1, len(finished)),
            len(finished),
            len(rerun),
            len(resumed.executed),
        )


def scale_figures(figures: list[Figure]) -> list[Figure]:
    """Each size against N = 1,000 of the same run: Alfas/s, bytes per order, no-op per order."""
    by = {(f.n, f.figure): f for f in figures}
    out: list[Figure] = []
    sizes = sorted({f.n for f in figures if f.n != SCALE_BASE})
    for n in sizes:
        for figure, name, target, better_high in (
            ("full_build_alfas_per_s", "alfas_per_s_vs_1000", 0.9, True),
            ("bytes_per_order", "bytes_per_order_vs_1000", 1.1, False),
        ):
            ours, base = by.get((n, figure)), by.get((SCALE_BASE, figure))
            if ours is None or base is None or ours.value is None or base.value is None:
                continue
            ratio = ours.value / base.value if base.value else None
            met = None
            if ratio is not None and n > SCALE_BASE:
                met = ratio >= target if better_high else ratio <= target
            out.append(
                Figure(
                    n=n,
                    figure=name,
                    value=ours.value,
                    unit=ours.unit,
                    reference=f"{figure} at N = 1,000, this run",
                    reference_value=base.value,
                    target=f"{'>=' if better_high else '<='} {target}x reference"
                    if n > SCALE_BASE
                    else None,
                    met=met,
                )
            )
        noop, base = by.get((n, "noop_wall")), by.get((SCALE_BASE, "noop_wall"))
        if noop and base and noop.value and base.value:
            out.append(
                Figure(
                    n=n,
                    figure="noop_per_order_vs_1000",
                    value=noop.value / n * 1e6,
                    unit="us",
                    reference="no-op per order at N = 1,000, this run",
                    reference_value=base.value / SCALE_BASE * 1e6,
                    note="diagnostic: flat when nothing grows faster than the orders",
                )
            )
    return out


def machine() -> dict[str, Any]:
    import os
    import platform
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "doit": version("doit"),
        # other work on the machine is noise the ratios cancel only in part: say how much
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def results(figures: list[Figure], started: float) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "seconds": round(time.monotonic() - started, 1),
        "results": [asdict(f) for f in figures],
    }
