"""User-facing problems as data, and the two exceptions the command line maps to exit codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one file: printed as a single `PATH: FIELD: REASON` line."""

    path: str
    field: str
    reason: str

    def __str__(self) -> str:
        reason = " ".join(self.reason.split())
        return f"{self.path}: {self.field or '-'}: {reason}"

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
