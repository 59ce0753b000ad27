"""Atomic writes: whole new bytes or untouched old bytes, never a temp file left behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from toyfoundry.store import fsio
from toyfoundry.store.atomic import (
    dumps_canonical,
    read_whole,
    remove_file,
    write_atomic,
    write_json_atomic,
    write_many_atomic,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(fsio.FAULT_ENV, raising=False)
    fsio.reset_faults()
    yield
    fsio.reset_faults()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of our own, so listing it shows exactly what the writes left."""
    path = tmp_path / "out"
    path.mkdir()
    return path


def test_write_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    assert write_atomic(target, b"one\n") is True
    assert target.read_bytes() == b"one\n"
    assert write_atomic(target, b"two\n") is True
    assert target.read_bytes() == b"two\n"
    assert os.listdir(target.parent) == ["out.json"]


def test_identical_bytes_leave_file_and_mtime_alone(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_atomic(target, b"same\n")
    os.utime(target, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    inode = target.stat().st_ino
    assert write_atomic(target, b"same\n") is False
    assert target.stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert target.stat().st_ino == inode
    assert write_atomic(target, b"same but longer\n") is True
    assert target.stat().st_mtime_ns != 1_000_000_000_000_000_000


def test_read_whole_reads_every_byte_and_names_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    for data in (b"", b"x", os.urandom(70_000)):
        target.write_bytes(data)
        assert read_whole(target) == data
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        read_whole(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_whole(tmp_path / "missing")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_the_way_is_replaced_not_waited_on(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    os.mkfifo(target)
    assert write_atomic(target, b"")
    assert target.is_file() and target.read_bytes() == b""


def test_dumps_canonical_is_sorted_indented_and_ends_in_newline() -> None:
    class Model(BaseModel):
        zeta: int
        alpha: list[str]

    expected = b'{\n  "alpha": [\n    "x"\n  ],\n  "zeta": 1\n}\n'
    assert dumps_canonical({"zeta": 1, "alpha": ["x"]}) == expected
    assert dumps_canonical(Model(zeta=1, alpha=["x"])) == expected


def test_write_json_atomic_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    assert write_json_atomic(target, {"b": 2, "a": 1}) is True
    assert target.read_bytes() == b'{\n  "a": 1,\n  "b": 2\n}\n'
    assert write_json_atomic(target, {"a": 1, "b": 2}) is False


def test_remove_file_ignores_missing(tmp_path: Path) -> None:
    target = tmp_path / "gone.json"
    target.write_bytes(b"x")
    assert remove_file(target) is True
    assert not target.exists()
    assert remove_file(target) is False
    assert remove_file(tmp_path / "no" / "folder.json") is False


FAULT_SCRIPT = """
import sys
from pathlib import Path
from toyfoundry.store.atomic import write_atomic
try:
    write_atomic(Path(sys.argv[1]), b"new contents\\n")
except OSError as err:
    print(err.errno)
    sys.exit(1)
"""


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("enospc:write:1", errno.ENOSPC),
        ("eio:fsync:1", errno.EIO),
        ("enospc:replace:1", errno.ENOSPC),
    ],
)
def test_injected_fault_keeps_old_file_and_leaves_no_temp(
    folder: Path, fault: str, code: int
) -> None:
    target = folder / "out.json"
    target.write_bytes(b"old contents\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), fsio.FAULT_ENV: fault}
    result = subprocess.run(
        [sys.executable, "-c", FAULT_SCRIPT, str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip() == str(code)
    assert target.read_bytes() == b"old contents\n"
    assert os.listdir(folder) == ["out.json"]


def test_fault_after_rename_still_raises(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The second fsync is the folder's: the new bytes are in place but not yet
    # known durable, and the caller must hear about it.
    target = folder / "out.json"
    monkeypatch.setenv(fsio.FAULT_ENV, "eio:fsync:2")
    fsio.reset_faults()
    with pytest.raises(OSError) as caught:
        write_atomic(target, b"new\n")
    assert caught.value.errno == errno.EIO
    assert os.listdir(folder) == ["out.json"]


def test_nth_call_counts_per_operation(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fsio.FAULT_ENV, "enospc:write:3")
    fsio.reset_faults()
    write_atomic(folder / "1.json", b"1")
    write_atomic(folder / "2.json", b"2")
    with pytest.raises(OSError) as caught:
        write_atomic(folder / "3.json", b"3")
    assert caught.value.errno == errno.ENOSPC
    write_atomic(folder / "4.json", b"4")
    assert sorted(os.listdir(folder)) == ["1.json", "2.json", "4.json"]


def test_malformed_fault_spec_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fsio.FAULT_ENV, "enospc:chmod:1")
    fsio.reset_faults()
    with pytest.raises(ValueError, match="operation must be one of"):
        fsio.fsync(0)


def test_write_many_writes_each_changed_file_once(tmp_path: Path) -> None:
    same = tmp_path / "same.json"
    write_atomic(same, b"same\n")
    os.utime(same, ns=(1_000_000_000, 1_000_000_000))
    items = [
        (tmp_path / "x" / "a.json", b"a\n"),
        (same, b"same\n"),
        (tmp_path / "y" / "z" / "b.json", b"b\n"),
    ]
    assert write_many_atomic(items) == [items[0][0], items[2][0]]
    assert [p.read_bytes() for p, _ in items] == [b"a\n", b"same\n", b"b\n"]
    assert same.stat().st_mtime_ns == 1_000_000_000
    assert write_many_atomic(items) == []
    assert sorted(os.listdir(tmp_path)) == ["_cwd", "same.json", "x", "y"]


def test_write_many_can_create_read_only_files(tmp_path: Path) -> None:
    target = tmp_path / "objects" / "ab" / "abcd.json"
    write_many_atomic([(target, b"{}\n")], mode=0o444)
    assert target.stat().st_mode & 0o777 == 0o444


@pytest.mark.parametrize("fault", ["eio:write:2", "eio:fsync:1", "enospc:replace:2"])
def test_write_many_fault_leaves_old_or_new_and_no_temp(
    folder: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    a, b, c = folder / "a.json", folder / "b.json", folder / "c.json"
    write_atomic(a, b"old a\n")
    monkeypatch.setenv(fsio.FAULT_ENV, fault)
    fsio.reset_faults()
    with pytest.raises(OSError):
        write_many_atomic([(a, b"new a\n"), (b, b"new b\n"), (c, b"new c\n")])
    # every target holds its old bytes or its new ones; no temp file is left behind
    assert a.read_bytes() in (b"old a\n", b"new a\n")
    for path, new in ((b, b"new b\n"), (c, b"new c\n")):
        assert not path.exists() or path.read_bytes() == new
    assert all(not name.endswith(".tmp") for name in os.listdir(folder))
    if fault != "enospc:replace:2":
        assert sorted(os.listdir(folder)) == ["a.json"] and a.read_bytes() == b"old a\n"


def test_fsync_many_flushes_files_on_several_folders(tmp_path: Path) -> None:
    fds = []
    try:
        for name in ("a", "b", "c"):
            fds.append(os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT, 0o644))
            os.write(fds[-1], b"x")
        fsio.fsync_many(fds)
        fsio.fsync_many([])
    finally:
        for fd in fds:
            os.close(fd)


def test_write_many_names_temps_and_folders_from_the_paths_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path in the working folder (no folder in its text) and one in a folder not made yet:
    each written whole, and a block flushes each file's folder, named as text."""
    from toyfoundry.store import atomic

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with atomic.deferred_folder_syncs() as block:
        written = write_many_atomic([(Path("top.txt"), b"a"), (Path("deep/er/x.txt"), b"b")])
    assert written == [Path("top.txt"), Path("deep/er/x.txt")]
    assert (work / "top.txt").read_bytes() == b"a"
    assert (work / "deep" / "er" / "x.txt").read_bytes() == b"b"
    assert block.folders == {".", os.path.join("deep", "er")}
    assert sorted(os.listdir(work)) == ["deep", "top.txt"]
    assert os.listdir(work / "deep" / "er") == ["x.txt"]


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_staged_write_is_read_back_but_in_place_only_once_published(tmp_path: Path) -> None:
    """Inside `staging`, a target's bytes wait in a temp file: the task reads them back, a
    second write replaces them, a removal drops them, and `publish` renames in order."""
    from toyfoundry.store.atomic import Stage, publish, staging

    kept, dropped, other = tmp_path / "kept.json", tmp_path / "dropped.json", tmp_path / "o"
    kept.write_bytes(b"old")
    noted: list[tuple[Path, bytes]] = []
    stage = Stage(frozenset({str(kept), str(dropped)}), lambda p, d: noted.append((p, d)))
    with staging(stage):
        assert write_many_atomic([(kept, b"first"), (dropped, b"gone")]) == [kept, dropped]
        assert kept.read_bytes() == b"old" and not dropped.exists()
        assert read_whole(kept) == b"first"
        assert write_atomic(kept, b"first") is False  # equal to what is staged
        assert write_atomic(kept, b"second") is True
        remove_file(dropped)
        write_atomic(other, b"not a target: in place at once")
        assert other.read_bytes() == b"not a target: in place at once"
        assert len(_temps(tmp_path)) == 1
    assert kept.read_bytes() == b"old"
    [(folders, error)] = publish([stage])
    assert (folders, error) == ({str(tmp_path)}, None)
    assert kept.read_bytes() == b"second" and not dropped.exists()
    assert noted == [(kept, b"second")] and not stage.pending
    assert _temps(tmp_path) == []


def test_a_staged_write_equal_to_the_file_is_noted_at_once(tmp_path: Path) -> None:
    from toyfoundry.store.atomic import Stage, staging

    same = tmp_path / "same.json"
    same.write_bytes(b"same")
    noted: list[Path] = []
    stage = Stage(frozenset({str(same)}), lambda p, d: noted.append(p))
    with staging(stage):
        assert write_atomic(same, b"same") is False
    assert noted == [same] and not stage.pending


@pytest.mark.parametrize("op", ["fsync", "replace"])
def test_a_failed_publish_fails_its_stage_and_leaves_old_bytes_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    """A failed flush fails every stage of the batch and renames nothing; a failed rename
    fails its own stage, whose files after it stay old; no temp file is left."""
    from toyfoundry.store.atomic import Stage, publish, staging

    first, second, third = (tmp_path / f"{n}.json" for n in ("a", "b", "c"))
    for path in (first, second, third):
        path.write_bytes(b"old")
    one = Stage(frozenset({str(first), str(second)}))
    two = Stage(frozenset({str(third)}))
    with staging(one):
        write_many_atomic([(first, b"new"), (second, b"new")])
    with staging(two):
        write_atomic(third, b"new")
    monkeypatch.setenv(fsio.FAULT_ENV, f"eio:{op}:{2 if op == 'replace' else 1}")
    fsio.reset_faults()
    (_, err_one), (_, err_two) = publish([one, two])
    assert err_one is not None and err_one.errno == errno.EIO
    if op == "fsync":
        assert err_two is not None
        assert [p.read_bytes() for p in (first, second, third)] == [b"old"] * 3
    else:
        assert err_two is None
        assert [p.read_bytes() for p in (first, second, third)] == [b"new", b"old", b"new"]
    assert _temps(tmp_path) == []
