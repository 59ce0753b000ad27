"""`python -m bench`: measure every figure against its reference and publish JSON and a table.

python -m bench                      # N = 100 and 1,000 (about 15 minutes on 2 cores)
python -m bench --n 100,1000 --big   # and the full build, no-op, floor and watch at N = 5,000
python -m bench --n 1000 --huge      # and the same at N = 10,000 (about 20 minutes on 2 cores)
python -m bench --n 1000 --huge --full-only   # the full builds alone: the scale ratios
python -m bench --quick --n 6 --out /tmp/b --md /tmp/b/BENCHMARKS.md   # proves it works
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import publish
from bench.runner import REPO
from bench.suite import Figure, Measure, Options, results, scale_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="100,1000", help="comma-separated sizes (default 100,1000)")
    parser.add_argument(
        "--big", action="store_true", help="add the full build, no-op, floor and watch at N = 5,000"
    )
    parser.add_argument(
        "--huge",
        action="store_true",
        help="add the full build, no-op, floor and watch at N = 10,000",
    )
    parser.add_argument(
        "--full-only",
        action="store_true",
        help="the full build's figures alone at every size (Alfas/s and bytes per order against"
        " N = 1,000 in minutes)",
    )
    parser.add_argument("--quick", action="store_true", help="fewest repeats: proves it runs")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results",
        help="folder for <date>.json (default bench/results)",
    )
    parser.add_argument(
        "--md",
        type=Path,
        default=REPO / "BENCHMARKS.md",
        help="the Markdown file whose table is rewritten",
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.n.split(",") if s.strip()]

    work = args.work or Path(tempfile.mkdtemp(prefix="toyfoundry-bench-"))
    opts = Options.for_run(work, args.quick)
    started = time.monotonic()
    figures: list[Figure] = []
    try:
        for n in sizes:
            figures += Measure(n, opts).all(full_only=args.full_only)
        for big, n in ((args.big, 5000), (args.huge, 10_000)):
            if big:
                figures += Measure(n, opts).all(big=True, full_only=args.full_only)
        figures += scale_figures(figures)
    finally:
        opts.empty_trash()
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    doc = results(figures, started)
    path = publish.write_json(doc, args.out)
    publish.write_table(path, args.md)
    print(f"wrote {path} and the table in {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
