"""Helpers shared by the forge and telemetry tests: projects, the CLI, artefacts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_project as _make_project
from toyfoundry.cli import main
from toyfoundry.forge.mint import mint_order
from toyfoundry.forge.rituals import run_rituals
from toyfoundry.formats.models import MintArtefact
from toyfoundry.store.layout import Layout

SAMPLE = Path(__file__).resolve().parents[1] / "exchange"


def make_project(root: Path, *, orders: bool = True) -> Layout:
    """A project with the sample recipes and checkpoints (and orders) copied in."""
    return _make_project(root, orders=orders)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def build(layout: Layout, *order_ids: str) -> None:
    """Mint and run the rituals of each order, in the given order, without doit."""
    for order_id in order_ids:
        mint_order(layout, order_id)
        run_rituals(layout, order_id)


def cli(capsys: pytest.CaptureFixture[str], layout: Layout, *args: str) -> tuple[int, str, str]:
    """`toyfoundry --root PROJECT ARGS` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(["--root", str(layout.root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def load(layout: Layout, order_id: str) -> MintArtefact:
    return MintArtefact.model_validate_json(layout.mint_artefact(order_id).read_bytes())


@contextlib.contextmanager
def foundry_graph(root: Path) -> Iterator[dict[str, Any]]:
    """A sample project at `root`, and the namespace doit loads the foundry's tasks from, with
    the project as the working folder for the block (and a fresh plan on both sides)."""
    from toyfoundry.graph import dodo, tasks

    _make_project(root)
    with contextlib.chdir(root):
        tasks.forget_plan()
        try:
            yield {name: getattr(dodo, name) for name in dodo.__all__}
        finally:
            tasks.forget_plan()
