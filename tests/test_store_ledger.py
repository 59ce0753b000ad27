"""Ledgers: whole lines only, across concurrent writers and writers killed mid-append."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from toyfoundry.store import fsio
from toyfoundry.store.ledger import Ledger, TornTail

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(fsio.FAULT_ENV, raising=False)
    fsio.reset_faults()
    yield
    fsio.reset_faults()


def python(script: str, *args: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(fsio.FAULT_ENV, None)
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=stdout)


def lines(ledger: Ledger) -> list[dict[str, Any]]:
    return [orjson.loads(line) for _, line in ledger.read()]


def test_append_read_round_trip(tmp_path: Path) -> None:
    class Attempt(BaseModel):
        order: str
        outcome: str

    ledger = Ledger(tmp_path / "telemetry" / "forge_mint_alfa.jsonl")
    assert list(ledger.read()) == []
    ledger.append([])
    assert not ledger.path.exists()
    ledger.append([{"b": 1, "a": "x"}, Attempt(order="2025-10-12-005", outcome="minted")])
    ledger.append([{"n": "line\nbreak"}])
    assert ledger.path.read_bytes() == (
        b'{"a":"x","b":1}\n{"order":"2025-10-12-005","outcome":"minted"}\n{"n":"line\\nbreak"}\n'
    )
    assert list(ledger.read()) == [
        (1, b'{"a":"x","b":1}'),
        (2, b'{"order":"2025-10-12-005","outcome":"minted"}'),
        (3, b'{"n":"line\\nbreak"}'),
    ]
    assert ledger.repair() is None


def test_read_handles_lines_longer_than_a_chunk(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "big.jsonl")
    records = [{"i": i, "pad": "x" * (700_000 * (i % 3))} for i in range(7)]
    ledger.append(records)
    assert lines(ledger) == records


def test_read_skips_a_torn_tail_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    assert list(Ledger(path).read()) == [(1, b'{"a":1}'), (2, b'{"a":2}')]
    assert path.read_bytes() == b'{"a":1}\n{"a":2}\n{"a":'


def test_torn_tail_is_set_aside_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "forge_mint_alfa.jsonl"
    complete = b'{"seq":1}\n{"seq":2}\n'
    path.write_bytes(complete + b'{"seq":3,"pad":"\xff')
    ledger = Ledger(path)
    ledger.append([{"seq": 4}])

    assert path.read_bytes() == complete + b'{"seq":4}\n'
    torn_file = tmp_path / "forge_mint_alfa.jsonl.torn"
    (note,) = [orjson.loads(line) for line in torn_file.read_bytes().splitlines()]
    assert note["ledger"] == "forge_mint_alfa.jsonl"
    assert note["offset"] == len(complete)
    assert note["bytes"] == '{"seq":3,"pad":"\\xff'
    assert str(note["found_at"]).endswith("Z")
    err = capsys.readouterr().err
    assert err == (
        f"toyfoundry: warning: {path}: torn last line (17 bytes at offset {len(complete)})"
        f" moved to {torn_file}\n"
    )


def test_repair_returns_the_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_bytes(b"no newline at all")
    torn = Ledger(path).repair()
    assert torn == TornTail(path, 0, 17, tmp_path / "l.jsonl.torn")
    assert path.read_bytes() == b""
    assert Ledger(path).repair() is None
    assert Ledger(tmp_path / "missing.jsonl").repair() is None
    assert not (tmp_path / "missing.jsonl").exists()


def test_torn_file_that_is_itself_torn_keeps_notes_apart(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    (tmp_path / "l.jsonl.torn").write_bytes(b'{"ledger":"l.jsonl","off')
    path.write_bytes(b'{"a":1}\n{"a"')
    Ledger(path).repair()
    torn_lines = (tmp_path / "l.jsonl.torn").read_bytes().splitlines()
    assert torn_lines[0] == b'{"ledger":"l.jsonl","off'
    assert orjson.loads(torn_lines[1])["bytes"] == '{"a"'


CONCURRENT_WRITER = """
import sys
from pathlib import Path
from typing import Any
from toyfoundry.store.ledger import Ledger
ledger = Ledger(Path(sys.argv[1]))
writer = int(sys.argv[2])
for i in range(200):
    ledger.append([{"writer": writer, "i": i, "pad": "y" * (i * 37 % 2000)}])
"""


def test_concurrent_appends_from_four_processes(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    procs = [python(CONCURRENT_WRITER, str(path), str(w)) for w in range(4)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    records = lines(Ledger(path))
    assert len(records) == 800
    for writer in range(4):
        assert [r["i"] for r in records if r["writer"] == writer] == list(range(200))
    assert path.read_bytes().count(b"\n") == 800


# A writer that appends batches until killed. Record contents are a pure
# function of (run, seq), the same formula as `crash_record`, so the test can
# tell exactly what a torn tail must be.
CRASH_WRITER = """
import sys
from pathlib import Path
from toyfoundry.store.ledger import Ledger
ledger = Ledger(Path(sys.argv[1]))
run = int(sys.argv[2])
seq = 0
print("ready", flush=True)
while True:
    ledger.append([
        {"run": run, "seq": s, "pad": "z" * (50_000 + s * 7919 % 150_000)}
        for s in range(seq, seq + 4)
    ])
    seq += 4
"""


def crash_record(run: int, seq: int) -> bytes:
    record = {"run": run, "seq": seq, "pad": "z" * (50_000 + seq * 7919 % 150_000)}
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def read_tail(path: Path, start: int | None = None) -> tuple[int, bytes]:
    """(offset, bytes) from `start`, or of the last 2 MiB: several records, not the whole file."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        offset = max(0, size - (2 << 20)) if start is None else start
        handle.seek(offset)
        return offset, handle.read()


def wait_for_growth(path: Path, past: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > past:
            return
        assert proc.poll() is None, "writer died on its own"
        time.sleep(0.001)
    pytest.fail("writer never appended")


def wait_for_write_in_progress(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Return as soon as the ledger ends mid-line (a write is under way), or after a while."""
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and proc.poll() is None:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                return
            time.sleep(0.0001)
    finally:
        os.close(fd)


def test_writers_killed_mid_append_lose_no_complete_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "forge_rituals.jsonl"
    torn_file = tmp_path / "forge_rituals.jsonl.torn"
    ledger = Ledger(path)
    rng = random.Random(20251012)
    runs = 15
    torn_count = 0
    for run in range(runs):
        size_before = path.stat().st_size if path.exists() else 0
        proc = python(CRASH_WRITER, str(path), str(run), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        wait_for_growth(path, size_before, proc)
        # Half the kills land at a random moment, half while a write is under way.
        if run % 2:
            time.sleep(rng.uniform(0, 0.02))
        else:
            wait_for_write_in_progress(path, proc)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.stdout.close()

        start, data = read_tail(path)
        local_cut = data.rfind(b"\n") + 1
        cut = start + local_cut
        tail = data[local_cut:]
        capsys.readouterr()
        # The next open (an append of a checkpoint) repairs and reports.
        ledger.append([{"run": run, "checkpoint": True}])
        err = capsys.readouterr().err
        if tail:
            torn_count += 1
            assert err == (
                f"toyfoundry: warning: {path}: torn last line ({len(tail)} bytes at offset"
                f" {cut}) moved to {torn_file}\n"
            )
            note = orjson.loads(torn_file.read_bytes().splitlines()[-1])
            assert note["offset"] == cut
            assert note["bytes"].encode() == tail
            # The fragment is the start of the record after the last complete one.
            next_seq = 0
            if cut:
                last_line = data[data.rfind(b"\n", 0, local_cut - 1) + 1 : local_cut - 1]
                last = orjson.loads(last_line)
                if last.get("run") == run:
                    next_seq = last["seq"] + 1
            assert crash_record(run, next_seq).startswith(tail)
        else:
            assert err == ""
        checkpoint = orjson.dumps({"checkpoint": True, "run": run}) + b"\n"
        assert read_tail(path, cut) == (cut, checkpoint)

    # Every complete line parses; each run is an unbroken prefix of its records
    # followed by its checkpoint; torn fragments and reports match one for one.
    records = lines(ledger)
    by_run: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_run.setdefault(record["run"], []).append(record)
    assert sorted(by_run) == list(range(runs))
    for run, group in by_run.items():
        assert group[-1] == {"run": run, "checkpoint": True}
        body = group[:-1]
        assert [r["seq"] for r in body] == list(range(len(body)))
        for r in body:
            assert orjson.dumps(r, option=orjson.OPT_SORT_KEYS) == crash_record(run, r["seq"])
    torn_notes = torn_file.read_bytes().splitlines() if torn_file.exists() else []
    assert len(torn_notes) == torn_count
    # Half the kills aim at a write in progress; with ~70% of kills tearing a
    # line here, a run with none means the crash path was never exercised.
    assert torn_count > 0, "no kill tore a line: the repair path went untested"


@pytest.mark.skipif(not fsio.HAS_SYNCFS, reason="syncfs: Linux")
def test_a_task_flushes_its_ledger_appends_with_its_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a task's block the append leaves its flush to the block's end, where one
    syncfs covers it; outside a block every append is fsynced before it returns."""
    from toyfoundry.store.atomic import grouped_folder_syncs

    calls: list[str] = []
    fsync, syncfs = fsio.fsync, fsio._syncfs
    assert syncfs is not None
    monkeypatch.setattr(fsio, "fsync", lambda fd: (calls.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(fsio, "_syncfs", lambda fd: (calls.append("syncfs"), syncfs(fd))[1])
    ledger = Ledger(tmp_path / "telemetry" / "a.jsonl")
    with grouped_folder_syncs():
        ledger.append([{"n": 1}])
        Ledger(tmp_path / "telemetry" / "b.jsonl").append([{"n": 2}])
        assert calls == []  # nothing flushed yet
    assert calls == ["syncfs"]  # one flush for both ledgers and their folder
    calls.clear()
    ledger.append([{"n": 3}])
    assert calls[0] == "fsync"  # on its own: flushed before append returns
    assert [r["n"] for _, r in ((n, orjson.loads(line)) for n, line in ledger.read())] == [1, 3]
