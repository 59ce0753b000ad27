"""Safe reads of untrusted exchange files: every bad input gives one clear line."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from toyfoundry.errors import FoundryError
from toyfoundry.store import safe_read
from toyfoundry.store.safe_read import (
    ReadError,
    is_skipped_name,
    list_json,
    parse_json,
    read_bytes,
    read_json,
)


def problem(call: Callable[[], Any]) -> str:
    with pytest.raises(ReadError) as caught:
        call()
    return str(caught.value.problem)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1', "-: is not valid JSON: Expecting ',' delimiter (line 1 column 8)"),
        (b'{"a": [1, 2', "-: is not valid JSON: Expecting ',' delimiter (line 1 column 12)"),
        (b'{"a":\n  tru', "-: is not valid JSON: Expecting value (line 2 column 3)"),
        (b'{"a": 1} {}', "-: is not valid JSON: Extra data (line 1 column 10)"),
        (b"", "-: is empty"),
        (b" \n\t\r\n", "-: is empty"),
        (b'\xef\xbb\xbf{"a": 1}', "-: starts with a UTF-8 byte order mark"),
        (b'{"a": "caf\xe9"}', "-: is not valid UTF-8 (byte offset 10)"),
        (b'{"a": "\xed\xa0\x80"}', "-: is not valid UTF-8 (byte offset 7)"),
        (b'{"name": "x\\ud800y"}', "name: contains a lone surrogate"),
        (b'{"\\udfff": 1}', "\\udfff: key contains a lone surrogate"),
        (b'{"score": NaN}', "score: NaN is not valid JSON"),
        (b'{"score": [Infinity]}', "score.0: Infinity is not valid JSON"),
        (b"-Infinity", "-: -Infinity is not valid JSON"),
        (b'{"x": 1e999}', "x: number 1e999 does not fit in a 64-bit float"),
        (
            b'{"orders": [{"seed": 123456789012345678901234567890}]}',
            "orders.0.seed: integer 123456789012345678901234567890 does not fit in 64 bits",
        ),
        (b"[9223372036854775808]", "0: integer 9223372036854775808 does not fit in 64 bits"),
        (b'{"a": 1, "b": 2, "a": 3}', "a: duplicate key 'a'"),
        (b'{"outer": {"list": [{"k": 1, "k": 1}]}}', "outer.list.0.k: duplicate key 'k'"),
        (
            b'{"a": "x\x00y"}',
            "-: is not valid JSON: Invalid control character at (line 1 column 9)",
        ),
    ],
)
def test_bad_json_gives_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path / "order.json", data)
    text = problem(lambda: read_json(path))
    assert text == f"{path}: {message}"
    assert "\n" not in text


def test_good_json_parses_including_edge_values() -> None:
    data = (
        b'{"big": 9223372036854775807, "small": -9223372036854775808, "f": 1.5e300,'
        b' "emoji": "\\ud83d\\ude00", "nul": "\\u0000", "tiny": 1e-400}'
    )
    assert parse_json(data, source="x.json") == {
        "big": 9223372036854775807,
        "small": -9223372036854775808,
        "f": 1.5e300,
        "emoji": "\U0001f600",
        "nul": "\x00",
        "tiny": 0.0,
    }


def test_deep_nesting_is_refused_fast(tmp_path: Path) -> None:
    path = write(tmp_path / "deep.json", b"[" * 10_000 + b"]" * 10_000)
    started = time.perf_counter()
    assert problem(lambda: read_json(path)) == f"{path}: -: nests deeper than 64 levels"
    # Generous bound: the point is that it is a linear scan, not the parser recursing.
    assert time.perf_counter() - started < 2


def test_nesting_limit_counts_brackets_outside_strings_only() -> None:
    at_limit = b'{"a": ' * 63 + b'["[[[[{{{{"]' + b"}" * 63
    assert parse_json(at_limit, source="x") is not None
    too_deep = b"[" * 65 + b"]" * 65
    assert problem(lambda: parse_json(too_deep, source="x")) == (
        "x: -: nests deeper than 64 levels"
    )
    assert parse_json(too_deep, source="x", max_depth=65) is not None


def test_depth_limit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOYFOUNDRY_MAX_DEPTH", "2")
    assert parse_json(b"[[1]]", source="x") == [[1]]
    assert problem(lambda: parse_json(b"[[[1]]]", source="x")) == (
        "x: -: nests deeper than 2 levels"
    )
    monkeypatch.setenv("TOYFOUNDRY_MAX_DEPTH", "lots")
    with pytest.raises(FoundryError, match="TOYFOUNDRY_MAX_DEPTH"):
        parse_json(b"[]", source="x")


def test_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    assert problem(lambda: read_json(path)) == (
        f"{path}: -: is 52428800 bytes, over the 1048576-byte limit"
    )


def test_size_limit_from_keyword_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "small.json", b'{"a": 1}')
    assert read_bytes(path, max_bytes=8) == b'{"a": 1}'
    assert problem(lambda: read_bytes(path, max_bytes=7)) == (
        f"{path}: -: is 8 bytes, over the 7-byte limit"
    )
    monkeypatch.setenv("TOYFOUNDRY_MAX_BYTES", "4")
    assert problem(lambda: read_json(path)) == f"{path}: -: is 8 bytes, over the 4-byte limit"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert problem(lambda: read_json(path)) == f"{path}: -: does not exist"


def test_symlink_to_file_outside(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside.json", b"{}")
    inbox = tmp_path / "exchange"
    inbox.mkdir()
    link = inbox / "order.json"
    link.symlink_to(outside)
    assert problem(lambda: read_json(link)) == (
        f"{link}: -: is a symbolic link; links are not followed"
    )


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "order.json"
    link.symlink_to(tmp_path / "missing.json")
    assert problem(lambda: read_json(link)) == (
        f"{link}: -: is a symbolic link; links are not followed"
    )


def test_symlink_to_folder(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    link = tmp_path / "order.json"
    link.symlink_to(tmp_path / "folder")
    assert problem(lambda: read_json(link)) == (
        f"{link}: -: is a symbolic link; links are not followed"
    )


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "order.json"
    os.mkfifo(fifo)
    assert problem(lambda: read_json(fifo)) == f"{fifo}: -: is a FIFO, not a regular file"


def test_socket_is_refused() -> None:
    # Socket paths are limited to ~108 bytes, so use a short folder of our own.
    folder = Path(f"/tmp/tf-sock-{os.getpid()}")
    folder.mkdir(exist_ok=True)
    path = folder / "order.json"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        assert problem(lambda: read_json(path)) == f"{path}: -: is a socket, not a regular file"
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def test_character_device_is_refused() -> None:
    assert problem(lambda: read_bytes(Path("/dev/null"))) == (
        "/dev/null: -: is a character device, not a regular file"
    )


def test_hard_link_is_refused(tmp_path: Path) -> None:
    original = write(tmp_path / "a.json", b"{}")
    linked = tmp_path / "b.json"
    os.link(original, linked)
    assert problem(lambda: read_json(linked)) == (
        f"{linked}: -: has 2 hard links; a file with several names can change"
        " under another one, so it is not read"
    )


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "order.json"
    folder.mkdir()
    assert problem(lambda: read_json(folder)) == (
        f"{folder}: -: is a directory, not a regular file"
    )


def test_read_error_str_is_the_problem_line(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    with pytest.raises(ReadError) as caught:
        read_json(path)
    assert str(caught.value) == f"{path}: -: does not exist"
    assert caught.value.problem.path == str(path)
    assert caught.value.problem.field == "-"


@pytest.mark.parametrize(
    ("name", "skipped"),
    [
        ("order.json", False),
        (".order.json", True),
        ("order.json.tmp", True),
        ("order.json.part", True),
        ("order.json~", True),
        ("2025-10-12-005.json", False),
    ],
)
def test_is_skipped_name(name: str, skipped: bool) -> None:
    assert is_skipped_name(name) is skipped


def test_list_json(tmp_path: Path) -> None:
    folder = tmp_path / "orders"
    assert list_json(folder) == []
    folder.mkdir()
    for name in ["b.json", "a.json", ".hidden.json", "c.json.tmp", "d.json.part", "e.json~"]:
        write(folder / name, b"{}")
    write(folder / "notes.txt", b"")
    (folder / "link.json").symlink_to(tmp_path / "elsewhere.json")
    assert list_json(folder) == [folder / "a.json", folder / "b.json", folder / "link.json"]
    assert problem(lambda: read_json(folder / "link.json")).endswith(
        "is a symbolic link; links are not followed"
    )


def test_list_json_of_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "orders", b"")
    assert problem(lambda: list_json(path)) == f"{path}: -: is not a folder"


# --------------------------------------------------------------------------- swapped under a read


@pytest.mark.parametrize("odd", ["fifo", "dev-zero link", "dev-null"])
def test_content_hashing_refuses_odd_files_without_blocking(tmp_path: Path, odd: str) -> None:
    """The checker's hash of an input goes through `sha256_regular`: never a FIFO's wait,
    never /dev/zero's endless bytes."""
    path = tmp_path / "x.json"
    if odd == "fifo":
        os.mkfifo(path)
    elif odd == "dev-zero link":
        path.symlink_to("/dev/zero")
    else:
        path = Path("/dev/null")
    with pytest.raises(safe_read.ReadError):
        safe_read.sha256_regular(path)


def test_content_hash_of_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert safe_read.sha256_regular(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("swap", ["fifo", "dev-zero link"])
def test_a_file_swapped_between_lstat_and_open_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """A regular file at the `lstat`, something else by rename at the `open`: the `fstat`
    on the descriptor refuses it (a fault point between the two, not a sleep)."""
    path = tmp_path / "2025-10-12-005.json"
    path.write_text("{}")
    real = safe_read.open_regular

    def swapped(target: Any) -> Any:
        temp = tmp_path / ".swap"
        if swap == "fifo":
            os.mkfifo(temp)
        else:
            temp.symlink_to("/dev/zero")
        os.replace(temp, path)
        return real(target)

    monkeypatch.setattr(safe_read, "open_regular", swapped)
    with pytest.raises(safe_read.ReadError) as caught:
        safe_read.read_bytes(path)
    reason = caught.value.problem.reason
    assert reason in ("is a FIFO, not a regular file", "is a symbolic link; links are not followed")
