"""The exchange watcher: artefacts addressed to a target, recorded atomically, new/changed/gone."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_project
from tests.test_watch_helpers import drop, wait_for
from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import WatcherState
from toyfoundry.store.layout import Layout
from toyfoundry.watch.exchange import ExchangeWatcher, addressed_to
from toyfoundry.watch.observer import ScriptedSource

TARGET = "toyfoundry_ai_0"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return make_project(tmp_path / "project", orders=False)


def age(path: Path, seconds: float = 10.0) -> Path:
    """Make a file look written `seconds` ago, so a check need not wait for it to settle."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def put(layout: Layout, rel: str, data: bytes = b"{}") -> Path:
    path = layout.root / rel
    drop(path, data)
    return age(path)


def state(layout: Layout) -> WatcherState:
    return WatcherState.model_validate_json(layout.watcher_state.read_bytes())


def test_what_counts_as_addressed_to_the_target(layout: Layout) -> None:
    wanted = [
        put(layout, f"exchange/inbox/{TARGET}/brief.json"),
        put(layout, f"exchange/inbox/{TARGET}/deep/er/plan.txt"),
        put(layout, f"exchange/recipes/{TARGET}__memo.json"),
    ]
    for rel in (
        f"exchange/inbox/{TARGET}/.hidden.json",
        f"exchange/inbox/{TARGET}/draft.json.tmp",
        "exchange/inbox/someone_else/brief.json",
        f"exchange/reports/{TARGET}__ours.json",
        f"exchange/outbox/toysoldiers/{TARGET}__ours.json",
        f"exchange/recipes/not_{TARGET}__memo.json",
    ):
        put(layout, rel)
    assert sorted(addressed_to(layout, TARGET)) == sorted(wanted)


def test_new_changed_gone_are_recorded_with_first_and_last_seen(layout: Layout) -> None:
    brief = put(layout, f"exchange/inbox/{TARGET}/brief.json", b'{"v": 1}')
    first = ExchangeWatcher(layout, TARGET).check()
    assert [a.path for a in first.new] == [f"exchange/inbox/{TARGET}/brief.json"]
    recorded = state(layout).artefacts[0]
    assert recorded.size == 8 and recorded.first_seen == recorded.last_seen

    again = ExchangeWatcher(layout, TARGET).check()
    assert not again.any and again.tracked == 1

    drop(brief, b'{"v": 22}')
    age(brief)
    changed = ExchangeWatcher(layout, TARGET).check()
    assert [a.path for a in changed.changed] == [recorded.path]
    now = state(layout).artefacts[0]
    assert now.first_seen == recorded.first_seen and now.last_seen > recorded.last_seen
    assert now.sha256 != recorded.sha256

    brief.unlink()
    gone = ExchangeWatcher(layout, TARGET).check()
    assert [a.path for a in gone.gone] == [recorded.path]
    assert state(layout).artefacts == []


def test_a_file_still_being_written_waits_for_the_next_run(layout: Layout) -> None:
    path = layout.exchange / "inbox" / TARGET / "big.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"partial")
    diff = ExchangeWatcher(layout, TARGET, quiet=5.0).check(wait=0)
    assert diff.waiting == [f"exchange/inbox/{TARGET}/big.bin"] and not diff.new
    assert state(layout).artefacts == []
    age(path)
    assert [a.path for a in ExchangeWatcher(layout, TARGET).check().new] == diff.waiting


def test_links_are_skipped_and_said_so(layout: Layout) -> None:
    inbox = layout.exchange / "inbox" / TARGET
    inbox.mkdir(parents=True)
    (inbox / "passwd.json").symlink_to("/etc/passwd")
    diff = ExchangeWatcher(layout, TARGET).check()
    assert not diff.new and "symlink" in diff.skipped[0]


def test_state_of_another_target_is_not_overwritten(layout: Layout) -> None:
    put(layout, "exchange/inbox/other_bot/x.json")
    ExchangeWatcher(layout, "other_bot").check()
    before = layout.watcher_state.read_bytes()
    with pytest.raises(FoundryError, match="other_bot"):
        ExchangeWatcher(layout, TARGET).check()
    assert layout.watcher_state.read_bytes() == before


def test_a_corrupt_state_is_set_aside_not_lost(layout: Layout) -> None:
    layout.watcher_state.parent.mkdir(parents=True)
    layout.watcher_state.write_text("{torn")
    put(layout, f"exchange/inbox/{TARGET}/a.json")
    diff = ExchangeWatcher(layout, TARGET).check()
    assert len(diff.new) == 1
    aside = list(layout.watcher_state.parent.glob("exchange_watcher_state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{torn"


def test_once_from_the_command_line(layout: Layout, run_cli: Any) -> None:
    put(layout, f"exchange/inbox/{TARGET}/brief.json")
    result = run_cli("--root", layout.root, "watch-exchange", "--target", TARGET, "--once")
    assert result.code == 0, result.err
    assert f"{TARGET}: 1 new, 0 changed, 0 gone; 1 tracked" in result.out
    result = run_cli("--root", layout.root, "watch-exchange", "--target", TARGET)
    assert f"{TARGET}: no change; 1 tracked" in result.out
    bad = run_cli("--root", layout.root, "watch-exchange", "--target", "../etc")
    assert bad.code == 1 and "--target" in bad.err


def test_watch_mode_records_each_settled_change(layout: Layout) -> None:
    source = ScriptedSource()
    out: list[str] = []

    class Sink(io.StringIO):
        def write(self, text: str) -> int:
            out.append(text)
            return len(text)

    watcher = ExchangeWatcher(layout, TARGET, quiet=0.1, source=source, out=Sink())
    thread = threading.Thread(target=watcher.run, kwargs={"interval": 30}, daemon=True)
    thread.start()
    try:
        source.started.wait(5)
        wait_for(lambda: out)
        path = layout.exchange / "inbox" / TARGET / "note.json"
        drop(path, json.dumps({"hello": 1}).encode())
        source.emit(path)
        wait_for(lambda: any("1 new" in chunk for chunk in out))
        assert [a.path for a in state(layout).artefacts] == [f"exchange/inbox/{TARGET}/note.json"]
    finally:
        watcher.stop()
        thread.join(10)
    assert not thread.is_alive()
