"""The schema validator: every exchange file checked by its folder's schema and the foundry's rules."""

from __future__ import annotations

from pathlib import Path

from toyfoundry.errors import Problem
from toyfoundry.exchange.loader import Exchange, display, kind_for
from toyfoundry.store import safe_read
from toyfoundry.store.layout import INPUT_FOLDERS, Layout


def exchange_files(layout: Layout) -> list[Path]:
    """Every input file of the exchange, in a stable order (producers' temp files skipped);
    a folder that cannot be listed is left out here and reported by `folder_problems`."""
    files: list[Path] = []
    for folder in INPUT_FOLDERS:
        try:
            files += safe_read.list_json(layout.exchange / folder)
        except safe_read.ReadError:
            continue
    return files


def folder_problems(layout: Layout) -> list[Problem]:
    """One line for each input folder that is there but cannot be listed (a file, mode 000)."""
    problems: list[Problem] = []
    for folder in INPUT_FOLDERS:
        path = layout.exchange / folder
        try:
            safe_read.list_json(path)
        except safe_read.ReadError as exc:
            problems.append(Problem(display(layout, path), "-", exc.problem.reason))
    return problems


def validate_paths(
    layout: Layout, paths: list[Path], *, schema_check: bool = True
) -> list[Problem]:
    """Problems of the given files; a path outside the known exchange folders is itself a problem."""
    exchange = Exchange(layout, schema_check=schema_check)
    problems: list[Problem] = []
    for path in paths:
        shown = display(layout, path)
        if safe_read.is_skipped_name(path.name):
            continue
        kind = kind_for(layout, path)
        if kind is None:
            problems.append(
                Problem(
                    shown,
                    "-",
                    "is not in a known exchange folder (orders, recipes, checkpoints, reviews, reports)",
                )
            )
            continue
        if not path.name.endswith(".json"):
            problems.append(Problem(shown, "-", "exchange files must end in .json"))
            continue
        problems += exchange.load(kind, path).problems
    return problems


def validate_exchange(layout: Layout, *, schema_check: bool = True) -> list[Problem]:
    problems = folder_problems(layout)
    return problems + validate_paths(layout, exchange_files(layout), schema_check=schema_check)
