"""Telemetry: stitch build artefacts and ledgers into the quilt, exports, reports and dashboard."""

from __future__ import annotations

import hashlib
from pathlib import Path

from toyfoundry import __version__


def fingerprint() -> str:
    """A digest of this package's code and the foundry version.

    The graph lists it as a dependency of every telemetry output, so changing how
    reports or exports are made rebuilds them without `doit forget`.
    """
    digest = hashlib.sha256(f"toyfoundry {__version__}\n".encode())
    for path in sorted(Path(__file__).parent.glob("*.py"), key=lambda p: p.name):
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
