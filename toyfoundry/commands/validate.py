"""`toyfoundry validate [PATH ...]`: the plan's schema validator, also a pre-commit hook."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toyfoundry.exchange.loader import KIND_BY_FOLDER
from toyfoundry.exchange.validate import exchange_files, validate_exchange, validate_paths
from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="files to check, or exchange folders (default: the whole exchange)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _files(layout: Layout, path: Path) -> list[Path]:
    """A path named on the line: the exchange folder or one of its known folders stands
    for the files in it (as with no path); anything else is checked as it is."""
    exchange = layout.exchange.absolute()
    try:
        if path.is_dir() and not path.is_symlink():
            if path.resolve() == exchange.resolve():
                return exchange_files(layout)
            if path.resolve().parent == exchange.resolve() and path.name in KIND_BY_FOLDER:
                return safe_read.list_json(layout.exchange / path.name)
    except (OSError, safe_read.ReadError):
        pass
    return [path]


def run(args: argparse.Namespace, layout: Layout) -> int:
    if args.paths:
        paths = [p if p.is_absolute() else Path.cwd() / p for p in args.paths]
        problems = validate_paths(layout, [f for p in paths for f in _files(layout, p)])
    else:
        problems = validate_exchange(layout)
    if args.format == "json":
        json.dump(
            {"ok": not problems, "problems": [p.as_dict() for p in problems]}, sys.stdout, indent=2
        )
        sys.stdout.write("\n")
    else:
        for problem in problems:
            print(problem)
    return 1 if problems else 0
