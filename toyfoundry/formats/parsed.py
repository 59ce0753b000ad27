"""Models parsed from a file's bytes, remembered for the files read most recently.

A build reads the same artefact more than once: the rituals read the order's
mint.json, the report reads it again with rituals.json, and the next order of the
recipe's chain reads chain.json for its mint and again for its rituals. The
models are immutable, so bytes equal to those last parsed from the same file give
back the same model instead of a second validation. Keyed by the bytes, not by
the file's stats: the caller has read them anyway, and equal bytes parse to an
equal model whatever happened to the file in between.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

#: (model, file) -> (bytes, the model validated from them); a few files suffice, since
#: each is read again soon after (an order's tasks run one after the other)
_recent: dict[tuple[type[BaseModel], Path], tuple[bytes, BaseModel]] = {}
_KEPT = 8


def parse(model: type[M], path: Path, data: bytes) -> M:
    """`model.model_validate_json(data)`, from memory when `path` last held these bytes.

    Raises what `model_validate_json` raises; a failed parse is not remembered.
    """
    key = (model, path)
    known = _recent.get(key)
    if known is not None and known[0] == data:
        value = known[1]
        assert isinstance(value, model)
        return value
    parsed = model.model_validate_json(data)
    _recent.pop(key, None)
    if len(_recent) >= _KEPT:
        del _recent[next(iter(_recent))]
    _recent[key] = (data, parsed)
    return parsed
