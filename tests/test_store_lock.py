"""The foundry lock: a second process waits and says for whom; one process may nest it."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from toyfoundry.errors import FoundryError
from toyfoundry.store.lock import (
    TIMEOUT_ENV,
    FoundryLock,
    LockTimeout,
    foundry_lock,
    lock_timeout,
)

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import sys
from pathlib import Path
from toyfoundry.store.lock import foundry_lock
with foundry_lock(Path(sys.argv[1]), purpose="nightly build"):
    print("held", flush=True)
    sys.stdin.readline()
"""

WAITER = """
import sys
from pathlib import Path
from toyfoundry.store.lock import foundry_lock
with foundry_lock(Path(sys.argv[1]), purpose="watch"):
    print("acquired", flush=True)
"""


def python(script: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def busy(path: Path) -> bool:
    """Whether another open file description can take the lock right now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_second_process_waits_and_says_for_whom(tmp_path: Path) -> None:
    lock_file = tmp_path / ".toyfoundry" / "lock"
    holder = python(HOLDER, str(lock_file), stdin=subprocess.PIPE)
    assert holder.stdin is not None and holder.stdout is not None
    waiter: subprocess.Popen[str] | None = None
    try:
        assert holder.stdout.readline() == "held\n"
        waiter = python(WAITER, str(lock_file))
        assert waiter.stderr is not None and waiter.stdout is not None
        line = waiter.stderr.readline()
        # who holds it and since when: "for 0s" on a fast machine, a few seconds on a busy one
        assert re.fullmatch(
            rf"toyfoundry: waiting for the foundry lock \(held by pid {holder.pid}: nightly build,"
            r" for \d+s\)\n",
            line,
        ), line
        assert waiter.poll() is None
        holder.stdin.write("go\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        assert waiter.stdout.readline() == "acquired\n"
        assert waiter.wait(timeout=30) == 0
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert lock_file.exists()
    assert not busy(lock_file)


def test_reentrant_within_one_process(tmp_path: Path) -> None:
    lock_file = tmp_path / "lock"
    with foundry_lock(lock_file):
        assert busy(lock_file)
        assert lock_file.read_text() == f"{os.getpid()} build\n"
        with foundry_lock(lock_file, purpose="inner"):
            assert busy(lock_file)
        assert busy(lock_file)
    assert not busy(lock_file)
    assert lock_file.read_text() == ""


def test_lock_object_spans_open_to_close(tmp_path: Path) -> None:
    lock = FoundryLock(tmp_path / "state" / "lock", purpose="doit backend")
    lock.acquire()
    assert lock.held
    with foundry_lock(lock.path):
        pass
    assert busy(lock.path)
    lock.release()
    assert not lock.held
    assert not busy(lock.path)
    with pytest.raises(RuntimeError, match="released more often than acquired"):
        lock.release()


def test_wait_message_callback_and_blocking(tmp_path: Path) -> None:
    lock_file = tmp_path / "lock"
    lock_file.write_text("4242 manual run\n")
    taken = time.time() - 125  # the holder's note is as old as its hold
    os.utime(lock_file, (taken, taken))
    other = os.open(lock_file, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    messages: list[str] = []
    told = threading.Event()
    acquired = threading.Event()

    def tell(message: str) -> None:
        messages.append(message)
        told.set()

    def take() -> None:
        with foundry_lock(lock_file, purpose="watch", wait_message=tell):
            acquired.set()

    thread = threading.Thread(target=take)
    thread.start()
    try:
        assert told.wait(timeout=10)
        assert len(messages) == 1
        assert re.fullmatch(
            r"toyfoundry: waiting for the foundry lock \(held by pid 4242: manual run,"
            r" for 2m0\ds\)",
            messages[0],
        ), messages
        assert not acquired.is_set()
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
        thread.join(timeout=10)
    assert acquired.is_set()


def _held_elsewhere(lock_file: Path, note: str) -> int:
    lock_file.write_text(note)
    other = os.open(lock_file, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    return other


@pytest.mark.parametrize("how", ["argument", "block", "environment", "zero"])
def test_a_bounded_wait_gives_up_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """`--lock-timeout` and `TOYFOUNDRY_LOCK_TIMEOUT`: a busy lock ends the wait, never hangs."""
    lock_file = tmp_path / "lock"
    other = _held_elsewhere(lock_file, "4242 doit (4242)\n")
    said: list[str] = []
    try:
        with pytest.raises(LockTimeout) as caught:
            if how == "argument":
                FoundryLock(lock_file, wait_message=said.append, timeout=0.2).acquire()
            elif how == "environment":
                monkeypatch.setenv(TIMEOUT_ENV, "0.2")
                FoundryLock(lock_file, wait_message=said.append).acquire()
            else:
                with lock_timeout(0.0 if how == "zero" else 0.2):
                    FoundryLock(lock_file, wait_message=said.append).acquire()
    finally:
        os.close(other)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("toyfoundry: error: the foundry lock is still held by pid 4242:")
    assert "gave up after" in message
    assert len(said) == 1 and "held by pid 4242: doit (4242), for" in said[0]
    assert not busy(lock_file)  # the waiter holds nothing after giving up


def test_a_lock_timeout_that_is_not_seconds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_file = tmp_path / "lock"
    other = _held_elsewhere(lock_file, "1 x\n")
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    try:
        with pytest.raises(FoundryError, match="TOYFOUNDRY_LOCK_TIMEOUT: expected a number"):
            FoundryLock(lock_file, wait_message=lambda _: None).acquire()
    finally:
        os.close(other)
