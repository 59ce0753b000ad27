"""Measurements that must run inside a child process: the telemetry lint, its parse-only floor,
and what a cold process pays to import the code that reads one new order.

    python -m bench.probes lint PROJECT [--repeats 3]
    python -m bench.probes imports PROJECT
    python -m bench.probes floor PROJECT --paths PATHS.json [--repeats 3]
    python -m bench.probes dashboard PROJECT [--repeats 3]

Each prints one JSON object. `lint`: lines checked, best seconds of `lint_paths`,
and the best seconds of the floor (orjson-parsing every ledger line and nothing
else), both over the same files. `imports`: in a fresh process that has imported
what a no-op `doit` imports, the seconds to import pydantic, then the rest of what
a new order's tasks import (our models and every stage's entry module). `floor`:
the best seconds to `stat` every path of the graph (a no-op's least disk work), and
the seconds per artefact to write one of the build's mean artefact size to a temp
file, fsync it and rename it into place (a task's least work per file). `dashboard`:
the best seconds of drawing and writing the dashboard page from the project's
rollup (as the `dashboard` task does, into a scratch file so the page is really
written and flushed), with reading the rollup timed apart. A child,
so the suite's own process never imports the product.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _floor(paths: list[Path]) -> tuple[int, float]:
    import orjson

    started = time.perf_counter()
    lines = 0
    for path in paths:
        with path.open("rb") as fh:
            for line in fh:
                orjson.loads(line)
                lines += 1
    return lines, time.perf_counter() - started


def lint(project: Path, repeats: int) -> dict[str, Any]:
    from toyfoundry.store.layout import Layout
    from toyfoundry.telemetry.lint import lint_paths

    layout = Layout(project)
    ledgers = [p for p in (layout.mint_ledger, layout.ritual_ledger) if p.exists()]
    best = best_floor = float("inf")
    lines = floor_lines = findings = 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = lint_paths(layout)
        best = min(best, time.perf_counter() - started)
        lines, findings = result.lines, len(result.findings)
        floor_lines, seconds = _floor(ledgers)
        best_floor = min(best_floor, seconds)
    return {
        "lines": lines,
        "seconds": best,
        "findings": findings,
        "floor_lines": floor_lines,
        "floor_seconds": best_floor,
        "bytes": sum(p.stat().st_size for p in ledgers),
    }


#: Top-level packages counted as the validation stack (pydantic and what it imports).
PYDANTIC = frozenset({"pydantic", "pydantic_core", "annotated_types", "typing_inspection"})
#: pydantic's modules behind the names our models import (`BaseModel`, `Field`,
#: `StringConstraints`, `model_validator`, ...): the stack before any model of ours.
PYDANTIC_API = (
    "pydantic.main",
    "pydantic.fields",
    "pydantic.types",
    "pydantic.functional_validators",
)


def imports(project: Path) -> dict[str, Any]:
    """Import seconds a new order adds to a cold `doit` run; one sample per process.

    A no-op loads the graph from the plan kept in the DB and never imports pydantic
    (README, "A cheap no-op"); one new order has to be validated, minted, run through
    the rituals and rolled up, so the run imports everything the stages' actions
    reach. What the first validation of each model then builds is not counted.
    """
    os.chdir(project)
    # what every no-op imports: doit's run command, the project's dodo.py, our `run`
    for module in ("doit.cmd_run", "toyfoundry.graph.dodo", "toyfoundry.graph.run"):
        importlib.import_module(module)
    from toyfoundry.graph.stages import STAGE_ENTRY

    before = set(sys.modules)
    started = time.perf_counter()
    for module in PYDANTIC_API:
        importlib.import_module(module)
    pydantic_seconds = time.perf_counter() - started
    for module in sorted(set(STAGE_ENTRY.values())):
        importlib.import_module(module)
    seconds = time.perf_counter() - started
    added = set(sys.modules) - before
    return {
        "seconds": seconds,
        "pydantic_seconds": pydantic_seconds,
        "modules": len(added),
        "pydantic_modules": sum(name.partition(".")[0] in PYDANTIC for name in added),
        "ours": sum(name.startswith("toyfoundry.") for name in added),
    }


#: Files the write floor writes (and then removes): enough to average out one slow flush.
FLOOR_FILES = 100


def floor(project: Path, paths_file: Path, repeats: int) -> dict[str, Any]:
    """The no-op's and a task's least work on this disk: stat every path, write+flush a file."""
    paths = [project / p for p in json.loads(paths_file.read_text(encoding="utf-8"))]
    best_stat = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for path in paths:
            try:  # noqa: SIM105  (a floor: no context manager per path)
                os.stat(path)
            except FileNotFoundError:
                pass
        best_stat = min(best_stat, time.perf_counter() - started)
    artefacts = list((project / ".toyfoundry" / "build").glob("*/*.json"))
    size = sum(p.stat().st_size for p in artefacts) // max(1, len(artefacts))
    folder = project / ".toyfoundry" / "floor-probe"
    folder.mkdir(parents=True, exist_ok=True)
    data = b"x" * size
    started = time.perf_counter()
    for i in range(FLOOR_FILES):
        tmp, final = folder / f".{i}.tmp", folder / f"{i}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    write_seconds = (time.perf_counter() - started) / FLOOR_FILES
    for i in range(FLOOR_FILES):
        (folder / f"{i}.json").unlink()
    folder.rmdir()
    return {
        "paths": len(paths),
        "stat_seconds": best_stat,
        "artefact_bytes": size,
        "write_flush_seconds": write_seconds,
    }


def hash_floor(project: Path, paths_file: Path, repeats: int) -> dict[str, Any]:
    """The least a fresh copy's run can do besides starting and stat-ing: open, read and
    sha256 each file the graph's tasks depend on, as much of each file as the dependency check must read
    (a whole file; a telemetry ledger's sampled head and tail). Best of `repeats`."""
    from toyfoundry.graph.checker import SAMPLE, is_ledger

    names = json.loads(paths_file.read_text(encoding="utf-8"))
    paths = [(str(project / p), is_ledger(str(project / p))) for p in names]
    best, files, read = float("inf"), 0, 0
    for _ in range(repeats):
        files = read = 0
        started = time.perf_counter()
        for path, ledger in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except (FileNotFoundError, IsADirectoryError):
                continue
            try:
                if ledger:
                    size = os.fstat(fd).st_size
                    data = os.pread(fd, SAMPLE, 0)
                    if size > SAMPLE:
                        data += os.pread(fd, SAMPLE, max(SAMPLE, size - SAMPLE))
                else:
                    with os.fdopen(os.dup(fd), "rb") as fh:
                        data = fh.read()
            except IsADirectoryError:
                continue
            finally:
                os.close(fd)
            hashlib.sha256(data).digest()
            files += 1
            read += len(data)
        best = min(best, time.perf_counter() - started)
    return {"hash_seconds": best, "files": files, "bytes": read}


def dashboard(project: Path, repeats: int) -> dict[str, Any]:
    """Seconds to draw and write the page for the project's orders; the best of `repeats`.

    Reading the rollup is timed apart: in a build the dashboard task takes the parse
    the quilt made in the same process (`parts`), so the task's own work is drawing
    and writing. The first try's seconds include the dashboard's imports.
    """
    started = time.perf_counter()
    from toyfoundry.store.atomic import write_atomic
    from toyfoundry.store.layout import Layout
    from toyfoundry.telemetry import dashboard as page

    layout = Layout(project)
    scratch = layout.quilt_dir / ".bench-dashboard.html"
    best, best_load, first, size, orders = float("inf"), float("inf"), 0.0, 0, 0
    for attempt in range(max(repeats, 1)):
        if attempt:
            started = time.perf_counter()
        scratch.unlink(missing_ok=True)
        rollup = page.load_rollup(layout)
        loaded = time.perf_counter()
        data = page.render(rollup)
        write_atomic(scratch, data)
        done = time.perf_counter()
        first = first or done - started
        best = min(best, done - loaded)
        best_load = min(best_load, loaded - started)
        size, orders = len(data), len(rollup.batches)
    scratch.unlink(missing_ok=True)
    return {
        "seconds": best,
        "load_seconds": best_load,
        "first_seconds": first,
        "bytes": size,
        "orders": orders,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["lint", "imports", "floor", "hash", "dashboard"])
    parser.add_argument("project", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--paths",
        type=Path,
        help="floor, hash: a JSON list of the graph's paths (its deps, for hash)",
    )
    args = parser.parse_args(argv)
    project = args.project.resolve()
    if args.probe == "lint":
        got = lint(project, args.repeats)
    elif args.probe == "imports":
        got = imports(project)
    elif args.probe == "dashboard":
        got = dashboard(project, args.repeats)
    elif args.probe == "hash":
        got = hash_floor(project, args.paths, args.repeats)
    else:
        got = floor(project, args.paths, args.repeats)
    json.dump(got, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
