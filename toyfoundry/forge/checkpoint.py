"""Human phase checkpoints: approving expansion or operational lets that phase's orders build."""

from __future__ import annotations

from typing import cast

from pydantic import ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.exchange.loader import Exchange, display, pydantic_problems
from toyfoundry.formats.models import SCHEMA_VERSION, Checkpoint, Phase
from toyfoundry.store.atomic import write_json_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.store.runid import utc_now

GATED_PHASES = ("expansion", "operational")


def approve(layout: Layout, phase: str, *, by: str, note: str = "") -> tuple[Checkpoint, bool]:
    """Write `exchange/checkpoints/<phase>.json` atomically; (checkpoint, False) if one exists.

    An existing valid approval is kept as it is: rewriting it would change
    `approved_at`, and with it every mint artefact of the phase, for nothing.
    """
    if phase not in GATED_PHASES:
        raise FoundryError(f"{phase!r} needs no checkpoint: only {' and '.join(GATED_PHASES)} do")
    existing = Exchange(layout).checkpoint(phase)
    if existing is not None and existing.ok and existing.model is not None:
        return existing.model, False
    try:
        checkpoint = Checkpoint(
            schema_version=SCHEMA_VERSION,
            phase=cast(Phase, phase),
            approved_by=by,
            approved_at=utc_now(),
            note=note,
        )
    except ValidationError as exc:
        shown = display(layout, layout.checkpoint_file(phase))
        raise FoundryError("", pydantic_problems(shown, exc)) from None
    write_json_atomic(layout.checkpoint_file(phase), checkpoint)
    return checkpoint, True
