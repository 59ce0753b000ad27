"""The doctrine archive: long-term, content-addressed, immutable storage of promoted Alfas.

Each promoted Alfa becomes one object: its canonical JSON (sorted keys, two-space
indent, trailing newline), addressed by h, the sha256 of exactly those bytes. The
objects an order's rituals store together go in one read-only pack,
`.toyfoundry/doctrine/packs/<order>/<p>.pack`: the objects' bytes one after the other
(by digest), p the sha256 of the pack's bytes. A canonical object ends with the only
`}` at the start of a line, so a pack splits back into the exact bytes of each. Packs
never change: archiving the same Alfa again (same content, same hash, found in its
order's packs) writes nothing, and an order built again with new promotions adds a
pack of those. (One file an order instead of one an object: creating, flushing and
renaming eight files an order cost about a tenth of a build's CPU, most of it system
time.) Older archives hold loose objects at `.toyfoundry/doctrine/objects/<h[:2]>/<h>.json`;
they are read as they are. `index.jsonl` is an append-only ledger with one line per
object, saying which Alfa and order it holds and when it was archived. `verify`
re-hashes every pack and indexed object and reports missing, tampered and unindexed ones.
"""

from __future__ import annotations

import contextlib
import errno
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

#: Packs (and objects) are created read-only: they never change.
OBJECT_MODE = 0o444
PACK_SUFFIX = ".pack"
#: How every canonical object ends: its closing brace, the only one at a line's start.
_OBJECT_END = b"\n}\n"


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


def packs_dir(layout: Layout) -> Path:
    return layout.doctrine / "packs"


def pack_folder(layout: Layout, order_id: str) -> Path:
    """Where an order's packs live (`order_id` a valid order id: an entry's)."""
    return packs_dir(layout) / order_id


def split_pack(data: bytes) -> list[bytes]:
    """A pack's objects, each its exact bytes; a tail without an object's end (a damaged
    pack) is the last item, for `verify` to find tampered."""
    parts = data.split(_OBJECT_END)
    objects = [part + _OBJECT_END for part in parts[:-1]]
    if parts[-1]:
        objects.append(parts[-1])
    return objects


def _packs(folder: Path) -> list[Path]:
    """The packs in `folder` (none when it is missing), in name order; temp files left out."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / n for n in sorted(names) if n.endswith(PACK_SUFFIX) and n[0] != "."]


def _read_pack(path: Path) -> bytes:
    """A pack's bytes; OSError when it is no regular file (opened without blocking: a FIFO
    in its place is not waited on) or cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "is not a regular file", str(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def order_objects(layout: Layout, order_id: str, folder: Path | None = None) -> dict[str, bytes]:
    """The objects stored in an order's packs, by digest: what its rituals archived before
    (a new order's: none, for the one failing `listdir` of its folder). `folder`: its
    `pack_folder`, when the caller has it."""
    found: dict[str, bytes] = {}
    for pack in _packs(pack_folder(layout, order_id) if folder is None else folder):
        try:
            data = _read_pack(pack)
        except OSError:
            continue  # unreadable: its objects are stored again, in a pack of their own
        for data_of in split_pack(data):
            found.setdefault(hashlib.sha256(data_of).hexdigest(), data_of)
    return found


def stored_objects(layout: Layout) -> dict[str, bytes]:
    """Every object the archive holds, by digest: the packs' and the loose ones'."""
    found: dict[str, bytes] = {}
    folder = packs_dir(layout)
    for order in sorted(os.listdir(folder)) if folder.is_dir() else []:
        for digest, data in order_objects(layout, order).items():
            found.setdefault(digest, data)
    loose = objects_dir(layout)
    for path in sorted(loose.rglob("*.json")) if loose.is_dir() else []:
        with contextlib.suppress(OSError):
            data = path.read_bytes()
            found.setdefault(hashlib.sha256(data).hexdigest(), data)
    return found


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
    """What archiving some entries takes: the packs to store, then the index lines to append."""

    #: each entry's content hash, in order
    digests: list[str]
    #: one new pack (path, bytes) for each order with objects not stored yet, sorted by
    #: path; created read-only
    objects: list[tuple[Path, bytes]]
    #: the `IndexLine`s to append, as their plain data (every field present)
    lines: list[dict[str, Any]]

    @property
    def modes(self) -> dict[Path, int]:
        return {path: OBJECT_MODE for path, _ in self.objects}


def _stored_loose(layout: Layout, digest: str) -> bool:
    """Whether an older archive holds the object loose; one lstat: a link counts as stored,
    dangling or not, and is left as it is."""
    path = object_path(layout, digest)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISLNK(mode) and mode & 0o222:
        # objects are created read-only; one left writable (an older archive, or a hand
        # edit of its mode) is made read-only again
        os.chmod(path, OBJECT_MODE)
    return True


def stage(
    layout: Layout,
    entries: Sequence[Mapping[str, Any]],
    encoded: Sequence[bytes] | None = None,
    digests: Sequence[str] | None = None,
) -> Staged:
    """What `archive` writes, without writing it: for a caller that flushes the packs together
    with files of its own (the rituals), then calls `index`. `entries`: each entry's plain
    data (a `DoctrineEntry`'s dump, every field present); `encoded`: each entry's
    `encode`, when the caller has made it already (the rituals, for the digest);
    `digests`: the sha256 of each of those bytes, when the caller has them too.

    An object is stored when its order's packs hold it (or, in an older archive, its
    loose file exists). The index is read only when an object is already stored: its
    line is appended after its pack is flushed, so an object not yet stored has no line
    to find, and a new order's Alfas (every one new) cost no read of the whole index. (A
    pack deleted by hand is stored again and indexed again; a second line for a digest
    is harmless.)
    """
    found: list[str] = []
    new: dict[str, dict[str, bytes]] = {}  # order -> digest -> object not stored yet
    stored_by_order: dict[str, dict[str, bytes]] = {}
    folders: dict[str, Path] = {}  # order -> its pack folder, joined once
    first: dict[str, tuple[Mapping[str, Any], bool]] = {}  # digest -> (entry, stored before)
    datas = encoded if encoded is not None else [dumps_canonical(entry) for entry in entries]
    loose = None  # whether the archive has loose objects: asked once, when needed
    if digests is None:
        digests = [hashlib.sha256(data).hexdigest() for data in datas]
    for entry, data, digest in zip(entries, datas, digests, strict=True):
        found.append(digest)
        if digest in first:
            continue
        order_id = entry["order_id"]
        stored_here = stored_by_order.get(order_id)
        if stored_here is None:
            folder = folders[order_id] = pack_folder(layout, order_id)
            stored_here = stored_by_order[order_id] = order_objects(layout, order_id, folder)
        stored = digest in stored_here
        if not stored:
            if loose is None:
                loose = objects_dir(layout).is_dir()
            stored = loose and _stored_loose(layout, digest)
        if not stored:
            new.setdefault(order_id, {})[digest] = data
        first[digest] = (entry, stored)
    packs: list[tuple[Path, bytes]] = []
    for order_id, objects in sorted(new.items()):
        data = b"".join(objects[d] for d in sorted(objects))
        name = hashlib.sha256(data).hexdigest() + PACK_SUFFIX
        packs.append((folders[order_id] / name, data))
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
    return Staged(found, packs, lines)


def index(layout: Layout, staged: Staged) -> None:
    """Append the staged index lines: only once their objects are stored and flushed."""
    Ledger(layout.doctrine_index).append(staged.lines)


def archive(layout: Layout, entries: Iterable[DoctrineEntry]) -> list[str]:
    """Store each entry (a no-op for one already archived); its content hash, in order."""
    staged = stage(layout, [entry.model_dump(mode="json") for entry in entries])
    # created read-only, all flushed at once, before the index says they exist; new packs
    # (named by their bytes, found in no listing) are not opened again to compare
    write_many_atomic(staged.objects, mode=OBJECT_MODE, absent=staged.modes)
    index(layout, staged)
    return staged.digests


def verify(layout: Layout) -> tuple[int, list[Problem]]:
    """(entries checked, problems): every pack matching its name, every indexed object
    present and matching its hash, every stored object indexed."""
    entries, problems = read_index(layout)
    packed: dict[str, tuple[Path, bytes]] = {}  # digest -> (its pack, its bytes)
    tampered: set[str] = set()  # the orders with a tampered pack
    folder = packs_dir(layout)
    for order_id in sorted(os.listdir(folder)) if folder.is_dir() else []:
        for pack in _packs(folder / order_id):
            shown = display(layout, pack)
            try:
                data = _read_pack(pack)
            except OSError as exc:
                problems.append(Problem(shown, "-", f"cannot be read: {exc.strerror or exc}"))
                continue
            actual = hashlib.sha256(data).hexdigest()
            if pack.name != actual + PACK_SUFFIX:
                problems.append(
                    Problem(
                        shown, "-", f"is tampered: its content hashes to {actual}, not its name"
                    )
                )
                tampered.add(order_id)
                continue
            for data_of in split_pack(data):
                packed.setdefault(hashlib.sha256(data_of).hexdigest(), (pack, data_of))
    known: set[str] = set()
    for line in entries:
        known.add(line.sha256)
        found = packed.get(line.sha256)
        if found is None and line.order_id in tampered:
            continue  # its order's tampered pack is the problem, said once
        if found is None:
            problem = _verify_loose(layout, line)
            if problem is not None:
                problems.append(problem)
            continue
        pack, data = found
        problem = _check_entry(display(layout, pack), data, line)
        if problem is not None:
            problems.append(problem)
    for digest, (pack, _) in packed.items():
        if digest not in known:
            problems.append(
                Problem(display(layout, pack), "-", f"holds {digest}, not in the doctrine index")
            )
    loose = objects_dir(layout)
    if loose.is_dir():
        for path in sorted(loose.rglob("*.json")):
            if path.stem not in known:
                problems.append(Problem(display(layout, path), "-", "is not in the doctrine index"))
    return len(entries), problems


def _check_entry(shown: str, data: bytes, line: IndexLine) -> Problem | None:
    """The problem with an object whose bytes match its digest, if it is no entry of the
    Alfa its index line names."""
    try:
        entry = DoctrineEntry.model_validate_json(data)
    except (ValidationError, ValueError):
        return Problem(shown, "-", f"{line.sha256} is not a doctrine entry")
    if entry.alfa_id != line.alfa_id:
        return Problem(shown, "alfa_id", f"is {entry.alfa_id} but the index says {line.alfa_id}")
    return None


def _verify_loose(layout: Layout, line: IndexLine) -> Problem | None:
    """An indexed object in no pack: a loose object of an older archive, or missing."""
    path = object_path(layout, line.sha256)
    shown = display(layout, path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        where = display(layout, pack_folder(layout, line.order_id))
        return Problem(where, "-", f"is missing {line.sha256} (the index holds {line.alfa_id})")
    except OSError as exc:
        return Problem(shown, "-", f"cannot be read: {exc.strerror or exc}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != line.sha256:
        return Problem(shown, "-", f"is tampered: its content hashes to {actual}, not its name")
    return _check_entry(shown, data, line)
