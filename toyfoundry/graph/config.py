"""doit settings the dodo file exports: our DB backend, checker, reporter, continue-on-failure."""

from __future__ import annotations

from typing import Any

from toyfoundry.graph.checker import FoundryChecker
from toyfoundry.graph.reporter import FoundryReporter

DOIT_CONFIG: dict[str, Any] = {
    "backend": "toyfoundry",
    "dep_file": ".toyfoundry/doit.sqlite",
    "check_file_uptodate": FoundryChecker,
    "reporter": FoundryReporter,
    # a bad order must not stop the factory: every other order still builds
    "continue": True,
    "default_tasks": ["mint", "rituals", "report", "quilt", "export", "dashboard", "validate"],
}
