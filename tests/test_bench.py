"""The benchmark suite works: a tiny run publishes every figure, and its references mirror our graph.

No timing is asserted here: speed and memory are measured as ratios by `make bench`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bare, workload
from bench.runner import TreeMemory, machine_cpu, run
from bench.suite import Figure, make_project, scale_figures
from tests.conftest import REPO, doit

FIGURES = {
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
    "new_order_wall",
    "new_order_vs_bare_noop",
    "new_order_import_wall",
    "dashboard_write_wall",
    "watch_new_order_median",
    "watch_new_order_p90",
    "fresh_copy_tasks_executed",
    "fresh_copy_wall",
    "fresh_copy_vs_floor",
    "fresh_copy_after_wall",
    "killed_half_rerun_share",
    "lint_lines_per_s",
    "host_speed_spread",
}
FIELDS = {"n", "figure", "value", "unit", "reference", "reference_value", "ratio", "target", "met"}


def test_workload_is_deterministic_and_extra_orders_continue_it(tmp_path: Path) -> None:
    a = workload.write(tmp_path / "a", 8, seed=3)
    b = workload.write(tmp_path / "b", 10, seed=3)
    assert a == b[:8]
    assert workload.extra(tmp_path / "a", 8, 1, seed=3) == b[9]
    ours = (tmp_path / "a" / "exchange" / "orders" / f"{b[9]}.json").read_bytes()
    assert ours == (tmp_path / "b" / "exchange" / "orders" / f"{b[9]}.json").read_bytes()
    assert not list((tmp_path / "a" / "exchange" / "orders").glob(".*"))  # no temp file left
    assert workload.alfas(10) == 3 * 48 + 4 * 96


@pytest.mark.slow
def test_bare_graph_mirrors_ours(tmp_path: Path) -> None:
    """Same tasks with the same file deps on files of the same sizes; only the actions differ."""
    ours = tmp_path / "ours"
    make_project(ours, 6)
    built = doit(ours)
    assert built.code == 0, built.err
    spec = bare.spec_of(ours)
    mirror = bare.make(ours, tmp_path / "bare", spec, "dbm")
    assert bare.spec_of(mirror)["creators"] == spec["creators"]
    for rel in bare.paths_in(spec):
        if (ours / rel).is_file():
            assert (mirror / rel).stat().st_size == (ours / rel).stat().st_size
    first, again = doit(mirror), doit(mirror)
    assert first.code == 0 and again.code == 0
    ran = {line for line in first.out.splitlines() if line.startswith(".  ")}
    assert len(ran) == bare.tasks_in(spec)
    assert not any(line.startswith(".  ") for line in again.out.splitlines())


@pytest.mark.slow
def test_quick_suite_publishes_every_figure(tmp_path: Path) -> None:
    out, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    md.write_text(
        "# Benchmarks\n\nprose above\n\n<!-- bench:table:start -->\nold\n"
        "<!-- bench:table:end -->\n\nprose below\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["--quick", "--n", "6", "--out", out, "--md", md, "--work", tmp_path / "work"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [path] = out.glob("*.json")
    doc = json.loads(path.read_text())
    assert set(doc["machine"]) >= {"cpu", "cores", "python", "platform"}
    rows = {r["figure"]: r for r in doc["results"]}
    assert set(rows) == FIGURES
    assert all(set(r) >= FIELDS and r["n"] == 6 for r in doc["results"])
    watch_landed = importlib.util.find_spec("toyfoundry.commands.watch") is not None
    for name, row in rows.items():
        if name.startswith("watch_") and not watch_landed:
            continue
        if name == "full_build_ram_fs_alfas_per_s" and not Path("/dev/shm").is_dir():
            continue  # a diagnostic that needs a RAM-backed filesystem
        if name == "full_build_tree_pss_mb" and not TreeMemory.available():
            continue  # a diagnostic that needs Linux's /proc
        if name.startswith("full_build_cpu_") and machine_cpu() is None:
            continue  # a diagnostic that needs Linux's /proc/stat
        assert row["value"] is not None, f"{name}: {row['note']}"
        assert row["reference_value"] is not None, name
    # facts, not timings: a fresh copy is checked, not rebuilt; a resumed build keeps its work
    assert rows["fresh_copy_tasks_executed"]["value"] == 0
    assert rows["killed_half_rerun_share"]["reference_value"] > 50
    # projects set aside during the run are deleted when it ends
    assert not (tmp_path / "work" / "trash").exists()
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nprose above") and text.endswith("prose below\n")
    assert "old" not in text
    assert sum(line.startswith("| 20") for line in text.splitlines()) == len(doc["results"])


@pytest.mark.skipif(not TreeMemory.available(), reason="needs Linux's /proc")
def test_tree_memory_counts_the_workers(tmp_path: Path) -> None:
    """A parent and its forked worker each touch 40 MB of their own: the tree holds both.

    `wait4`'s peak is not compared: on Linux a child's peak starts from its parent's
    high-water mark, kept through `exec`, so under a long pytest run it measures pytest.
    """
    script = (
        "import os, time\n"
        "a = bytearray(40 * 2**20)\n"
        "pid = os.fork()\n"
        "b = bytearray(40 * 2**20)\n"
        "time.sleep(1.0)\n"
        "os._exit(0) if pid == 0 else os.waitpid(pid, 0)\n"
    )
    done = run([sys.executable, "-c", script], tmp_path, tree_memory=True).check()
    assert done.tree_pss_mb is not None
    assert done.tree_pss_mb >= 100  # 3 x 40 MB written, a's pages shared by the two


def test_scale_figures_compare_each_size_with_n_1000_of_the_same_run() -> None:
    def row(n: int, figure: str, value: float) -> Figure:
        return Figure(n=n, figure=figure, value=value, unit="", reference="", reference_value=1.0)

    figures = [
        row(1000, "full_build_alfas_per_s", 5000.0),
        row(1000, "bytes_per_order", 100.0),
        row(1000, "noop_wall", 0.5),
        row(10_000, "full_build_alfas_per_s", 4000.0),
        row(10_000, "bytes_per_order", 105.0),
        row(10_000, "noop_wall", 5.0),
    ]
    got = {f.figure: f for f in scale_figures(figures)}
    assert got["alfas_per_s_vs_1000"].ratio == pytest.approx(0.8)
    assert got["alfas_per_s_vs_1000"].met is False
    assert got["bytes_per_order_vs_1000"].ratio == pytest.approx(1.05)
    assert got["bytes_per_order_vs_1000"].met is True
    assert got["noop_per_order_vs_1000"].ratio == pytest.approx(1.0)
    assert {f.n for f in got.values()} == {10_000}


def test_the_big_sizes_time_the_watcher_on_the_built_project(tmp_path: Path) -> None:
    """At N >= 5,000 the watch figure is taken in place, with no restarting reference."""
    from bench import suite

    measure = suite.Measure(6, suite.Options.for_run(tmp_path / "work", quick=True))
    make_project(measure.ours, 6)
    suite.doit(measure.ours).check()
    measure.watch_in_place()
    rows = {f.figure: f for f in measure.figures}
    median = rows["watch_new_order_median"]
    assert median.value is not None and median.value > 0 and median.reference_value is None
    assert median.met is (median.value <= 0.25)
    # the warm-up and the measured drop are the project's own orders now, with their reports
    assert len(list((measure.ours / "exchange" / "reports").glob("*.json"))) == 6 + 2


@pytest.mark.skipif(machine_cpu() is None, reason="needs Linux's /proc/stat")
def test_busy_cpu_counts_what_the_child_spent(tmp_path: Path) -> None:
    """The machine's busy time over a run covers the child's own CPU (and, unlike `wait4`'s
    rusage of doit, that of workers it does not reap itself)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = run(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass",
        ],
        tmp_path,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert done.code == 0 and done.busy_s is not None and done.idle_s is not None
    assert spent >= 0.3
    assert done.busy_s >= spent - 0.05  # /proc/stat counts in ticks of 10 ms


def test_cache_runs_set_projects_aside_until_the_end(tmp_path: Path) -> None:
    """`bench.caches` measures each setting on a fresh project and deletes none of them
    between settings (a deletion slows the next build's file creation on some disks)."""
    from bench import caches

    work = tmp_path / "work"
    work.mkdir()
    samples = caches.measure(4, 1, ["", "paths"], work, full_only=True)
    for setting in ("", "paths"):
        [(cpu, wall)] = samples[setting]["full"]
        assert cpu > 0 and wall > 0
    assert sorted(p.name for p in work.iterdir()) == ["trash"]
    assert sorted(p.name.split("-", 1)[1] for p in (work / "trash").iterdir()) == [
        "p-0-on",
        "p-0-paths",
    ]
