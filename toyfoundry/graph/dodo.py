"""The graph as an importable module: what the project's dodo.py re-exports for doit."""

from toyfoundry.graph.config import DOIT_CONFIG
from toyfoundry.graph.tasks import (
    task_dashboard,
    task_export,
    task_mint,
    task_quilt,
    task_report,
    task_rituals,
    task_validate,
)

__all__ = [
    "DOIT_CONFIG",
    "task_dashboard",
    "task_export",
    "task_mint",
    "task_quilt",
    "task_report",
    "task_rituals",
    "task_validate",
]
