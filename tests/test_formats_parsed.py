"""Models parsed from bytes are reused only for the very bytes they came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

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
    assert len(parsed._recent) <= parsed._KEPT
