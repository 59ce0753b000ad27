"""One snapshot per build: a task acts only on the bytes the graph's plan was drawn from.

The plan decides each order's chain and inputs from the exchange as it was when the
build started. A file finished, replaced or renamed over another while the build
runs would otherwise be minted against a plan made for other bytes (a new order
with no predecessor chain, an order of another recipe on the old recipe's chain),
and the build would exit 0 with outputs no clean build gives. So the graph hands
each task the content identity the plan recorded for its inputs, and the mint
compares it with the digests of the bytes it actually read, before it writes
anything: on a difference the order is rejected with one line per such file
("changed during the build; run `doit` again") and hands on the chain it was
given, like any rejected order, so the build exits 1 and the rest of the graph
still runs; the rituals mint again when an input changed after the mint read it.
The next build plans again from the new bytes.

A file gone since the plan is not a difference: reading it now gives what a clean
build without it gives (an order deleted mid-build is rejected as missing, a
deleted review is no review), and the rest of the graph still builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout

CHANGED = "changed during the build; run `doit` again"
#: How the graph names an input the plan found as a link, a FIFO or the like (not read).
ODD_PREFIX = "odd: "


def mixed(problems: Iterable[Any]) -> bool:
    """Whether an artefact's problems say it was refused for an input that changed mid-build."""
    return any(getattr(p, "reason", None) == CHANGED for p in problems)


def _not_read(content: str) -> bool:
    """Whether the plan's content stands for a file it could not read (see graph.plan)."""
    return content.startswith(("refused: ", "unreadable ", "vanished", ODD_PREFIX))


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
        if got is None:
            # refused by the reader (too big, hard-linked, not JSON...) or unreadable: its
            # identity as the plan took it, from its bytes whatever they hold
            path = layout.root / rel
            if not safe_read.present(path):
                continue  # gone: what a clean build would read too
            try:
                got = safe_read.sha256_regular(path)
            except safe_read.ReadError:
                if _not_read(content):
                    continue  # not readable then either
        if got != content:
            out.append(rel)
    return out
