"""The production plan's five commands run as the plan writes them, through the foundry's code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, doit, make_project
from toyfoundry.aliases import PLAN_COMMANDS
from toyfoundry.cli import COMMANDS
from toyfoundry.store.layout import Layout

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in this environment (pip install -e .)")
    return str(path)


def env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TOYFOUNDRY_ROOT": str(root)}


def once(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script(argv[0]), *argv[1:]],
        cwd=root,
        env=env(root),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_every_plan_command_is_a_foundry_subcommand() -> None:
    assert set(PLAN_COMMANDS.values()) <= set(COMMANDS)
    pyproject = (REPO / "pyproject.toml").read_text()
    for name in PLAN_COMMANDS:
        assert f'{name} = "toyfoundry.aliases:{name}"' in pyproject
    readme = (REPO / "docs" / "operators.md").read_text()
    for name, sub in PLAN_COMMANDS.items():
        assert f"`{name}" in readme and f"`toyfoundry {sub}" in readme


def test_forge_mint_alfa_dry_run_mints_what_is_pending(project: Layout) -> None:
    result = once(project.root, "forge_mint_alfa", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "2025-10-12-005: dry-run: 12 of 12 Alfas" in result.stdout
    assert "wait for an earlier order of their recipe" in result.stdout
    assert not project.mint_artefact("2025-10-12-005").exists()  # a dry run writes no build
    assert project.mint_ledger.read_text().count('"dry_run":true') >= 12


def test_the_plan_commands_after_a_build(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "project")
    assert doit(layout.root).code == 0
    result = once(layout.root, "forge_mint_alfa")
    assert result.returncode == 0 and "nothing pending to mint" in result.stdout
    result = once(layout.root, "quilt_loom", "--export")
    assert result.returncode == 0 and "dashboard:" in result.stdout, result.stderr
    result = once(layout.root, "schema_validator")
    assert result.returncode == 0, result.stdout + result.stderr
    bad = layout.orders_dir / "2025-12-01-001.json"
    bad.write_text('{"schema_version": 1}')
    result = once(layout.root, "schema_validator", str(bad))
    assert result.returncode == 1 and "2025-12-01-001.json" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("exchange_watcher", "--target", "toyfoundry_ai_0", "--watch"),
        ("manufacturing_order_watcher", "--watch", "--interval", "30"),
    ],
)
def test_the_plan_watchers_watch_until_stopped(project: Layout, argv: tuple[str, ...]) -> None:
    proc = subprocess.Popen(
        [script(argv[0]), *argv[1:]],
        cwd=project.root,
        env=env(project.root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # its first report: it is running and watching
        assert first.strip(), proc.stderr.read() if proc.stderr else ""
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code in (0, 130, -signal.SIGTERM)


def test_the_pre_commit_hooks_install_the_package_and_its_dependencies() -> None:
    import tomllib

    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    assert "language: system" not in hooks and hooks.count("  language: python") == 2
    config = (REPO / ".pre-commit-config.yaml").read_text()
    assert "language: python" in config and "entry: python -m toyfoundry validate" in config
    listed = [
        line.strip()[2:]
        for line in config.splitlines()
        if line.strip().startswith("- ") and ">=" in line
    ]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert sorted(listed) == sorted(pyproject["project"]["dependencies"])
    version = pyproject["project"]["version"]
    assert f"rev: v{version}" in (REPO / "docs" / "operators.md").read_text()


def test_a_plan_command_takes_root_and_version_and_names_itself(
    project: Layout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from toyfoundry import __version__, aliases

    monkeypatch.chdir("/")
    monkeypatch.delenv("TOYFOUNDRY_ROOT", raising=False)
    assert aliases.forge_mint_alfa(["--dry-run", "--root", str(project.root)]) == 0
    assert aliases.schema_validator([f"--root={project.root}"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as version:
        aliases.quilt_loom(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.strip() == f"quilt_loom (toyfoundry {__version__})"
    assert aliases.exchange_watcher(["--root", str(project.root)]) == 2
    assert capsys.readouterr().err.startswith("exchange_watcher: ")
