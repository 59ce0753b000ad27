"""I/O faults, SQLite-style: fail the Nth write, fsync, rename or dependency-DB commit with
ENOSPC or EIO, for every N.

Each failing run must end with one clear line naming the error and exit 1 (`toyfoundry
mint`, `ritual`, `loom`, and `doit`), never a traceback; the next clean
run must then produce exactly what an uninterrupted run produces. Faults come from
`TOYFOUNDRY_FAULT` (toyfoundry/store/fsio.py), and every N up to the number of calls a
clean run makes is tried, so a swallowed error shows up as a run that succeeds too early.

Quick form: one order whose recipe promotes at most two Alfas; the CLI commands run
in-process over every N with the errno alternating, doit in a subprocess for the first,
middle and last call of each operation. Long form (`TOYFOUNDRY_SOAK=1`): the sample
recipe as it is, both errnos at every N, for doit too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SAMPLE, Result, make_project
from tests.test_crash_loop import outputs
from toyfoundry.store import fsio, runid
from toyfoundry.store.layout import Layout

SOAK = os.environ.get("TOYFOUNDRY_SOAK") == "1"
ORDER = "2025-10-28-002"  # operational: mint, all four rituals, doctrine, outbox
OPERATIONS = fsio.OPERATIONS
ERRNOS = ("enospc", "eio")
MESSAGES = {"enospc": "ENOSPC: No space left on device", "eio": "EIO: Input/output error"}

#: Runs doit and then reports how often each faultable operation was called.
COUNTING_DOIT = """
import runpy, sys
from toyfoundry.store import fsio
sys.argv = ["doit"]
try:
    runpy.run_module("doit", run_name="__main__")
finally:
    print("FSIO-CALLS", dict(fsio._calls), file=sys.stderr)
"""
NEVER = "enospc:write:1000000000"  # a fault spec that counts calls but never fires


def one_order_project(dest: Path) -> Layout:
    layout = make_project(dest, orders=False)
    shutil.copyfile(SAMPLE / "orders" / f"{ORDER}.json", layout.order_file(ORDER))
    if not SOAK:
        recipe = json.loads(layout.recipe_file("bolt-bunny").read_bytes())
        recipe["promotion"] = {"max_per_order": 2, "pool_limit": 8}
        layout.recipe_file("bolt-bunny").write_text(json.dumps(recipe))
    return layout


def copy_project(src: Layout, dest: Path) -> Layout:
    shutil.copytree(src.root, dest, symlinks=True)
    return Layout(dest)


def plan(counts: dict[str, int], *, sparse: bool) -> Iterator[tuple[str, int, str]]:
    """(operation, N, errno) to inject: every N (errno alternating, or both in the long form),
    or in the sparse quick form the first, middle and last call of each operation."""
    for op in OPERATIONS:
        total = counts.get(op, 0)
        numbers = list(range(1, total + 1))
        if sparse:
            numbers = sorted({1, (total + 1) // 2, total} - {0})
        for n in numbers:
            kinds = ERRNOS if SOAK else (ERRNOS[n % 2],)
            for kind in kinds:
                yield op, n, kind


# --------------------------------------------------------------------------- in-process CLI


@dataclass
class Cli:
    """`toyfoundry ARGS` in-process, each call a fresh "process": faults and run id reset."""

    run_cli: Callable[..., Result]
    monkeypatch: pytest.MonkeyPatch

    def __call__(self, layout: Layout, args: list[str], fault: str | None = None) -> Result:
        if fault is None:
            self.monkeypatch.delenv(fsio.FAULT_ENV, raising=False)
        else:
            self.monkeypatch.setenv(fsio.FAULT_ENV, fault)
        fsio.reset_faults()
        runid.run_id.cache_clear()
        try:
            return self.run_cli("--root", layout.root, *args)
        finally:
            self.monkeypatch.delenv(fsio.FAULT_ENV, raising=False)

    def counts(self, layout: Layout, args: list[str]) -> dict[str, int]:
        result = self(layout, args, NEVER)
        assert result.code == 0, result.out + result.err
        counts = dict(fsio._calls)
        fsio.reset_faults()
        return counts


@pytest.fixture
def cli(run_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    yield Cli(run_cli, monkeypatch)
    monkeypatch.delenv(fsio.FAULT_ENV, raising=False)
    fsio.reset_faults()


STEPS: list[tuple[str, list[str]]] = [
    ("mint", ["mint", ORDER]),
    ("ritual", ["ritual", "all", ORDER]),
    ("loom", ["loom", "--export"]),
]


def test_each_fault_in_mint_ritual_and_loom(tmp_path: Path, cli: Cli) -> None:
    """Every write, fsync and rename of each step fails once, cleanly; a clean rerun repairs it."""
    before = one_order_project(tmp_path / "step-0")
    tried: dict[str, int] = {}
    for index, (name, args) in enumerate(STEPS, start=1):
        after = copy_project(before, tmp_path / f"step-{index}")
        counts = cli.counts(after, args)
        expected = outputs(after)
        assert counts, f"{name} wrote nothing?"
        for op, n, kind in plan(counts, sparse=False):
            work = copy_project(before, tmp_path / f"{name}-{op}-{n}-{kind}")
            failed = cli(work, args, f"{kind}:{op}:{n}")
            where = f"{name} with {kind} at {op} {n} of {counts[op]}"
            assert failed.code == 1, f"{where}: exit {failed.code}\n{failed.out}{failed.err}"
            assert f"toyfoundry: error: {MESSAGES[kind]}" in failed.err, f"{where}: {failed.err}"
            assert "Traceback" not in failed.out + failed.err, where
            clean = cli(work, args)
            assert clean.code == 0, f"{where}, then clean: {clean.out}{clean.err}"
            assert outputs(work) == expected, f"{where}: the clean rerun differs"
            shutil.rmtree(work.root)
            tried[name] = tried.get(name, 0) + 1
        # one past the last call: the run succeeds ("until the run succeeds")
        work = copy_project(before, tmp_path / f"{name}-past")
        past = {op: counts.get(op, 0) + 1 for op in OPERATIONS}
        spec = ",".join(f"enospc:{op}:{n}" for op, n in past.items())
        assert cli(work, args, spec).code == 0
        before = after
    assert set(tried) == {"mint", "ritual", "loom"}


# --------------------------------------------------------------------------- doit


def run_doit(root: Path, fault: str | None = None, script: str | None = None) -> Result:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(fsio.FAULT_ENV, None)
    if fault:
        env[fsio.FAULT_ENV] = fault
    command = [sys.executable, "-c", script] if script else [sys.executable, "-m", "doit"]
    proc = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=300, env=env, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def doit_counts(layout: Layout) -> dict[str, int]:
    result = run_doit(layout.root, NEVER, COUNTING_DOIT)
    assert result.code == 0, result.out + result.err
    line = next(x for x in result.err.splitlines() if x.startswith("FSIO-CALLS "))
    counts: dict[str, Any] = eval(line.removeprefix("FSIO-CALLS "), {})  # a dict literal
    return {str(k): int(v) for k, v in counts.items()}


@pytest.mark.slow
def test_each_fault_in_a_doit_build(tmp_path: Path) -> None:
    pristine = one_order_project(tmp_path / "pristine")
    reference = copy_project(pristine, tmp_path / "reference")
    counts = doit_counts(reference)
    expected = outputs(reference)
    for op, n, kind in plan(counts, sparse=not SOAK):
        work = copy_project(pristine, tmp_path / f"doit-{op}-{n}-{kind}")
        failed = run_doit(work.root, f"{kind}:{op}:{n}")
        where = f"doit with {kind} at {op} {n} of {counts[op]}"
        output = failed.out + failed.err
        assert failed.code == 1, f"{where}: exit {failed.code}\n{output}"
        errors = [x for x in output.splitlines() if x.startswith("toyfoundry: error: ")]
        assert len(errors) == 1, f"{where}: one line, not {len(errors)}\n{output}"
        assert errors[0].startswith(f"toyfoundry: error: {MESSAGES[kind]}"), f"{where}\n{output}"
        assert "Traceback" not in output, f"{where}\n{output}"
        clean = run_doit(work.root)
        assert clean.code == 0, f"{where}, then clean:\n{clean.out}{clean.err}"
        assert outputs(work) == expected, f"{where}: the clean rebuild differs"
        shutil.rmtree(work.root)
