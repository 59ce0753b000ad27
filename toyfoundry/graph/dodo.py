"""The graph as an importable module: what the project's dodo.py re-exports for doit."""

from toyfoundry.graph.config import DOIT_CONFIG
from toyfoundry.graph.run import whole_process
from toyfoundry.graph.tasks import (
    task_dashboard,
    task_export,
    task_mint,
    task_quilt,
    task_report,
    task_rituals,
    task_validate,
)
from toyfoundry.pipes import end_quietly_on_closed_pipe

if whole_process():  # doit's console script, not a test or a watcher that loads the graph
    end_quietly_on_closed_pipe()

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
