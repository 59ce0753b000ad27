"""One snapshot per build: a task acts only on the bytes the graph's plan was drawn from.

The plan decides each order's chain and inputs from the exchange as it was when the
build started. A file finished, replaced or renamed over another while the build
runs would otherwise be minted against a plan made for other bytes (a new order
with no predecessor chain, an order of another recipe on the old recipe's chain),
and the build would exit 0 with outputs no clean build gives. So the graph hands
each task the content identity the plan recorded for its inputs, and the task
compares it with the digests of the bytes it actually read, before it writes
anything: a difference fails the task with one line per file, and the next build
plans again from the new bytes.

A file gone since the plan is not a difference: reading it now gives what a clean
build without it gives (an order deleted mid-build is rejected as missing, a
deleted review is no review), and the rest of the graph still builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from toyfoundry.errors import FoundryError, Problem
from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout

CHANGED = "changed during the build; run `doit` again"


class InputsChanged(FoundryError):
    """An input's bytes differ from the ones the plan was drawn from."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("", problems)


def _not_read(content: str) -> bool:
    """Whether the plan's content stands for a file it could not read (see graph.plan)."""
    return content.startswith(("refused: ", "unreadable ", "vanished"))


def changed_inputs(
    layout: Layout, planned: Mapping[str, str], read: Mapping[str, str | None]
) -> list[str]:
    """The planned inputs (project-relative) whose bytes as read differ from the plan's.

    `read` maps the same paths to the sha256 of the bytes a task used, or None for
    a file it could not read; paths the task did not read are not compared (an
    input list that moved is itself the consequence of a changed file that is).
    """
    out = []
    for rel, content in sorted(planned.items()):
        if rel not in read:
            continue
        got = read[rel]
        if got == content:
            continue
        if got is None and (_not_read(content) or not safe_read.present(layout.root / rel)):
            continue  # unreadable both times, or gone: what a clean build would read too
        out.append(rel)
    return out


def check_snapshot(
    layout: Layout, planned: Mapping[str, str] | None, read: Mapping[str, str | None]
) -> None:
    """Raise `InputsChanged` when an input read is not the one planned (None: no plan)."""
    if planned is None:
        return
    changed = changed_inputs(layout, planned, read)
    if changed:
        raise InputsChanged([Problem(str(Path(rel)), "-", CHANGED) for rel in changed])
