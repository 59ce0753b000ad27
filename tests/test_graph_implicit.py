"""doit's implicit task dependencies, added in linear time: the same graph as doit's own."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from doit.control import TaskControl
from doit.loader import load_tasks
from doit.task import Task

from tests.support import foundry_graph
from toyfoundry.graph.implicit import linear_implicit_deps
from toyfoundry.graph.run import our_runners

Spec = list[dict[str, Any]]


def _graph(seed: int) -> Spec:
    """Tasks with targets, file deps on other tasks' targets (repeated, in any order),
    on plain files and on their own targets, and some explicit task deps."""
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    targets = {f"t{i}": [f"out/{i}.{k}" for k in range(rng.randint(0, 3))] for i in range(n)}
    every = [p for outs in targets.values() for p in outs] + [f"in/{k}" for k in range(5)]
    spec = []
    for i in range(n):
        deps = [rng.choice(every) for _ in range(rng.randint(0, 30))] if every else []
        spec.append(
            {
                "name": f"t{i}",
                "targets": targets[f"t{i}"],
                "file_dep": list(dict.fromkeys(deps)),
                "task_dep": sorted({f"t{rng.randrange(n)}" for _ in range(rng.randint(0, 3))}),
            }
        )
    return spec


def _deps(task_list: list[Task]) -> dict[str, list[str]]:
    control = TaskControl(task_list)
    return {name: list(task.task_dep) for name, task in control.tasks.items()}


def _tasks(spec: Spec) -> list[Task]:
    return [Task(s["name"], None, **{k: v for k, v in s.items() if k != "name"}) for s in spec]


@pytest.mark.parametrize("seed", range(60))
def test_the_same_task_deps_in_the_same_order_as_doits_own(seed: int) -> None:
    spec = _graph(seed)
    expected = _deps(_tasks(spec))
    with linear_implicit_deps():
        got = _deps(_tasks(spec))
    assert got == expected


def test_the_patch_is_undone_after_the_block() -> None:
    before = TaskControl.__dict__["add_implicit_task_dep"]
    with our_runners():
        assert TaskControl.__dict__["add_implicit_task_dep"] is not before
    assert TaskControl.__dict__["add_implicit_task_dep"] is before


def test_the_foundrys_graph_is_the_same_with_either(tmp_path: Path) -> None:
    with foundry_graph(tmp_path) as namespace:
        expected = _deps(load_tasks(namespace))
        with linear_implicit_deps():
            got = _deps(load_tasks(namespace))
    assert got == expected
    assert len(got["quilt"]) > 2  # the global tasks depend on the orders' tasks
