"""The command line's contract: help, version, and the exit codes 0 / 1 / 2 / 3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from toyfoundry import __version__


def test_module_and_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "toyfoundry", "--version"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"toyfoundry {__version__}"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from toyfoundry.cli import COMMANDS, main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_no_command_is_a_usage_error(run_cli: Any) -> None:
    assert run_cli().code == 2


def test_unknown_command_is_a_usage_error(run_cli: Any) -> None:
    result = run_cli("frobnicate")
    assert result.code == 2
    assert "invalid choice" in result.err


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_build_lock_timeout_that_is_not_seconds_is_a_usage_error(
    run_cli: Any, value: str
) -> None:
    result = run_cli("build", "--lock-timeout", value)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        f"toyfoundry build: argument --lock-timeout: expected a number of seconds"
        f" (0 or more), got {value!r}"
    ]


def test_unexpected_error_exits_3_with_a_log(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import toyfoundry.commands.validate as validate

    def boom(*_: object, **__: object) -> int:
        raise RuntimeError("the press jammed")

    monkeypatch.setattr(validate, "run", boom)
    monkeypatch.setenv("TOYFOUNDRY_ROOT", str(tmp_path))
    result = run_cli("validate")
    assert result.code == 3
    assert "unexpected error: RuntimeError: the press jammed" in result.err
    log = tmp_path / ".toyfoundry" / "logs" / "crash.log"
    assert f"details in {log}" in result.err
    assert "Traceback" in log.read_text()
    assert "Traceback" not in result.err


def test_a_command_run_in_a_folder_of_the_project_works_on_the_project(
    run_cli: Any, project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In `exchange/orders/`, the project is the folder above that holds `exchange/`:
    a relative path names its file, and nothing is made in the working folder."""
    monkeypatch.delenv("TOYFOUNDRY_ROOT", raising=False)
    orders = project.orders_dir
    monkeypatch.chdir(orders)
    before = sorted(p.name for p in orders.iterdir())
    bad = orders / "2025-11-01-001.json"
    bad.write_text("{}")
    result = run_cli("validate", "2025-11-01-001.json")
    assert result.code == 1
    assert "exchange/orders/2025-11-01-001.json: order_id: is required" in result.out
    bad.unlink()
    assert run_cli("validate", *before).code == 0
    assert run_cli("review", "list").code == 0
    assert sorted(p.name for p in orders.iterdir()) == before


def test_build_outside_a_project_says_so_and_makes_nothing(
    run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    monkeypatch.delenv("TOYFOUNDRY_ROOT", raising=False)
    monkeypatch.chdir(nowhere)
    result = run_cli("build")
    assert result.code == 1
    assert result.err.strip() == (
        f"toyfoundry build: {nowhere} holds no exchange/ folder; run it in the project"
        " folder, or give --root"
    )
    assert list(nowhere.iterdir()) == []


BUILD_N0 = ("build", "-n", "0", "--lock-timeout=30")


def test_build_passes_doits_own_options_to_doit(project: Any) -> None:
    """`toyfoundry build -n 0` is `doit -n 0`: doit's options are not ours to refuse."""
    from toyfoundry.cli import _build_argv

    assert _build_argv(["-n", "0", "--lock-timeout", "5", "mint:X"]) == (
        ["--lock-timeout", "5"],
        ["-n", "0", "mint:X"],
    )
    assert _build_argv(["-h"]) == (["-h"], [])
    assert _build_argv(["info", "-h"]) == ([], ["info", "-h"])
    proc = subprocess.run(
        [sys.executable, "-m", "toyfoundry", "--root", str(project.root), *BUILD_N0],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "toyfoundry: 16 task(s) run, 0 up to date of 16" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ("watch-orders", "--watch", "--interval", "0"),
        ("watch-exchange", "--target", "t", "--watch", "--interval", "-5"),
        ("watch", "--rescan", "0"),
        ("watch", "--quiet-period", "nan"),
        ("watch-exchange", "--target", "t", "--quiet-period", "soon"),
    ],
)
def test_a_watchers_period_that_would_spin_or_is_not_seconds_is_a_usage_error(
    run_cli: Any, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    result = run_cli("--root", tmp_path, *argv)
    assert result.code == 2
    assert "expected a number of seconds" in result.err and len(result.err.splitlines()) == 1
