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
    # report first: doit then creates each order's mint, rituals and report together, in
    # issue order, so the chains never make it walk a recipe's whole history at once
    "default_tasks": ["report", "rituals", "mint", "quilt", "export", "dashboard", "validate"],
}

#: The doit plugins the project's `pyproject.toml` names (`[tool.doit.plugins]`), for the
#: callers that run doit from this package on a folder that may have no such file
#: (`toyfoundry build`, the graph watcher). Without them doit's own `run` would build
#: serially, tear the interpreter down, and count a failed order as an error. A
#: folder's own configuration still comes on top.
DOIT_PLUGINS: dict[str, dict[str, str]] = {
    "COMMAND": {
        "run": "toyfoundry.graph.run:FoundryRun",
        "auto": "toyfoundry.watch.doit_auto:Auto",
        "dumpdb": "toyfoundry.graph.dumpdb:FoundryDumpDB",
    },
    "BACKEND": {"toyfoundry": "toyfoundry.graph.backend:FoundryDB"},
    "REPORTER": {"toyfoundry": "toyfoundry.graph.reporter:FoundryReporter"},
}
