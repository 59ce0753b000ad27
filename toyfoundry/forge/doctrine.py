"""The doctrine archive: long-term, content-addressed, immutable storage of promoted Alfas.

Each promoted Alfa becomes one object: its canonical JSON (sorted keys, two-space
indent, trailing newline) stored at `.toyfoundry/doctrine/objects/<h[:2]>/<h>.json`
where h is the sha256 of exactly those bytes, made read-only. Objects never
change: archiving the same Alfa again (same content, same hash) writes nothing.
`index.jsonl` is an append-only ledger with one line per object, saying which
Alfa and order it holds and when it was archived. `verify` re-hashes every
indexed object and reports missing, tampered and unindexed ones.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from toyfoundry import caches
from toyfoundry.errors import Problem
from toyfoundry.exchange.loader import display
from toyfoundry.formats.models import (
    AlfaId,
    OrderId,
    ParamName,
    ParamValue,
    Sha256,
    Share,
    Strict,
    Timestamp,
    Version,
)
from toyfoundry.store.atomic import dumps_canonical, write_many_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.store.ledger import Ledger, extent, lines
from toyfoundry.store.runid import utc_now

#: Objects are created read-only: they never change.
OBJECT_MODE = 0o444


class DoctrineEntry(Strict):
    """One archived Alfa: everything needed to remake and judge it, and nothing time-dependent."""

    schema_version: Version
    alfa_id: AlfaId
    order_id: OrderId
    recipe: str
    recipe_version: str
    params: dict[ParamName, ParamValue]
    share: Share
    parent_id: AlfaId | None = None
    score: float


class IndexLine(Strict):
    """One line of `doctrine/index.jsonl`."""

    schema_version: Version
    sha256: Sha256
    alfa_id: AlfaId
    order_id: OrderId
    recipe: str
    score: float
    archived_at: Timestamp


def encode(entry: DoctrineEntry) -> bytes:
    """The object's bytes: the entry's canonical JSON."""
    return dumps_canonical(entry)


def digest_of(entry: DoctrineEntry) -> str:
    return hashlib.sha256(encode(entry)).hexdigest()


def objects_dir(layout: Layout) -> Path:
    return layout.doctrine / "objects"


def object_path(layout: Layout, digest: str) -> Path:
    return objects_dir(layout) / digest[:2] / f"{digest}.json"


def read_index(layout: Layout) -> tuple[list[IndexLine], list[Problem]]:
    """The index's entries, and a problem for each line that does not parse."""
    shown = display(layout, layout.doctrine_index)
    entries, problems = [], []
    for number, line in Ledger(layout.doctrine_index).read():
        try:
            entries.append(IndexLine.model_validate_json(line))
        except (ValidationError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "is invalid"
            problems.append(Problem(shown, f"line {number}", f"is not an index entry: {reason}"))
    return entries, problems


# The `doctrine_index` cache (`toyfoundry.caches`): index path -> (inode, bytes consumed,
# sha256 of those bytes, digests seen): the index is parsed once and then only its new
# tail, so archiving parses O(new entries), not O(history). The consumed bytes are hashed
# again on each call (far cheaper than parsing them): an index rewritten in place, even
# at the same inode and length, is parsed again from the start.
def indexed_digests(layout: Layout) -> set[str]:
    """The digests the index holds; lines that do not parse are left to `verify` to report."""
    path = layout.doctrine_index
    seen: dict[Path, tuple[int, int, str, set[str]]] = caches.current().table("doctrine_index")
    found = extent(path)
    if found is None:
        seen.pop(path, None)
        return set()
    inode, offset, prefix, known = seen.get(path, (found.inode, 0, "", set()))
    hashed = _hashed(path, 0, offset) if inode == found.inode and found.end >= offset else None
    if hashed is None or _hex(hashed, offset) != prefix:
        offset, known, hashed = 0, set(), hashlib.sha256()
    for _number, line in lines(path, offset, found.end):
        try:
            digest = orjson.loads(line).get("sha256")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(digest, str):
            known.add(digest)
    # the digest of the first `found.end` bytes: the prefix's, just checked, and the tail's
    whole = _hashed(path, offset, found.end, hashed)
    seen[path] = (found.inode, found.end, "" if whole is None else _hex(whole, found.end), known)
    return known


def _hex(hashed: hashlib._Hash, length: int) -> str:
    return hashed.hexdigest() if length else ""


def _hashed(
    path: Path, start: int, end: int, into: hashlib._Hash | None = None
) -> hashlib._Hash | None:
    """`into` (a new sha256 by default) updated with the file's bytes from `start` to `end`;
    None when they cannot all be read. Each call reads the bytes it hashes, so the index's
    prefix is hashed once a call, the tail parsed then added to it."""
    digest = into if into is not None else hashlib.sha256()
    if end <= start:
        return digest
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    return None
                digest.update(chunk)
                left -= len(chunk)
    except OSError:
        return None
    return digest


@dataclass
class Staged:
    """What archiving some entries takes: the objects to store, then the index lines to append."""

    #: each entry's content hash, in order
    digests: list[str]
    #: objects not stored yet (path, canonical bytes), sorted by path; created read-only
    objects: list[tuple[Path, bytes]]
    #: the `IndexLine`s to append, as their plain data (every field present)
    lines: list[dict[str, Any]]

    @property
    def modes(self) -> dict[Path, int]:
        return {path: OBJECT_MODE for path, _ in self.objects}


def stage(
    layout: Layout,
    entries: Sequence[Mapping[str, Any]],
    encoded: Sequence[bytes] | None = None,
) -> Staged:
    """What `archive` writes, without writing it: for a caller that flushes the objects together
    with files of its own (the rituals), then calls `index`. `entries`: each entry's plain
    data (a `DoctrineEntry`'s dump, every field present); `encoded`: each entry's
    `encode`, when the caller has made it already (the rituals, for the digest).

    The index is read only when an object is already stored: its line is appended after
    its object is flushed, so an object not yet stored has no line to find, and a new
    order's Alfas (every one new) cost no read of the whole index. (An object deleted by
    hand is stored again and indexed again; a second line for a digest is harmless.)
    """
    digests: list[str] = []
    objects: dict[Path, bytes] = {}
    first: dict[str, tuple[Mapping[str, Any], bool]] = {}  # digest -> (entry, stored before)
    datas = encoded if encoded is not None else [dumps_canonical(entry) for entry in entries]
    folder = str(objects_dir(layout))  # each object's path made from text: one `Path` each
    for entry, data in zip(entries, datas, strict=True):
        digest = hashlib.sha256(data).hexdigest()
        digests.append(digest)
        if digest in first:
            continue
        path = Path(f"{folder}/{digest[:2]}/{digest}.json")
        try:  # one lstat: a link counts as stored, dangling or not, and is left as it is
            mode: int | None = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        stored = mode is not None
        if mode is None:
            objects[path] = data
        elif not stat.S_ISLNK(mode) and mode & 0o222:
            # objects are created read-only; one left writable (an older archive, or a hand
            # edit of its mode) is made read-only again
            os.chmod(path, OBJECT_MODE)
        first[digest] = (entry, stored)
    indexed = indexed_digests(layout) if any(s for _, s in first.values()) else set()
    now = utc_now()
    # `IndexLine`s' plain data: every value from a valid entry, its digest and the clock
    lines = [
        {
            "schema_version": 1,
            "sha256": digest,
            "alfa_id": entry["alfa_id"],
            "order_id": entry["order_id"],
            "recipe": entry["recipe"],
            "score": entry["score"],
            "archived_at": now,
        }
        for digest, (entry, stored) in first.items()
        if not stored or digest not in indexed
    ]
    return Staged(digests, sorted(objects.items()), lines)


def index(layout: Layout, staged: Staged) -> None:
    """Append the staged index lines: only once their objects are stored and flushed."""
    Ledger(layout.doctrine_index).append(staged.lines)


def archive(layout: Layout, entries: Iterable[DoctrineEntry]) -> list[str]:
    """Store each entry (a no-op for one already archived); its content hash, in order."""
    staged = stage(layout, [entry.model_dump(mode="json") for entry in entries])
    # created read-only, all flushed at once, before the index says they exist; objects
    # found absent are not opened again to compare
    write_many_atomic(staged.objects, mode=OBJECT_MODE, absent=staged.modes)
    index(layout, staged)
    return staged.digests


def verify(layout: Layout) -> tuple[int, list[Problem]]:
    """(entries checked, problems): every indexed object present and matching its hash."""
    entries, problems = read_index(layout)
    known: set[str] = set()
    for line in entries:
        known.add(line.sha256)
        path = object_path(layout, line.sha256)
        shown = display(layout, path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            problems.append(
                Problem(shown, "-", f"is missing (the index holds {line.alfa_id} there)")
            )
            continue
        except OSError as exc:
            problems.append(Problem(shown, "-", f"cannot be read: {exc.strerror or exc}"))
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != line.sha256:
            problems.append(
                Problem(shown, "-", f"is tampered: its content hashes to {actual}, not its name")
            )
            continue
        try:
            entry = DoctrineEntry.model_validate_json(data)
        except (ValidationError, ValueError):
            problems.append(Problem(shown, "-", "is not a doctrine entry"))
            continue
        if entry.alfa_id != line.alfa_id:
            problems.append(
                Problem(shown, "alfa_id", f"is {entry.alfa_id} but the index says {line.alfa_id}")
            )
    folder = objects_dir(layout)
    if folder.is_dir():
        for path in sorted(folder.rglob("*.json")):
            if path.stem not in known:
                problems.append(Problem(display(layout, path), "-", "is not in the doctrine index"))
    return len(entries), problems
