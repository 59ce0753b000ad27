"""The file checker's digests: whole-file md5 for inputs, size+head+tail for the ledgers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from toyfoundry.graph.checker import SAMPLE, file_md5, is_ledger, sampled_md5


def test_ledgers_are_recognised_by_place_and_name() -> None:
    assert is_ledger(".toyfoundry/telemetry/forge_mint_alfa.jsonl")
    assert is_ledger("/abs/p/.toyfoundry/telemetry/forge_rituals.jsonl")
    assert not is_ledger(".toyfoundry/telemetry/quilt/exports/alfas/2025-10-12-005.jsonl")
    assert not is_ledger("exchange/orders/forge_mint_alfa.jsonl")


def test_sampled_digest_follows_appends_and_survives_a_copy(tmp_path: Path) -> None:
    ledger = tmp_path / ".toyfoundry" / "telemetry" / "forge_mint_alfa.jsonl"
    ledger.parent.mkdir(parents=True)
    lines = [f'{{"n": {i}}}\n'.encode() for i in range(20_000)]
    ledger.write_bytes(b"".join(lines))
    assert ledger.stat().st_size > 3 * SAMPLE
    first = sampled_md5(str(ledger), ledger.stat().st_size)
    with ledger.open("ab") as f:
        f.write(b'{"n": "more"}\n')
    grown = sampled_md5(str(ledger), ledger.stat().st_size)
    assert grown != first
    copy = tmp_path / "copy" / ".toyfoundry" / "telemetry" / "forge_mint_alfa.jsonl"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(ledger, copy)
    os.utime(copy, ns=(1, 1))
    assert sampled_md5(str(copy), copy.stat().st_size) == grown
    # file_md5 picks the sampled digest for a ledger and the whole-file md5 elsewhere
    os.chdir(tmp_path)
    key = ".toyfoundry/telemetry/forge_mint_alfa.jsonl"
    assert file_md5(key, key=key) == grown
    other = tmp_path / "plain.jsonl"
    shutil.copyfile(ledger, other)
    assert file_md5(str(other)) != grown


def test_small_ledger_digest_covers_every_byte(tmp_path: Path) -> None:
    ledger = tmp_path / "forge_rituals.jsonl"
    ledger.write_bytes(b'{"a": 1}\n')
    before = sampled_md5(str(ledger), ledger.stat().st_size)
    ledger.write_bytes(b'{"a": 2}\n')
    assert sampled_md5(str(ledger), ledger.stat().st_size) != before
