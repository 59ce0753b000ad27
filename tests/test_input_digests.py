"""The digests of the mint's inputs, taken again by the rituals: always of the bytes the file
holds now, and none for what the reader refuses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from toyfoundry.forge import inputs
from toyfoundry.store.layout import Layout


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rewrite_keeping_stats(path: Path, data: bytes) -> None:
    """New bytes of the same length, in place (same inode), with the old mtime restored."""
    st = path.stat()
    assert len(data) == st.st_size
    with path.open("r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_file_rewritten_with_its_stats_kept_gives_its_new_digest(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    path.write_bytes(b'{"a": 1}')
    assert inputs.file_digest(path) == _sha(b'{"a": 1}')
    _rewrite_keeping_stats(path, b'{"a": 2}')
    assert inputs.file_digest(path) == _sha(b'{"a": 2}')
    assert inputs.file_digest(path, max_bytes=2) is None  # over the limit: refused
    path.unlink()
    assert inputs.file_digest(path) is None


def test_what_the_reader_refuses_has_no_digest(tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_bytes(b"{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert inputs.file_digest(link) is None
    twin = tmp_path / "twin.json"
    os.link(target, twin)
    assert inputs.file_digest(twin) is None
    assert inputs.file_digest(tmp_path / "absent" / "x.json") is None


def test_display_path_is_the_loaders_display(tmp_path: Path) -> None:
    from toyfoundry.exchange.loader import display

    layout = Layout(tmp_path / "proj")
    for path in (
        layout.root / "exchange" / "orders" / "x.json",
        layout.root,
        tmp_path / "projx" / "y.json",
        tmp_path / "elsewhere.json",
        Path("relative/z.json"),
    ):
        assert inputs.display_path(layout.root, path) == display(layout, path)
