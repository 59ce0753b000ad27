"""A full disk for real: SQLite's own "database or disk is full", and a build on a small tmpfs.

`tests/test_io_faults.py` injects ENOSPC and EIO at the Nth write, fsync, rename and DB
commit; here the filesystem itself runs out. SQLite's storage errors must reach the user
as the one line any failed write gives (`toyfoundry: error: ENOSPC: ...`) with exit 1,
never as a `sqlite3.OperationalError` traceback, and once space returns the next build
must end equal to a clean one.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import doit, make_project
from tests.test_crash_loop import outputs
from toyfoundry.graph.backend import FoundryDB
from toyfoundry.store.layout import Layout


def test_a_full_dependency_db_is_an_enospc_oserror(tmp_path: Path) -> None:
    """SQLite's SQLITE_FULL (here from a page limit, as a full disk gives it) on a commit, on
    a batch of hashes and on the last flush: an `OSError` with ENOSPC naming the DB."""
    db = FoundryDB(str(tmp_path / "doit.sqlite"), codec=None)
    try:
        pages = db._conn.execute("pragma page_count").fetchone()[0]
        db._conn.execute(f"pragma max_page_count = {pages}")
        with pytest.raises(OSError) as caught:
            db.put_meta("plan", "x" * 200_000)
        assert caught.value.errno == errno.ENOSPC
        assert caught.value.filename == str(tmp_path / "doit.sqlite")
        assert "database or disk is full" in str(caught.value)
        db.set("mint:x", "deps:", ["y" * 200_000])  # a task's record, committed at once
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        with pytest.raises(OSError):
            db.dump()  # the record left to write fails too; the lock is released anyway
    again = FoundryDB(str(tmp_path / "doit.sqlite"), codec=None)
    again.dump()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 24 MiB tmpfs of our own, or a skip that says why there is none."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected faults cover the rest")
    point = Path(tempfile.mkdtemp(prefix="toyfoundry-disk-", dir="/tmp"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
        shutil.rmtree(point, ignore_errors=True)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path: Path, leave: int) -> Path:
    """A file that leaves about `leave` bytes free on `path`'s filesystem."""
    filler = path / "filler"
    size = max(0, _free(path) - leave)
    with filler.open("wb") as handle:
        handle.write(b"\0" * size)  # tmpfs has no sparse blocks to cheat with
    return filler


@pytest.mark.slow
def test_a_build_on_a_disk_that_fills_up(small_disk: Path, tmp_path: Path) -> None:
    reference = make_project(tmp_path / "reference")
    assert doit(reference.root, timeout=120).code == 0
    expected = outputs(reference)
    pristine = make_project(tmp_path / "pristine")
    before = _free(small_disk)
    probe = Layout(small_disk / "probe")
    shutil.copytree(pristine.root, probe.root)
    assert doit(probe.root, timeout=120).code == 0
    need = before - _free(small_disk)
    shutil.rmtree(probe.root)
    failures = 0
    for share in (0.02, 0.1, 0.3, 0.5, 0.7, 0.85, 0.95):
        work = Layout(small_disk / f"work-{share}")
        shutil.copytree(pristine.root, work.root)
        filler = _fill(small_disk, int(need * share))
        try:
            result = doit(work.root, timeout=120)
        finally:
            filler.unlink()
        both = result.out + result.err
        where = f"with {share:.0%} of the space a build needs"
        assert "Traceback" not in both, f"{where}:\n{both[-3000:]}"
        if result.code != 0:
            failures += 1
            assert result.code == 1, f"{where}: exit {result.code}\n{both[-3000:]}"
            errors = [x for x in both.splitlines() if x.startswith("toyfoundry: error: ")]
            assert len(errors) == 1 and "ENOSPC" in errors[0], f"{where}:\n{both[-3000:]}"
        again = doit(work.root, timeout=120)  # space is back
        assert again.code == 0, f"{where}, then with space:\n{again.out}{again.err}"
        assert outputs(work) == expected, f"{where}: the build after space returned differs"
        shutil.rmtree(work.root)
    assert failures >= 4, "the disk never filled up: the shares are wrong"
