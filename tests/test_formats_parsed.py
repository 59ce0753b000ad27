"""Models parsed from bytes are reused only for the very bytes they came from."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from toyfoundry import caches
from toyfoundry.formats import parsed
from toyfoundry.formats.models import Mutation


def test_same_bytes_give_the_same_model_and_other_bytes_are_parsed(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    first = parsed.parse(Mutation, path, b'{"rate": 0.25, "max_changes": 2}')
    assert parsed.parse(Mutation, path, b'{"rate": 0.25, "max_changes": 2}') is first
    other = parsed.parse(Mutation, path, b'{"rate": 0.5, "max_changes": 2}')
    assert other.rate == 0.5 and other is not first
    # another file with the same bytes is its own entry; equal models either way
    assert parsed.parse(Mutation, tmp_path / "n.json", b'{"rate": 0.5, "max_changes": 2}') == other


def test_a_failed_parse_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    good = parsed.parse(Mutation, path, b'{"rate": 0.25}')
    with pytest.raises(ValidationError):
        parsed.parse(Mutation, path, b'{"rate": "high"}')
    with pytest.raises(ValidationError):
        parsed.parse(Mutation, path, b'{"rate": "high"}')
    assert parsed.parse(Mutation, path, b'{"rate": 0.25}') == good


def test_only_the_latest_files_are_kept(tmp_path: Path) -> None:
    for i in range(3 * parsed._KEPT):
        parsed.parse(Mutation, tmp_path / f"{i}.json", b'{"rate": 0.25}')
    assert len(caches.current().table("parsed")) <= parsed._KEPT


def test_what_the_forge_leaves_is_what_a_parse_of_its_bytes_gives(tmp_path: Path) -> None:
    """The mint and the rituals leave the models they wrote for the next read of their files:
    each must equal a parse of the bytes, down to the order of every dict and the type of
    every number (the Drill sums weights in parameter order). The rituals leave
    rituals.json as plain data: it must equal the bytes' JSON and the model's dump."""
    from tests.support import build, make_project
    from toyfoundry.formats.models import Chain, MintArtefact, RitualsArtefact

    layout = make_project(tmp_path / "p")
    orders = ["2025-10-12-005", "2025-10-20-011", "2025-10-27-014", "2025-10-28-002"]
    build(layout, *orders)
    checked = 0
    for order_id in orders:
        path = layout.rituals_artefact(order_id)
        plain = caches.current().table("parsed").get(("plain", path))
        if plain is not None:
            data = path.read_bytes()
            assert plain[0] == data and plain[1] == orjson.loads(data)
            assert plain[1] == RitualsArtefact.model_validate_json(data).model_dump(mode="json")
            checked += 1
        for model, path in (
            (MintArtefact, layout.mint_artefact(order_id)),
            (Chain, layout.chain_file(order_id)),
        ):
            left = caches.current().table("parsed").get((model, path))
            if left is None:
                continue  # a dry run's rituals and chain are not made from a model
            data = path.read_bytes()
            assert left[0] == data
            fresh = model.model_validate_json(data)
            assert orjson.dumps(left[1].model_dump()) == orjson.dumps(fresh.model_dump())
            checked += 1
    assert checked >= 9


def test_a_digest_is_remembered_for_the_very_bytes_it_was_taken_of(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "chain.json"
    for data in (b"{}\n", b'{"a": 1}\n', b"{}\n"):
        assert parsed.sha256_of(path, data) == hashlib.sha256(data).hexdigest()
    # a model and a digest of the same file are two entries
    parsed.parse(Mutation, path, b'{"rate": 0.25}')
    assert parsed.sha256_of(path, b"{}\n") == hashlib.sha256(b"{}\n").hexdigest()
