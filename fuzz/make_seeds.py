"""Write the harness's seed corpus: the sample exchange and the hostile corpus, one file each.

    python fuzz/make_seeds.py fuzz/corpus

Each seed is the kind byte `exchange_loader.py` reads first (its folder) followed by
the file, so the fuzzer starts from real orders, recipes, checkpoints and reviews
instead of discovering JSON from random bytes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("orders", "recipes", "checkpoints", "reviews")  # the harness's kind order


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for index, folder in enumerate(FOLDERS):
        for base in (REPO / "exchange" / folder, REPO / "tests" / "hostile" / folder):
            for path in sorted(base.glob("*.json")):
                for schema_check in (0, 0x80):
                    seed = bytes([index | schema_check]) + path.read_bytes()
                    name = hashlib.sha1(seed).hexdigest()
                    (out / name).write_bytes(seed)
                    written += 1
    print(f"{written} seeds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus")))
