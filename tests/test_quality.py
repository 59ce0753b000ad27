"""The code stays typed and lint-clean: `mypy --strict` on the package, `ruff` everywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SOURCES = ["toyfoundry", "tests", "bench", "fuzz", "dodo.py"]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (it comes with the `test` extra)")
    return found


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PATH": "/usr/bin:/bin",
            "MYPY_CACHE_DIR": str(tmp_path / "mypy"),
            "RUFF_CACHE_DIR": str(tmp_path / "ruff"),
        },
    )


def test_mypy_strict(tmp_path: Path) -> None:
    proc = _run(_tool("mypy"), "toyfoundry", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check_and_format(tmp_path: Path) -> None:
    ruff = _tool("ruff")
    check = _run(ruff, "check", *SOURCES, tmp_path=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = _run(ruff, "format", "--check", *SOURCES, tmp_path=tmp_path)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
