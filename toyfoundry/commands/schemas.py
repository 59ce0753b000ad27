"""`toyfoundry schemas --check | --write`: the committed schemas must equal what the models generate."""

from __future__ import annotations

import argparse

from toyfoundry.formats import schemas
from toyfoundry.store.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="exit 1 when schemas/ has drifted")
    group.add_argument("--write", action="store_true", help="regenerate schemas/ from the models")


def run(args: argparse.Namespace, layout: Layout) -> int:
    folder = layout.root / "schemas"
    if args.write:
        for path in schemas.write_all(folder):
            print(f"wrote {path.relative_to(layout.root)}")
        return 0
    drift = schemas.drift(folder)
    for line in drift:
        print(line)
    if not drift:
        print(f"{len(schemas.SCHEMA_MODELS)} schemas match the models")
    return 1 if drift else 0
