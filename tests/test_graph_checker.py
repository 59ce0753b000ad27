"""The file checker's digests: whole-file sha256 for inputs, size+head+tail for the ledgers."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from toyfoundry.graph import checker
from toyfoundry.graph.checker import SAMPLE, file_hash, is_ledger, sampled_hash


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
    first = sampled_hash(str(ledger), ledger.stat().st_size)
    with ledger.open("ab") as f:
        f.write(b'{"n": "more"}\n')
    grown = sampled_hash(str(ledger), ledger.stat().st_size)
    assert grown != first
    copy = tmp_path / "copy" / ".toyfoundry" / "telemetry" / "forge_mint_alfa.jsonl"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(ledger, copy)
    os.utime(copy, ns=(1, 1))
    assert sampled_hash(str(copy), copy.stat().st_size) == grown
    # file_hash picks the sampled digest for a ledger and the whole-file hash elsewhere
    os.chdir(tmp_path)
    key = ".toyfoundry/telemetry/forge_mint_alfa.jsonl"
    assert file_hash(key, key=key) == grown
    other = tmp_path / "plain.jsonl"
    shutil.copyfile(ledger, other)
    assert file_hash(str(other)) != grown


def test_small_ledger_digest_covers_every_byte(tmp_path: Path) -> None:
    ledger = tmp_path / "forge_rituals.jsonl"
    ledger.write_bytes(b'{"a": 1}\n')
    before = sampled_hash(str(ledger), ledger.stat().st_size)
    ledger.write_bytes(b'{"a": 2}\n')
    assert sampled_hash(str(ledger), ledger.stat().st_size) != before


def test_states_recorded_with_md5_still_match(tmp_path: Path) -> None:
    """A DB written before the checker moved to sha256 holds md5 digests: unchanged bytes
    under a new mtime are still unchanged."""
    import hashlib

    from toyfoundry.graph.checker import FoundryChecker

    path = tmp_path / "order.json"
    path.write_bytes(b'{"a": 1}\n')
    st = path.stat()
    legacy = (st.st_mtime - 10, st.st_size, hashlib.md5(b'{"a": 1}\n').hexdigest())
    checker = FoundryChecker()
    assert checker.check_modified(str(path), st, legacy) is False
    path.write_bytes(b'{"a": 2}\n')
    assert checker.check_modified(str(path), path.stat(), legacy) is True


def test_the_save_records_the_stat_the_check_saw(tmp_path: Path) -> None:
    """A dep edited between the check and the save is recorded with the stat the check saw,
    so the next run sees the edit."""
    from toyfoundry.graph.checker import FoundryChecker

    dep = tmp_path / "dep.json"
    dep.write_bytes(b"one\n")
    os.utime(dep, ns=(1_000_000_000, 1_000_000_000))
    checker = FoundryChecker()
    seen = checker.info(str(dep))
    dep.write_bytes(b"two, longer\n")  # changed after the check, before the save
    state = checker.get_state(str(dep), None)
    assert state[:2] == (seen.st_mtime, seen.st_size)
    assert checker.check_modified(str(dep), os.stat(dep), state)
    # nothing is kept for a second save: a later save of the same dep stats it afresh
    assert checker.get_state(str(dep), None)[1] == dep.stat().st_size


def test_whole_hash_is_sha256_however_the_file_is_read(tmp_path: Path) -> None:
    """One read for a small file, chunks for a large one, and a file that grew after its
    stat (its size said small) is still hashed whole, without reading it all at once."""
    small = tmp_path / "small"
    small.write_bytes(b"alfa\n" * 100)
    large = tmp_path / "large"
    large.write_bytes(os.urandom((1 << 20) + 12345))
    for path in (small, large):
        want = hashlib.sha256(path.read_bytes()).hexdigest()
        assert checker.whole_hash(str(path)) == want
        assert checker.whole_hash(str(path), path.stat().st_size) == want
    assert checker.whole_hash(str(large), 10) == hashlib.sha256(large.read_bytes()).hexdigest()
