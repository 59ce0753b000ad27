"""doit is pinned to the releases the tests cover: the runner and the backend use its internals.

`graph/run.py` replaces doit's runners and mirrors `Run._execute`'s options,
`graph/backend.py` is a doit backend, `graph/checker.py` subclasses its checker, and
doit's main branch has already moved some of these. A doit outside the pin fails here
first, by name, instead of somewhere deep in a build.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import tomllib

import doit.cmd_run
import doit.dependency
import doit.runner

from tests.conftest import REPO
from toyfoundry.graph.run import FoundryRun

#: The doit releases the suite is run against (major, minor).
TESTED = (0, 37)
PIN = "doit>=0.37,<0.38"


def test_the_installed_doit_is_a_tested_release() -> None:
    version = importlib.metadata.version("doit")
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    assert major_minor == TESTED, (
        f"doit {version} is not a release Toyfoundry is tested with"
        f" ({TESTED[0]}.{TESTED[1]}.x): its runner and backend use doit's internals;"
        " run the suite against it, then move the pin in pyproject.toml and here"
    )


def test_pyproject_pins_doit_to_the_tested_release() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.split(">")[0].split("<")[0] == "doit"]
    assert pins == [PIN]


def test_the_internals_the_foundry_uses_are_there() -> None:
    # the run command passes every option of doit's `_execute` on by name
    theirs = list(inspect.signature(doit.cmd_run.Run._execute).parameters)
    ours = list(inspect.signature(FoundryRun._execute).parameters)
    assert ours == theirs
    # the runners doit's `run` picks by module name, and what ours override
    assert doit.cmd_run.Runner is doit.runner.Runner or hasattr(doit.cmd_run, "Runner")
    assert hasattr(doit.cmd_run, "MRunner")
    assert callable(getattr(doit.runner.Runner, "_handle_task_error", None))
    assert callable(getattr(doit.runner.MRunner, "_run_start_processes", None))
    # the checker the backend's hash cache plugs into, and a backend's interface
    assert callable(getattr(doit.dependency.MD5Checker, "check_modified", None))
    assert {"get", "set", "remove", "dump", "in_"} <= set(dir(doit.dependency.DbmDB))
