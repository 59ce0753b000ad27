"""Hostile machines: files the foundry may not read, run as a user who is not root.

Root reads any file whatever its mode, so these builds run as `nobody` (through
`setpriv`, or `runuser`) on a copy of the project that user owns; a suite that is
not run as root runs them as itself. An unreadable order, review, checkpoint or
recipe, or an input folder that cannot be listed, is a problem of its own file: one
line each, from the build and from `toyfoundry validate` alike, the rest of the graph
builds and the global tasks run. Once the mode is fixed, the next build ends as a
clean one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Result, executed, make_project
from tests.test_crash_loop import outputs
from tests.test_hostile_timing import GLOBAL, ORDER, check_quiet, clean_build_of, matches_clean
from toyfoundry.store.layout import Layout


def _drop_privileges() -> list[str] | None:
    """The command prefix that runs a program as `nobody`, [] when not root, None if impossible."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    return None


PREFIX = _drop_privileges()
pytestmark = pytest.mark.skipif(
    PREFIX is None, reason="run as root without setpriv or runuser: cannot drop to a plain user"
)


@pytest.fixture
def plain_project() -> Iterator[Layout]:
    """A project under a folder `nobody` can reach (pytest's own tmp folder is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="toyfoundry-plain-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        layout = make_project(base / "project")
        if os.geteuid() == 0:
            for folder, dirs, files in os.walk(base):
                for name in [*dirs, *files]:
                    os.chown(os.path.join(folder, name), 65534, 65534, follow_symlinks=False)
            os.chown(base, 65534, 65534)
        yield layout
    finally:
        for folder, dirs, _ in os.walk(base):
            for name in dirs:
                os.chmod(os.path.join(folder, name), 0o755)
        shutil.rmtree(base, ignore_errors=True)


def as_plain_user(root: Path, *args: str) -> Result:
    assert PREFIX is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(root),
        "TOYFOUNDRY_ROOT": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(
        [*PREFIX, sys.executable, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _review(layout: Layout) -> Path:
    path = layout.review_file(ORDER)
    path.write_text(json.dumps({"schema_version": 1, "order_id": ORDER, "decisions": []}))
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    return path


#: What is made unreadable -> (the path, the line the build and validate print for it).
CASES = {
    "order": (f"exchange/orders/{ORDER}.json", "-: cannot be read: permission denied"),
    "review": (f"exchange/reviews/{ORDER}.json", "-: cannot be read: permission denied"),
    "checkpoint": ("exchange/checkpoints/operational.json", "-: cannot be read: permission denied"),
    "recipe": ("exchange/recipes/bolt-bunny.json", "-: cannot be read: permission denied"),
    "recipes folder": ("exchange/recipes", "-: cannot be listed: Permission denied"),
    "reviews folder": ("exchange/reviews", "-: cannot be listed: Permission denied"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unreadable_input_is_its_own_files_problem(
    plain_project: Layout, tmp_path: Path, case: str
) -> None:
    layout = plain_project
    if case == "review":
        _review(layout)
    shown, line = CASES[case]
    target = layout.root / shown
    mode = target.stat().st_mode & 0o777
    target.chmod(0)
    try:
        built = as_plain_user(layout.root, "-m", "doit")
        checked = as_plain_user(layout.root, "-m", "toyfoundry", "validate")
    finally:
        target.chmod(mode)
    for result in (built, checked):
        check_quiet(result)
        assert result.code == 1, result.out + result.err
        assert f"{shown}: {line}" in (result.out + result.err).splitlines(), result.out + result.err
    ran = executed(built.out)
    assert set(GLOBAL) <= set(ran), built.out
    assert "validate" in ran
    # an order that reads none of these files builds as ever
    other = "2025-10-28-002" if "bolt-bunny" not in shown else "2025-10-27-014"
    if case == "checkpoint":
        other = ORDER
    if not case.endswith("folder"):  # every order looks for its recipe and its review
        status = json.loads(layout.report_json(other).read_bytes())["status"]
        assert status in ("built", "dry-run", "awaiting-review"), (other, status)

    # readable again: the next build ends as a clean one
    again = as_plain_user(layout.root, "-m", "doit")
    check_quiet(again)
    assert again.code == 0, again.out + again.err
    matches_clean(layout, tmp_path)


def test_a_build_as_a_plain_user_matches_roots(plain_project: Layout, tmp_path: Path) -> None:
    """Nothing in a build needs root: the same outputs as a clean build by root."""
    built = as_plain_user(plain_project.root, "-m", "doit")
    check_quiet(built)
    assert built.code == 0, built.out + built.err
    assert outputs(plain_project) == clean_build_of(plain_project, tmp_path / "clean")
