"""The doit graph: tests count which tasks doit executed, as the minimality promise is stated."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, doit, executed, make_project
from toyfoundry.graph import backend
from toyfoundry.graph import run as run_command
from toyfoundry.store.layout import Layout

SCOUT = ["2025-10-12-005", "2025-10-20-011", "2025-10-27-014"]
BUNNY = ["2025-10-28-002"]
GLOBAL = ["dashboard", "export", "quilt", "validate"]
#: what an order's change re-runs besides its chain (validate reads no order without a review)
ROLLUP = ["dashboard", "export", "quilt"]


def per_order(*orders: str) -> list[str]:
    return [f"{stage}:{o}" for o in orders for stage in ("mint", "rituals", "report")]


def everything() -> list[str]:
    return sorted(per_order(*SCOUT, *BUNNY) + GLOBAL)


def build(layout: Layout, *args: str) -> list[str]:
    result = doit(layout.root, *args)
    assert result.code == 0, result.out + result.err
    return executed(result.out)


def artefact_bytes(layout: Layout) -> dict[str, bytes]:
    """Every build artefact, report and export: what must be byte-identical between builds.

    A killed writer's temp file (`.NAME.PID.N.tmp`) is never read and is not an artefact.
    """
    out = {}
    for base in (layout.build, layout.reports_dir, layout.exports, layout.outbox_dir):
        if base.exists():
            for path in sorted(base.rglob("*")):
                temp = path.name.startswith(".") and path.name.endswith(".tmp")
                if path.is_file() and "dashboards" not in path.parts and not temp:
                    out[str(path.relative_to(layout.root))] = path.read_bytes()
    return out


def test_first_build_runs_all_then_nothing(project: Layout) -> None:
    assert build(project) == everything()
    assert build(project) == []
    assert project.rollup.exists()
    assert project.dashboard.exists()
    assert project.report_md("2025-10-27-014").exists()


def test_new_order_runs_only_its_chain_and_globals(project: Layout) -> None:
    build(project)
    doc = json.loads(project.order_file("2025-10-28-002").read_text())
    doc.update(order_id="2025-10-29-001", seed=99)
    project.order_file("2025-10-29-001").write_text(json.dumps(doc))
    assert build(project) == sorted(per_order("2025-10-29-001") + ROLLUP)


def test_editing_notes_stops_at_the_unchanged_chain(project: Layout) -> None:
    build(project)
    path = project.order_file("2025-10-20-011")
    doc = json.loads(path.read_text())
    doc["notes"] = "re-issued with a clarified note"
    path.write_text(json.dumps(doc))
    ran = build(project)
    assert ran == sorted(per_order("2025-10-20-011") + ROLLUP)


def test_an_order_with_a_review_is_validated_again_when_it_changes(project: Layout) -> None:
    """A review is checked against its order's batch size, so validate reads that order."""
    build(project)
    review = project.review_file("2025-10-20-011")
    review.write_text(
        json.dumps({"schema_version": 1, "order_id": "2025-10-20-011", "decisions": []})
    )
    assert "validate" in build(project)
    assert build(project) == []  # validate passed: nothing left to run
    path = project.order_file("2025-10-20-011")
    doc = json.loads(path.read_text())
    doc["notes"] = "re-issued with a clarified note"
    path.write_text(json.dumps(doc))
    assert "validate" in build(project)


def test_editing_batch_size_cascades_down_the_recipe_only(project: Layout) -> None:
    """A smaller batch consumes less of the novel sequence: the next order's chain input changes."""
    build(project)
    path = project.order_file("2025-10-20-011")
    doc = json.loads(path.read_text())
    doc["batch_size"] = 40
    path.write_text(json.dumps(doc))
    ran = build(project)
    assert set(per_order("2025-10-20-011", "2025-10-27-014")) <= set(ran)
    assert not set(per_order(*BUNNY, "2025-10-12-005")) & set(ran)


def test_touching_inputs_without_changing_bytes(project: Layout) -> None:
    build(project)
    later = time.time() + 5
    for path in project.exchange.rglob("*.json"):
        os.utime(path, (later, later))
    assert build(project) == []
    assert build(project) == []


def test_deleting_one_target_rebuilds_only_its_task(project: Layout) -> None:
    build(project)
    project.report_md("2025-10-27-014").unlink()
    assert build(project) == ["report:2025-10-27-014"]
    project.rituals_artefact("2025-10-28-002").unlink()
    # the re-run rituals come out byte-identical (the report stays up to date), but the
    # attempt is recorded in the ritual ledger, whose counts the quilt and its readers show
    assert build(project) == ["dashboard", "export", "quilt", "rituals:2025-10-28-002"]


def test_checkpoint_disappearing_and_returning(project: Layout) -> None:
    build(project)
    checkpoint = project.checkpoint_file("expansion")
    saved = checkpoint.read_bytes()
    checkpoint.unlink()
    ran = build(project)
    assert "mint:2025-10-20-011" in ran
    assert not {"mint:2025-10-12-005", "mint:2025-10-28-002"} & set(ran)
    report = json.loads(project.report_json("2025-10-20-011").read_text())
    assert report["status"] == "blocked"
    checkpoint.write_bytes(saved)
    ran = build(project)
    assert "mint:2025-10-20-011" in ran
    report = json.loads(project.report_json("2025-10-20-011").read_text())
    assert report["status"] in ("built", "awaiting-review")


def test_relocated_copy_with_cached_state_runs_nothing(project: Layout, tmp_path: Path) -> None:
    build(project)
    copy = tmp_path / "relocated"
    shutil.copytree(project.root, copy, symlinks=True)  # copytree gives every file a new mtime
    later = time.time() + 5
    for path in copy.rglob("*"):
        if path.is_file():
            os.utime(path, (later, later))
    assert build(Layout(copy)) == []
    assert build(Layout(copy)) == []


def test_clean_keeps_inputs_and_ledgers(project: Layout) -> None:
    build(project)
    ledgers = {p: p.read_bytes() for p in (project.mint_ledger, project.ritual_ledger)}
    inputs = {
        p: p.read_bytes() for p in project.exchange.rglob("*.json") if "reports" not in p.parts
    }
    result = doit(project.root, "clean")
    assert result.code == 0, result.err
    assert not project.mint_artefact("2025-10-27-014").exists()
    assert not project.report_json("2025-10-27-014").exists()
    for path, data in {**ledgers, **inputs}.items():
        assert path.read_bytes() == data
    # validate writes nothing, so there is nothing to clean and it stays up to date
    assert build(project) == [t for t in everything() if t != "validate"]


def test_list_info_forget(project: Layout) -> None:
    listing = doit(project.root, "list")
    assert listing.code == 0, listing.err
    names = {line.split()[0] for line in listing.out.splitlines() if line.strip()}
    assert {"mint", "rituals", "report", "quilt", "export", "dashboard", "validate"} <= names
    build(project)
    path = project.order_file("2025-10-27-014")
    path.write_text(path.read_text().replace("sprint 1", "sprint one"))
    info = doit(project.root, "info", "mint:2025-10-27-014")
    assert "exchange/orders/2025-10-27-014.json" in info.out
    forget = doit(project.root, "forget", "report:2025-10-28-002")
    assert forget.code == 0
    assert "report:2025-10-28-002" in build(project)


def test_one_order_chain_by_name(project: Layout) -> None:
    ran = build(project, "mint:2025-10-27-014")
    assert ran == [
        "mint:2025-10-12-005",
        "mint:2025-10-20-011",
        "mint:2025-10-27-014",
        "rituals:2025-10-12-005",
        "rituals:2025-10-20-011",
    ]


def test_bad_order_does_not_stop_the_factory(project: Layout) -> None:
    bad = project.orders_dir / "2025-10-30-001.json"
    bad.write_text('{"schema_version": 1, "order_id": "2025-10-30-001", "phase": "operational"}')
    result = doit(project.root)
    # a failed task, not an error: the tasks doit skipped after it do not turn it into one
    assert result.code == 1, result.out + result.err
    ran = executed(result.out)
    assert set(everything()) <= set(ran)
    assert "exchange/orders/2025-10-30-001.json: recipe: is required" in result.err
    # the problem was printed once, as the task ran: no empty block repeats its name
    assert "<stdout>:" not in result.out
    report = json.loads(project.report_json("2025-10-30-001").read_text())
    assert report["status"] == "rejected"
    assert project.rollup.exists()
    assert "Traceback" not in result.out + result.err


def test_blocked_order_is_not_a_failure(project: Layout) -> None:
    project.checkpoint_file("operational").unlink()
    result = doit(project.root)
    assert result.code == 0, result.out + result.err
    report = json.loads(project.report_json("2025-10-27-014").read_text())
    assert report["status"] == "blocked"
    assert "checkpoint" in report["reason"]


def test_builds_are_byte_identical_across_folders(tmp_path: Path) -> None:
    a = make_project(tmp_path / "a")
    b = make_project(tmp_path / "b")
    build(a)
    build(b)
    assert artefact_bytes(a) == artefact_bytes(b)
    assert a.rollup.exists()


def test_code_change_rebuilds_its_stage(project: Layout, tmp_path: Path) -> None:
    """Editing the dashboard's module re-runs the dashboard only: code is a dependency."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "toyfoundry", src / "toyfoundry", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {"PYTHONPATH": str(src)}

    def run() -> list[str]:
        result = doit(project.root, env=env)
        assert result.code == 0, result.err
        return executed(result.out)

    run()
    module = src / "toyfoundry" / "telemetry" / "dashboard.py"
    module.write_text(module.read_text() + "\n# layout tweak\n")
    assert run() == ["dashboard"]
    module = src / "toyfoundry" / "forge" / "rituals.py"
    module.write_text(module.read_text() + "\n# ritual tweak\n")
    ran = run()
    assert set(ran) >= {f"rituals:{o}" for o in SCOUT + BUNNY}
    assert not any(name.startswith("mint:") for name in ran)


def test_two_builders_at_once(project: Layout) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "doit"],
            cwd=project.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = [executed(out) for out, _ in outs]
    assert sorted(ran[0] + ran[1]) == everything()
    assert any("waiting for the foundry lock" in err for _, err in outs)
    assert build(project) == []


@pytest.mark.slow
def test_killed_build_resumes_only_unfinished(tmp_path: Path) -> None:
    from bench.workload import write

    root = tmp_path / "w"
    make_project(root, orders=False)
    shutil.rmtree(root / "exchange")
    write(root, 24)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    started = []
    for line in proc.stdout:
        if line.startswith(".  "):
            started.append(line[3:].strip())
        if len(started) >= 40:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = build(Layout(root))
    total = 24 * 3 + 4
    # the tasks started last may not have finished: one in a serial build, one per worker
    # in a parallel one (a first build of this size runs a worker per core, plus one);
    # of the finished ones, those whose records still waited for their commit run again
    workers = run_command.cores() + 1 if run_command.cores() > 1 else 1
    finished_before = len(started) - workers - backend.COMMIT_EVERY
    assert len(resumed) <= total - finished_before + 1
    assert len(resumed) < total
    clean = tmp_path / "clean"
    make_project(clean, orders=False)
    shutil.rmtree(clean / "exchange")
    write(clean, 24)
    build(Layout(clean))
    assert artefact_bytes(Layout(root)) == artefact_bytes(Layout(clean))


def _in_process(root: Path, *args: str) -> int:
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from toyfoundry.graph import dodo, tasks

    tasks.forget_plan()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return int(DoitMain(ModuleTaskLoader(dodo), config_filenames=()).run(list(args)))
    finally:
        os.chdir(cwd)


def test_relocated_copy_hashes_each_file_once(
    project: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a cache restore, the first run hashes the inputs once; the next hashes nothing."""
    from toyfoundry.graph import checker

    build(project)
    copy = tmp_path / "restored"
    shutil.copytree(project.root, copy, symlinks=True)
    later = time.time() + 5
    for path in copy.rglob("*"):
        if path.is_file():
            os.utime(path, (later, later))
    hashed: list[str] = []
    real = checker.whole_hash

    def counting(path: str, size: int | None = None) -> str:
        hashed.append(path)
        return str(real(path, size))

    monkeypatch.setattr(checker, "whole_hash", counting)
    assert _in_process(copy, "--reporter", "zero") == 0
    first = list(hashed)
    assert first
    assert len(first) == len(set(first)), "a file was hashed twice in one run"
    hashed.clear()
    assert _in_process(copy, "--reporter", "zero") == 0
    assert hashed == []


def test_progress_on_a_terminal(project: Layout) -> None:
    """On a terminal the reporter shows tasks done of total and ends with a summary line."""
    import pty

    primary, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit"],
        cwd=project.root,
        env=env,
        stdout=secondary,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(primary)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, screen
    assert "[0/16] mint:" in screen or "/16] mint:" in screen
    assert "toyfoundry: 16 task(s) run, 0 up to date of 16" in screen


def test_build_of_a_folder_without_the_projects_config_runs_our_run_command(
    project: Layout, run_cli: Any
) -> None:
    """`toyfoundry build` is for a folder without the dodo file or pyproject.toml; it still
    gets the foundry's `run` (a failed order gives 1, where doit's own `run` gives 2)."""
    (project.root / "pyproject.toml").unlink()
    (project.root / "dodo.py").unlink()
    (project.orders_dir / "2025-10-30-001.json").write_text('{"schema_version": 1')
    result = run_cli("--root", str(project.root), "build")
    assert result.code == 1, result.out + result.err
    assert "exchange/orders/2025-10-30-001.json: -: is not valid JSON" in result.err
    assert project.rollup.exists()  # the rest of the graph still built
    assert project.report_json("2025-10-27-014").exists()


def test_a_removed_order_loses_its_reports_and_its_outbox_manifest(project: Layout) -> None:
    """An order deleted from the exchange takes its outputs there with it: its reports and
    the manifest of its promoted Alfas in the outbox, which other systems read."""
    gone = "2025-10-27-014"
    assert doit(project.root).code == 0
    assert project.outbox_file(gone).exists() and project.report_json(gone).exists()
    project.order_file(gone).unlink()
    result = doit(project.root)
    assert result.code == 0, result.out + result.err
    assert not project.outbox_file(gone).exists()
    assert not project.report_json(gone).exists()
    assert project.outbox_file("2025-10-28-002").exists()  # the others' stay


def test_a_corrupt_dependency_db_is_one_line_not_a_traceback(project: Layout) -> None:
    """A DB file that is not ours (a bad cache restore, a disk error) stops the build with
    one line that says what to do, and exit code 3 (doit's: before any task ran)."""
    project.dep_db.parent.mkdir(parents=True, exist_ok=True)
    project.dep_db.write_bytes(b"not a database at all" * 100)
    result = doit(project.root)
    assert result.code == 3, result.out + result.err
    assert "Traceback" not in result.out + result.err
    [line] = result.err.strip().splitlines()
    assert "is not a Toyfoundry SQLite DB" in line and "remove it" in line
    project.dep_db.unlink()
    assert doit(project.root).code == 0  # as the line says: removed, the build starts afresh


def test_build_of_a_folder_with_a_broken_pyproject_says_so_in_one_line(
    project: Layout, run_cli: Any
) -> None:
    (project.root / "pyproject.toml").write_text("[tool.doit\n")
    result = run_cli("--root", str(project.root), "build")
    assert result.code == 1, result.out + result.err
    assert result.err.startswith("pyproject.toml: -: is not valid TOML: "), result.err
    assert "Traceback" not in result.err and "unexpected error" not in result.err


def test_a_db_that_cannot_be_opened_is_not_called_foreign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held by another program or a disk error is no reason to delete the DB."""
    import sqlite3

    from doit.dependency import DatabaseException

    from toyfoundry.graph import backend

    def locked(path: Path) -> sqlite3.Connection:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(backend, "_connect", locked)
    (tmp_path / ".toyfoundry").mkdir()
    with pytest.raises(DatabaseException) as info:
        backend.FoundryDB(str(tmp_path / ".toyfoundry" / "doit.sqlite"), None)
    assert "cannot be opened (database is locked)" in str(info.value)
    assert "remove" not in str(info.value)


def test_the_plugins_handed_to_doit_are_the_ones_pyproject_names() -> None:
    """`config.DOIT_PLUGINS` stands in for the project's `[tool.doit.plugins]`: the two agree."""
    import tomllib

    from toyfoundry.graph.config import DOIT_PLUGINS

    named = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["doit"]["plugins"]
    assert {kind.upper(): dict(plugins) for kind, plugins in named.items()} == DOIT_PLUGINS
