"""Hostile timing: inputs swapped, finished, renamed or deleted while a build runs.

Each race is reproduced deterministically: the project's `dodo.py` wraps one step of
the graph (the plan's scan, the plan, an order's mint) and changes the exchange right
after it, exactly where a writer racing the build would. A build must then never
hang, never print a traceback, and never exit 0 with outputs that differ from a clean
build of the exchange as it was before or after; the next build must end equal to a
clean build of what the exchange holds then.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Result, doit, executed, make_project
from tests.test_crash_loop import outputs
from toyfoundry.store.layout import Layout

ORDER = "2025-10-20-011"  # expansion, sprocket-scout: the middle of a chain
LATER = "2025-10-27-014"  # the next order of the same chain
OTHER = "2025-10-28-002"  # operational, bolt-bunny
GLOBAL = ["quilt", "export", "dashboard"]
#: The wrapped dodo: `STEP` names what is wrapped, `ACT` what the race does right after it.
HOOKED_DODO = '''
"""The graph with a fault point: the exchange changes right after one step."""
import os
from pathlib import Path

from toyfoundry.graph.dodo import *  # noqa: F403
from toyfoundry.graph import plan as _plan
from toyfoundry.forge import mint as _mint

ONCE = Path(__file__).with_name(".race-done")


def act(layout):
    if ONCE.exists():
        return
    ONCE.write_text("done")
{act}


_scan, _load, _mint_order = _plan.scan_inputs, _plan.load, _mint.mint_order


def scan_inputs(layout):
    entries = _scan(layout)
    if {step!r} == "scan":
        act(layout)
    return entries


def load(layout, *args):
    plan = _load(layout, *args)
    if {step!r} == "plan":
        act(layout)
    return plan


def mint_order(layout, order_id, **kwargs):
    artefact = _mint_order(layout, order_id, **kwargs)
    if {step!r} == "mint:" + order_id:
        act(layout)
    return artefact


_plan.scan_inputs, _plan.load, _mint.mint_order = scan_inputs, load, mint_order
'''


def hooked(layout: Layout, step: str, act: str) -> None:
    """Make the project's dodo.py run `act` (Python, `layout` in scope) once, right after `step`."""
    body = "\n".join("    " + line for line in act.strip().splitlines())
    (layout.root / "dodo.py").write_text(HOOKED_DODO.format(step=step, act=body))


def unhooked(layout: Layout) -> None:
    shutil.copy2(REPO / "dodo.py", layout.root / "dodo.py")


def clean_build_of(layout: Layout, dest: Path) -> dict[str, bytes]:
    """What a clean build of `layout`'s exchange, as it is now, produces."""
    fresh = make_project(dest, orders=False)
    for folder in ("orders", "recipes", "checkpoints", "reviews"):
        shutil.rmtree(fresh.exchange / folder)
        shutil.copytree(layout.exchange / folder, fresh.exchange / folder, symlinks=True)
    result = doit(fresh.root, timeout=120)
    assert result.code in (0, 1), result.out + result.err
    return outputs(fresh)


def check_quiet(result: Result) -> None:
    both = result.out + result.err
    assert "Traceback" not in both, both[-3000:]
    assert "unexpected error" not in both, both[-3000:]


def order_doc(layout: Layout, order_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(layout.order_file(order_id).read_bytes())
    return data


def line_for(output: str, path: str, reason: str) -> list[str]:
    return [x for x in output.splitlines() if x.startswith(f"{path}: ") and reason in x]


DOCTRINE = (".toyfoundry/doctrine/objects/", "doctrine index (objects)")


def split_archive(found: dict[str, bytes]) -> tuple[dict[str, bytes], set[str]]:
    """(the deliverables, the doctrine objects): the archive is append-only by design, so it
    also keeps what a consistent build of the exchange as the race left it promoted."""
    kept = {k: v for k, v in found.items() if not k.startswith(DOCTRINE)}
    return kept, {k for k in found if k.startswith(DOCTRINE[0])}


def matches_clean(layout: Layout, tmp_path: Path) -> None:
    """The deliverables equal a clean build's; the doctrine archive may hold more (objects
    promoted by a consistent build of a state a race left behind), never less."""
    ours, our_archive = split_archive(outputs(layout))
    clean, clean_archive = split_archive(clean_build_of(layout, tmp_path / "clean"))
    assert ours == clean
    assert clean_archive <= our_archive


def rebuild_matches_clean(layout: Layout, tmp_path: Path) -> None:
    """The build after the race ends equal to a clean build of the exchange as it is now."""
    unhooked(layout)
    again = doit(layout.root, timeout=120)
    check_quiet(again)
    assert again.code == 0, again.out + again.err
    matches_clean(layout, tmp_path)


# --------------------------------------------------------------------------- nothing hangs

SWAPS = {
    "fifo": (
        "tmp = layout.orders_dir / '.swap'\nos.mkfifo(tmp)\n"
        f"os.replace(tmp, layout.order_file({ORDER!r}))",
        "is a FIFO, not a regular file",
    ),
    "link to /dev/zero": (
        "tmp = layout.orders_dir / '.swap'\nos.symlink('/dev/zero', tmp)\n"
        f"os.replace(tmp, layout.order_file({ORDER!r}))",
        "is a symbolic link; links are not followed",
    ),
    "folder": (
        "tmp = layout.orders_dir / '.swap'\nos.mkdir(tmp)\n"
        f"os.unlink(layout.order_file({ORDER!r}))\nos.rename(tmp, layout.order_file({ORDER!r}))",
        "is a directory, not a regular file",
    ),
    "recipe fifo": (
        "tmp = layout.recipes_dir / '.swap'\nos.mkfifo(tmp)\n"
        "os.replace(tmp, layout.recipe_file('bolt-bunny'))",
        "is a FIFO, not a regular file",
    ),
}


@pytest.mark.parametrize("step", ["scan", "plan", f"mint:{ORDER}"])
@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_an_input_swapped_for_a_fifo_or_device_never_hangs(
    tmp_path: Path, step: str, swap: str
) -> None:
    """Swapped by rename between the plan's scan and its hashing (`scan`): the plan reads
    the odd file, its one line is printed and the rest builds. Between the plan and the
    tasks (`plan`), or between an order's mint and its rituals (`mint:`): the tasks that
    read it refuse it, it changed during the build. No hang; and once the same bytes are
    back (a new file), the next build is a clean one."""
    layout = make_project(tmp_path / "project")
    act, reason = SWAPS[swap]
    hooked(layout, step, act)
    result = doit(layout.root, timeout=120)  # a hang fails here, with the timeout
    check_quiet(result)
    assert result.code == 1, result.out + result.err
    path = (
        "exchange/recipes/bolt-bunny.json" if "recipe" in swap else f"exchange/orders/{ORDER}.json"
    )
    reasons = [reason] if step == "scan" else ["changed during the build; run `doit` again"]
    if step.startswith("mint:") and "recipe" in swap:
        # the other recipe's order may be done before the swap: then only the validate
        # task, last, reads the recipe, and says what it is now
        reasons.append(reason)
    output = result.out + result.err
    assert any(line_for(output, path, wording) for wording in reasons), output
    if step == "scan":
        assert set(GLOBAL) <= set(executed(result.out)), result.out
    # nothing odd was hashed or recorded as an input's content
    assert b"/dev/zero" not in (layout.dep_db).read_bytes()
    # the file comes back: the build ends as a clean one
    target = layout.recipe_file("bolt-bunny") if "recipe" in swap else layout.order_file(ORDER)
    if target.is_dir() and not target.is_symlink():
        target.rmdir()
    else:
        target.unlink()
    source = REPO / "exchange" / target.relative_to(layout.root).relative_to("exchange")
    shutil.copy2(REPO / source, target)
    rebuild_matches_clean(layout, tmp_path)


# --------------------------------------------------------------------------- one snapshot

NEW_ORDER = "2025-10-29-001"


def _new_order_bytes(layout: Layout) -> bytes:
    doc = {**order_doc(layout, LATER), "order_id": NEW_ORDER, "seed": 20251029001}
    return json.dumps(doc, indent=2).encode()


@pytest.mark.parametrize("step", ["scan", "plan"])
def test_a_half_written_new_order_finished_mid_build(tmp_path: Path, step: str) -> None:
    """The plan saw 60 bytes (no recipe, no chain); the mint would read the whole order."""
    layout = make_project(tmp_path / "project")
    assert doit(layout.root, timeout=120).code == 0
    whole = _new_order_bytes(layout)
    layout.order_file(NEW_ORDER).write_bytes(whole[:60])
    (layout.root / "whole.json").write_bytes(whole)
    hooked(
        layout,
        step,
        f"Path(layout.order_file({NEW_ORDER!r})).write_bytes((layout.root / 'whole.json').read_bytes())",
    )
    result = doit(layout.root, timeout=120)
    check_quiet(result)
    (layout.root / "whole.json").unlink()
    if step == "scan":
        # finished before the plan hashed and parsed it: the plan is of the whole order
        assert result.code == 0, result.out + result.err
        assert (
            split_archive(outputs(layout))[0]
            == split_archive(clean_build_of(layout, tmp_path / "clean-now"))[0]
        )
    else:
        assert result.code != 0, "a build on a mix of two snapshots exited 0"
        assert line_for(
            result.out + result.err, f"exchange/orders/{NEW_ORDER}.json", "changed during the build"
        ), result.out + result.err
    rebuild_matches_clean(layout, tmp_path)


def _renamed_over(layout: Layout) -> str:
    """Python that renames a finished order of another recipe over ORDER."""
    return (
        f"doc = json.loads(layout.order_file({ORDER!r}).read_bytes())\n"
        "doc.update(recipe='bolt-bunny', seed=77)\n"
        "tmp = layout.orders_dir / '.incoming.json'\n"
        "tmp.write_text(json.dumps(doc))\n"
        f"os.replace(tmp, layout.order_file({ORDER!r}))"
    )


@pytest.mark.parametrize("step", ["plan", f"mint:{ORDER}"])
def test_an_order_renamed_over_one_of_another_recipe_mid_build(tmp_path: Path, step: str) -> None:
    """Before its mint (`plan`) or between its mint and its rituals (`mint:`): the task that
    reads the new bytes fails with one line, and nothing is built on a mix of recipes."""
    layout = make_project(tmp_path / "project")
    hooked(layout, step, "import json\n" + _renamed_over(layout))
    result = doit(layout.root, timeout=120)
    check_quiet(result)
    assert result.code != 0, "a build on a mix of two snapshots exited 0"
    assert line_for(
        result.out + result.err, f"exchange/orders/{ORDER}.json", "changed during the build"
    ), result.out + result.err
    # what was written is of the old snapshot: the order's chain is still sprocket-scout's
    chain = layout.chain_file(ORDER)
    if chain.exists():
        assert json.loads(chain.read_bytes())["recipe"] == "sprocket-scout"
    rebuild_matches_clean(layout, tmp_path)


@pytest.mark.parametrize("odd", ["fifo", "link"])
def test_an_order_planned_as_a_fifo_and_restored_mid_build(tmp_path: Path, odd: str) -> None:
    """The plan found a FIFO (or a link) and put the order in no chain; the order's bytes
    are back before its mint: minting them now would build on a chain the plan never drew."""
    layout = make_project(tmp_path / "project")
    path = layout.order_file(ORDER)
    (layout.root / "whole.json").write_bytes(path.read_bytes())
    path.unlink()
    if odd == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(layout.root / "whole.json")
    hooked(
        layout,
        "plan",
        "tmp = layout.orders_dir / '.back'\n"
        "tmp.write_bytes((layout.root / 'whole.json').read_bytes())\n"
        f"os.replace(tmp, layout.order_file({ORDER!r}))",
    )
    result = doit(layout.root, timeout=120)
    check_quiet(result)
    assert result.code == 1, result.out + result.err
    assert line_for(
        result.out + result.err, f"exchange/orders/{ORDER}.json", "changed during the build"
    ), result.out + result.err
    (layout.root / "whole.json").unlink()
    rebuild_matches_clean(layout, tmp_path)


def test_a_recipe_edited_mid_build_fails_its_orders_not_the_factory(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "project")
    hooked(
        layout,
        "plan",
        "import json\n"
        "doc = json.loads(layout.recipe_file('bolt-bunny').read_bytes())\n"
        "doc['pass_score'] = doc['pass_score'] - 1\n"
        "layout.recipe_file('bolt-bunny').write_text(json.dumps(doc))",
    )
    result = doit(layout.root, timeout=120)
    check_quiet(result)
    assert result.code == 1, result.out + result.err
    assert line_for(
        result.out + result.err, "exchange/recipes/bolt-bunny.json", "changed during the build"
    ), result.out + result.err
    rebuild_matches_clean(layout, tmp_path)


# --------------------------------------------------------------------------- vanished


@pytest.mark.parametrize("gone", [ORDER, "2025-10-12-005"])
def test_an_order_deleted_mid_build(tmp_path: Path, gone: str) -> None:
    """No exit 2: the order is rejected as missing, its chain passes through, the global
    tasks run; the next build drops it and equals a clean build without it."""
    layout = make_project(tmp_path / "project")
    hooked(layout, "plan", f"os.unlink(layout.order_file({gone!r}))")
    result = doit(layout.root, timeout=120)
    check_quiet(result)
    assert result.code == 1, result.out + result.err
    assert line_for(result.out + result.err, f"exchange/orders/{gone}.json", "does not exist")
    ran = executed(result.out)
    assert set(GLOBAL) <= set(ran), result.out
    assert f"report:{LATER}" in ran
    unhooked(layout)
    again = doit(layout.root, timeout=120)
    check_quiet(again)
    assert again.code == 0, again.out + again.err
    # a clean build without the order, but for what any removed order leaves behind: its
    # attempts in the ledgers (the quilt notes them) and its build folder
    assert without(outputs(layout), gone) == without(
        clean_build_of(layout, tmp_path / "clean"), gone
    )


def without(found: dict[str, bytes], order_id: str) -> dict[str, bytes]:
    """The outputs less a removed order's build folder and the quilt's notes about it."""
    out = {k: v for k, v in found.items() if f"/build/{order_id}/" not in k}
    quilt = json.loads(out["quilt (without telemetry)"])
    quilt["skipped"] = [s for s in quilt["skipped"] if order_id not in s]
    out["quilt (without telemetry)"] = json.dumps(quilt, sort_keys=True).encode()
    return out


def test_a_review_deleted_mid_build_is_no_review(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "project")
    review = {
        "schema_version": 1,
        "order_id": ORDER,
        "decisions": [],
    }
    layout.review_file(ORDER).write_text(json.dumps(review))
    hooked(layout, "plan", f"os.unlink(layout.review_file({ORDER!r}))")
    result = doit(layout.root, timeout=120)
    check_quiet(result)
    assert result.code in (0, 1), result.out + result.err
    assert "does not exist" not in result.out + result.err
    rebuild_matches_clean(layout, tmp_path)


# --------------------------------------------------------------------------- the lock

HOLDER = """
import sys
from pathlib import Path
from toyfoundry.store.lock import foundry_lock
with foundry_lock(Path(sys.argv[1]), purpose="nightly build"):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "doit", "--lock-timeout", "0.3"],
        ["-m", "toyfoundry", "build", "--lock-timeout", "0.3"],
    ],
    ids=["doit", "toyfoundry build"],
)
def test_a_build_waiting_for_the_lock_says_who_and_gives_up(
    tmp_path: Path, command: list[str]
) -> None:
    layout = make_project(tmp_path / "project")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOYFOUNDRY_ROOT": str(layout.root)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(layout.lock_file)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        waiter = subprocess.run(
            [sys.executable, *command],
            cwd=layout.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    err = waiter.stderr
    assert waiter.returncode == 3, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[0].startswith(
        f"toyfoundry: waiting for the foundry lock (held by pid {holder.pid}"
    )
    assert ": nightly build, for " in lines[0]
    assert len(lines) == 2 and lines[1].startswith(
        "toyfoundry: error: the foundry lock is still held"
    )
    assert not layout.rollup.exists()


# --------------------------------------------------------------------------- FIFO churn

SOAK = os.environ.get("TOYFOUNDRY_SOAK") == "1"
#: Seconds of churn: two minutes in the long form, a few builds in `make test`.
CHURN_SECONDS = 120.0 if SOAK else 6.0


def _churn(layout: Layout, stop: threading.Event, swaps: list[int]) -> None:
    """Swap ORDER between its bytes, a FIFO and a link to /dev/zero, each by rename."""
    path = layout.order_file(ORDER)
    good = (REPO / "exchange" / "orders" / f"{ORDER}.json").read_bytes()
    temp = layout.orders_dir / ".churn"
    turn = 0
    while not stop.is_set():
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        if turn % 3 == 0:
            temp.write_bytes(good)
        elif turn % 3 == 1:
            os.mkfifo(temp)
        else:
            temp.symlink_to("/dev/zero")
        os.replace(temp, path)
        turn += 1
        swaps[0] = turn
        stop.wait(0.003)
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    path.unlink()
    path.write_bytes(good)


def test_fifo_churn_never_hangs_a_build(tmp_path: Path) -> None:
    """`doit` in a loop while an order keeps turning into a FIFO or a link to /dev/zero and
    back: every build ends (a hang fails at the timeout), without a traceback; one that
    exits 0 built what a clean build gives; once the churn stops, a build (at most the
    second) is clean."""
    layout = make_project(tmp_path / "project")
    reference = make_project(tmp_path / "reference")
    assert doit(reference.root, timeout=120).code == 0
    expected = split_archive(outputs(reference))[0]
    stop = threading.Event()
    swaps = [0]
    churn = threading.Thread(target=_churn, args=(layout, stop, swaps), daemon=True)
    churn.start()
    builds: list[int] = []
    deadline = time.monotonic() + CHURN_SECONDS
    try:
        while time.monotonic() < deadline or len(builds) < 3:
            result = doit(layout.root, timeout=120)
            check_quiet(result)
            assert result.code in (0, 1), result.out + result.err
            builds.append(result.code)
            if result.code == 0:
                assert split_archive(outputs(layout))[0] == expected, "exit 0, wrong outputs"
    finally:
        stop.set()
        churn.join(timeout=30)
    assert swaps[0] > len(builds), "the churn did not run alongside the builds"
    final = doit(layout.root, timeout=120)
    check_quiet(final)
    if final.code != 0:
        # known limit (docs/threat-model.md): a build the churn raced can leave one order
        # whose rituals say "belongs to no chain" for the first build after the churn;
        # the one after it settles
        assert final.code == 1, final.out + final.err
        final = doit(layout.root, timeout=120)
        check_quiet(final)
    assert final.code == 0, final.out + final.err
    assert split_archive(outputs(layout))[0] == expected
