"""Models parsed from a file's bytes, remembered for the files read most recently.

A build reads the same artefact more than once: the rituals read the order's
mint.json, the report reads it again with rituals.json, and the next order of the
recipe's chain reads chain.json for its mint and again for its rituals. The
models are immutable, so bytes equal to those last parsed from the same file give
back the same model instead of a second validation. Keyed by the bytes, not by
the file's stats: the caller has read them anyway, and equal bytes parse to an
equal model whatever happened to the file in between. The writers of mint.json,
rituals.json and chain.json leave the model they wrote here (`remember`), so a
process parses none of the three that it wrote itself.

Plain data is kept the same way (`remember_plain`, `recall_plain`), for a reader that
wants no model: the rituals leave rituals.json's data here as they wrote it, and the
report reads it back. So is a file's sha256 (`sha256_of`): the next order's mint and
rituals both hash the chain.json they start from, its link and its digest among the
mint's inputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from toyfoundry import caches

M = TypeVar("M", bound=BaseModel)
#: What stands for the model in the key of a file's plain data, and of its sha256.
_PLAIN = "plain"
_SHA256 = "sha256"

#: The `parsed` cache (`toyfoundry.caches`), of at most this many entries: (model, file)
#: -> (bytes, the model validated from them). Three files an order, read
#: again soon after: by the order's next task, and chain.json by the next order of its
#: recipe, a few orders later. Each entry holds a batch's models (about 100 KB), so a
#: few orders' worth, not more: memory, not hits, grows past that (a chain.json's
#: digest is a fourth entry an order, of its bytes alone)
_KEPT = 32


def parse(model: type[M], path: Path, data: bytes) -> M:
    """`model.model_validate_json(data)`, from memory when `path` last held these bytes.

    Raises what `model_validate_json` raises; a failed parse is not remembered.
    """
    recent: dict[tuple[type[BaseModel], Path], tuple[bytes, BaseModel]]
    recent = caches.current().table("parsed")
    key = (model, path)
    known = recent.get(key)
    if known is not None and known[0] == data:
        value = known[1]
        assert isinstance(value, model)
        return value
    parsed = model.model_validate_json(data)
    remember(model, path, data, parsed)
    return parsed


def remember(model: type[M], path: Path, data: bytes, value: M) -> None:
    """Note that `path` holds `data`, whose parse is `value`: for a writer whose model was
    validated from the same plain data it wrote, with every dict in the order JSON gives
    it, so that reading the file back in this process costs nothing."""
    _keep((model, path), data, value)


def recall_plain(path: Path, data: bytes) -> Any:
    """The plain data left for `path` (`remember_plain`) if it still holds `data`, else None.
    Shared by every reader: read it, never change it."""
    recent: dict[tuple[object, Path], tuple[bytes, Any]] = caches.current().table("parsed")
    known = recent.get((_PLAIN, path))
    return known[1] if known is not None and known[0] == data else None


def remember_plain(path: Path, data: bytes, document: Any) -> None:
    """Note that `path` holds `data`, which is `document` as plain data: for a writer
    (`document` equal to `orjson.loads(data)`, whatever the order of its dicts), or a
    reader that made it from the model of these bytes."""
    _keep((_PLAIN, path), data, document)


def sha256_of(path: Path, data: bytes) -> str:
    """The sha256 (hex) of `data`, the bytes just read from `path`: from memory when `path`
    last held these bytes (comparing them costs a tenth of hashing them)."""
    recent: dict[tuple[object, Path], tuple[bytes, Any]] = caches.current().table("parsed")
    key = (_SHA256, path)
    known = recent.get(key)
    if known is not None and known[0] == data:
        digest: str = known[1]
        return digest
    digest = hashlib.sha256(data).hexdigest()
    _keep(key, data, digest)
    return digest


def _keep(key: tuple[object, Path], data: bytes, value: Any) -> None:
    recent = caches.current().table("parsed")
    recent.pop(key, None)
    if len(recent) >= _KEPT:
        del recent[next(iter(recent))]
    recent[key] = (data, value)
