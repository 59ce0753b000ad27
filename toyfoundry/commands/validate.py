"""`toyfoundry validate [PATH ...]`: the plan's schema validator, also a pre-commit hook."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toyfoundry.exchange.validate import validate_exchange, validate_paths
from toyfoundry.store.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", type=Path, help="files to check (default: the whole exchange)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, layout: Layout) -> int:
    if args.paths:
        problems = validate_paths(
            layout, [p if p.is_absolute() else Path.cwd() / p for p in args.paths]
        )
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
