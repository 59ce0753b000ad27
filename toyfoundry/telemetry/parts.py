"""Quilt parts: one order's BatchSummary in `quilt/parts/<order>.json`, made once per change."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from toyfoundry.formats.models import BatchSummary
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.artefacts import display


def part_path(layout: Layout, order_id: str) -> Path:
    return layout.quilt_part(order_id)


def read_part(layout: Layout, order_id: str) -> tuple[BatchSummary | None, str | None]:
    """The order's part, or why there is none (as a skip line)."""
    path = part_path(layout, order_id)
    try:
        return BatchSummary.model_validate_json(path.read_bytes()), None
    except FileNotFoundError:
        return None, (
            f"{display(layout, path)}: missing: order {order_id} has no summary"
            " (not built yet, or its build artefacts could not be read)"
        )
    except ValidationError as exc:
        return (
            None,
            f"{display(layout, path)}: not a valid batch summary ({exc.error_count()} errors)",
        )
