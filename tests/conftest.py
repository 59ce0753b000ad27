"""Shared fixtures: a throwaway project per test, the CLI and doit as a user runs them."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from toyfoundry.store.layout import Layout

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "exchange"


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    if folder.exists():
        for path in sorted(folder.rglob("*")):
            st = path.lstat()
            digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def _repo_untouched() -> Iterator[None]:
    """No test may write into the repository's own exchange/ or .toyfoundry/."""
    before = (_tree_digest(REPO / "exchange"), _tree_digest(REPO / ".toyfoundry"))
    yield
    after = (_tree_digest(REPO / "exchange"), _tree_digest(REPO / ".toyfoundry"))
    assert before == after, "a test wrote into the repository's exchange/ or .toyfoundry/"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder, so a default root never points at the repo."""
    home = tmp_path / "_cwd"
    home.mkdir()
    monkeypatch.chdir(home)
    monkeypatch.setenv("TOYFOUNDRY_ROOT", str(home))
    monkeypatch.delenv("TOYFOUNDRY_FAULT", raising=False)


def make_project(dest: Path, *, orders: bool = True) -> Layout:
    """A project folder like a fresh clone: the sample exchange inputs, pyproject and dodo."""
    dest.mkdir(parents=True, exist_ok=True)
    for folder in ("recipes", "checkpoints", "orders", "reviews"):
        src = SAMPLE / folder
        target = dest / "exchange" / folder
        target.mkdir(parents=True, exist_ok=True)
        if folder == "orders" and not orders:
            continue
        for path in sorted(src.glob("*.json")):
            shutil.copy2(path, target / path.name)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy2(REPO / "dodo.py", dest / "dodo.py")
    return Layout(dest)


@pytest.fixture
def project(tmp_path: Path) -> Layout:
    return make_project(tmp_path / "project")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> object:
    """Run `toyfoundry ARGS` in-process, as the console script would."""
    from toyfoundry.cli import main

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def doit(root: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Result:
    """Run `doit ARGS` in a project folder in a fresh process, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def executed(output: str) -> list[str]:
    """Names of the tasks doit ran (`.  name` lines of the console/plain reporter)."""
    return sorted(line[3:].strip() for line in output.splitlines() if line.startswith(".  "))
