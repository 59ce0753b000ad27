"""User-facing problems as data, and the two exceptions the command line maps to exit codes."""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass


def _escape(char: str) -> str:
    if char.isprintable():
        return char
    if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte of a file name that is not UTF-8 (surrogateescape)
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


def printable(text: str) -> str:
    """`text` with control characters and undecodable bytes escaped.

    Names and keys come from the untrusted exchange: a newline would split one
    problem into two lines (or forge one), a terminal escape would rewrite the
    screen, and a lone surrogate cannot even be printed to a strict UTF-8 stream.
    """
    return text if text.isprintable() else "".join(map(_escape, text))


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one file: printed as a single `PATH: FIELD: REASON` line."""

    path: str
    field: str
    reason: str

    def __str__(self) -> str:
        reason = " ".join(self.reason.split())
        return f"{printable(self.path)}: {printable(self.field or '-')}: {printable(reason)}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "field": self.field, "reason": self.reason}


class FoundryError(Exception):
    """A user-level failure (bad input, rejected order): exit 1, no traceback."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        if self.problems and not self.args[0]:
            return "\n".join(str(p) for p in self.problems)
        return str(self.args[0])


class ExchangeError(FoundryError):
    """An exchange file could not be accepted; carries the one-line problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("", problems)


class UsageError(Exception):
    """The command line itself was wrong: exit 2."""


def os_error_line(exc: OSError) -> str:
    """One line for a failure of the system under us (full disk, I/O error): not a bug, not a log.

    A failed fsync or write is never retried in the same process; the next run
    starts over from the last durable state.
    """
    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    where = f": {printable(str(exc.filename))}" if exc.filename else ""
    return f"toyfoundry: error: {name}: {exc.strerror or exc}{where}"


def say(text: str) -> None:
    """Write `text` and its newline to stderr in one write, flushed.

    The workers of a parallel build share the stream; `print` writes the newline
    separately, which lets two workers' lines run into one.
    """
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()
