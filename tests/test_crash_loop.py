"""Crash loop: SIGKILL full builds at random moments, then let one finish; nothing may show it.

Quick form: a few kills of a W(18) build. Long form: `TOYFOUNDRY_SOAK=1` (200 kills of
W(48)); `TOYFOUNDRY_CRASH_KILLS`, `TOYFOUNDRY_CRASH_ORDERS` and `TOYFOUNDRY_CRASH_SEED`
override the counts and the seed (the seed is printed when the test fails).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench import workload
from tests.conftest import REPO, doit, executed, make_project
from toyfoundry.forge import doctrine
from toyfoundry.formats.models import MintRecord, RitualRecord
from toyfoundry.store import sweep
from toyfoundry.store.layout import Layout

SOAK = os.environ.get("TOYFOUNDRY_SOAK") == "1"
KILLS = int(os.environ.get("TOYFOUNDRY_CRASH_KILLS", "200" if SOAK else "4"))
ORDERS = int(os.environ.get("TOYFOUNDRY_CRASH_ORDERS", "48" if SOAK else "18"))
SEED = int(os.environ.get("TOYFOUNDRY_CRASH_SEED", str(random.randrange(1 << 30))))


def workload_project(dest: Path) -> Layout:
    layout = make_project(dest, orders=False)
    workload.write(layout.root, ORDERS)
    return layout


def is_temp(path: Path) -> bool:
    """A killed writer's temp file (`.NAME.PID.N.tmp`): never read, not an artefact."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def outputs(layout: Layout) -> dict[str, bytes]:
    """What an uninterrupted build and a crashed-then-finished one must agree on, byte for byte.

    The quilt is compared without each batch's `telemetry` (attempt counts and last
    attempt time: a crashed build really did attempt more) and without the skipped
    notes about torn ledger lines (the crashes' own, reported on purpose). The ledger
    index (byte offsets into ledgers that differ) and the dashboard (it draws the
    telemetry) are left out for the same reasons, and so is the dashboard history in
    telemetry/dashboards/ (named by the ledgers' latest record).
    """
    out: dict[str, bytes] = {}
    bases = [layout.build, layout.reports_dir, layout.outbox_dir, layout.exports]
    bases += [layout.quilt_parts]
    for base in bases:
        for path in sorted(base.rglob("*")) if base.exists() else []:
            if path.is_file() and not is_temp(path) and "dashboards" not in path.parts:
                out[str(path.relative_to(layout.root))] = path.read_bytes()
    # the doctrine's objects, by digest, wherever they are stored (packs are the order's
    # objects stored together, so a build that ran an order twice may group them apart)
    for digest, data in doctrine.stored_objects(layout).items():
        out[f".toyfoundry/doctrine/objects/{digest}"] = data
    if layout.rollup.exists():
        rollup = json.loads(layout.rollup.read_bytes())
        for batch in rollup["batches"]:
            batch.pop("telemetry")
        rollup["skipped"] = [s for s in rollup["skipped"] if "torn" not in s]
        out["quilt (without telemetry)"] = json.dumps(rollup, sort_keys=True).encode()
    if layout.doctrine_index.exists():
        lines = layout.doctrine_index.read_bytes().splitlines()
        objects = sorted(json.loads(line)["sha256"] for line in lines)
        out["doctrine index (objects)"] = json.dumps(objects).encode()
    return out


def start_build(root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "doit"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )


def kill_at(proc: subprocess.Popen[bytes], delay: float) -> tuple[bool, str]:
    """SIGKILL the build `delay` seconds in (if still running): (killed mid-run, its stderr)."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL, err.decode(errors="replace")


def ledger_records(path: Path) -> list[dict[str, Any]]:
    """Every line of a ledger, each of which must parse."""
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if line:
            try:
                records.append(json.loads(line))
            except ValueError:
                pytest.fail(f"{path}:{number} does not parse: {line[:200]!r}")
    assert path.read_bytes().endswith(b"\n"), f"{path} ends in a torn line after the final build"
    return records


def check_ledgers(layout: Layout) -> dict[str, int]:
    """Lines parse, torn fragments are set aside and reported, no record is duplicated."""
    mint = ledger_records(layout.mint_ledger)
    rituals = ledger_records(layout.ritual_ledger)
    index = ledger_records(layout.doctrine_index)
    for record in mint:
        MintRecord.model_validate(record)
    for record in rituals:
        RitualRecord.model_validate(record)
    # the same record twice is only allowed as a new attempt, which has its own run id
    mint_keys = Counter((r["run_id"], r["order_id"], r["alfa_id"], r["outcome"]) for r in mint)
    ritual_keys = Counter((r["run_id"], r["order_id"], r["ritual"]) for r in rituals)
    assert [k for k, n in mint_keys.items() if n > 1] == []
    assert [k for k, n in ritual_keys.items() if n > 1] == []
    assert [k for k, n in Counter(e["sha256"] for e in index).items() if n > 1] == []

    rollup = json.loads(layout.rollup.read_bytes())
    torn_lines = 0
    for ledger in (layout.mint_ledger, layout.ritual_ledger, layout.doctrine_index):
        torn = ledger.with_name(ledger.name + ".torn")
        if not torn.exists():
            continue
        shown = str(torn.relative_to(layout.root))
        for number, line in enumerate(torn.read_bytes().split(b"\n"), 1):
            if not line.strip():
                continue
            torn_lines += 1
            note = json.loads(line)
            assert note["ledger"] == ledger.name and note["bytes"], note
            # The repair warns on stderr, but the repairing process may itself be killed
            # before it prints; the quilt lists the telemetry ledgers' fragments every time.
            if ledger == layout.doctrine_index:
                continue
            assert any(s.startswith(f"{shown}:{number}: ") for s in rollup["skipped"]), shown
    return {"mint records": len(mint), "ritual records": len(rituals), "torn": torn_lines}


@pytest.mark.slow
def test_killed_builds_finish_as_if_never_killed(tmp_path: Path) -> None:
    reference = workload_project(tmp_path / "reference")
    started = time.monotonic()
    result = doit(reference.root)
    full = time.monotonic() - started
    assert result.code == 0, result.out + result.err

    layout = workload_project(tmp_path / "crashed")
    rng = random.Random(SEED)
    landed, stderr, delays = 0, "", []
    for k in range(KILLS):
        # uniform over the whole build: early kills land in start-up or doit's own bookkeeping;
        # the first within its first third, so at least one lands in a build that started
        # from nothing (later builds resume, and end sooner than the reference did)
        delay = rng.uniform(0.05, full / 3 if k == 0 else full)
        delays.append(round(delay, 3))
        killed, err = kill_at(start_build(layout.root), delay)
        landed += killed
        stderr += err
    context = f"seed {SEED}, delays {delays}"
    assert landed, f"no kill landed in a running build ({context})"

    final = doit(layout.root)
    stderr += final.err
    assert final.code == 0, f"{context}\n{final.out}{final.err}"
    assert "Traceback" not in stderr, context
    again = doit(layout.root)
    assert again.code == 0 and executed(again.out) == [], f"{context}\n{again.out}"

    check_ledgers(layout)
    # the next holder of the lock after a kill sweeps what the killed writers left
    left = [str(p) for area in sweep.areas(layout) for p in area.rglob("*") if is_temp(p)]
    assert left == [], f"{context}: temp files left: {left[:5]}"
    ours, theirs = outputs(layout), outputs(reference)
    assert sorted(ours) == sorted(theirs), context
    differ = [name for name in ours if ours[name] != theirs[name]]
    assert differ == [], f"{context}: {differ}"
    packs = layout.doctrine.rglob("*.pack")
    assert all(p.stat().st_mode & 0o222 == 0 for p in packs), "a doctrine pack is writable"
