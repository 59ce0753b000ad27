"""atheris harness for the exchange loader: any bytes, any folder, never an unexpected exception.

Run it outside the test suite (see fuzz/README.md):

    python fuzz/exchange_loader.py -max_total_time=300 fuzz/corpus

The first input byte picks the file's kind (order, recipe, checkpoint, review) and
whether the JSON Schema check runs; the rest is the file. The loader must return a
model or one-line problems naming the file; anything else is a crash atheris reports
with the input that caused it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from toyfoundry.exchange.loader import Exchange
    from toyfoundry.store.layout import Layout

REPO = Path(__file__).resolve().parents[1]
KINDS = (
    ("order", "orders"),
    ("recipe", "recipes"),
    ("checkpoint", "checkpoints"),
    ("review", "reviews"),
)


def make_layout() -> Layout:
    """A throwaway project with the sample recipes and checkpoints, so orders can refer to them."""
    root = Path(tempfile.mkdtemp(prefix="toyfoundry-fuzz-"))
    for folder in ("recipes", "checkpoints", "orders", "reviews"):
        (root / "exchange" / folder).mkdir(parents=True)
        for path in (REPO / "exchange" / folder).glob("*.json"):
            if folder != "orders":
                shutil.copyfile(path, root / "exchange" / folder / path.name)
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    return Layout(root)


LAYOUT = make_layout()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kind, folder = KINDS[data[0] % len(KINDS)]
    path = LAYOUT.exchange / folder / "2025-11-03-001.json"
    path.write_bytes(data[1:])
    loaded = Exchange(LAYOUT, schema_check=bool(data[0] & 0x80)).load(kind, path)
    if loaded.model is None and not loaded.problems:
        raise AssertionError("neither a model nor a problem")
    for problem in loaded.problems:
        line = str(problem)
        if "\n" in line or not line.startswith(f"exchange/{folder}/2025-11-03-001.json: "):
            raise AssertionError(f"not one line naming the file: {line!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(LAYOUT.root, ignore_errors=True)


if __name__ == "__main__":
    main()
