"""Measurements that must run inside a child process: the telemetry lint and its parse-only floor.

    python -m bench.probes lint PROJECT [--repeats 3]

Prints one JSON object: lines checked, best seconds of `lint_paths`, and the best
seconds of the floor (orjson-parsing every ledger line and nothing else), both over
the same files. A child, so the suite's own process never imports the product.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _floor(paths: list[Path]) -> tuple[int, float]:
    import orjson

    started = time.perf_counter()
    lines = 0
    for path in paths:
        with path.open("rb") as fh:
            for line in fh:
                orjson.loads(line)
                lines += 1
    return lines, time.perf_counter() - started


def lint(project: Path, repeats: int) -> dict[str, Any]:
    from toyfoundry.store.layout import Layout
    from toyfoundry.telemetry.lint import lint_paths

    layout = Layout(project)
    ledgers = [p for p in (layout.mint_ledger, layout.ritual_ledger) if p.exists()]
    best = best_floor = float("inf")
    lines = floor_lines = findings = 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = lint_paths(layout)
        best = min(best, time.perf_counter() - started)
        lines, findings = result.lines, len(result.findings)
        floor_lines, seconds = _floor(ledgers)
        best_floor = min(best_floor, seconds)
    return {
        "lines": lines,
        "seconds": best,
        "findings": findings,
        "floor_lines": floor_lines,
        "floor_seconds": best_floor,
        "bytes": sum(p.stat().st_size for p in ledgers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["lint"])
    parser.add_argument("project", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    json.dump(lint(args.project.resolve(), args.repeats), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
