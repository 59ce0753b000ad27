"""The slim dispatcher, nodes and tasks of `graph.run` hand out the same tasks in the same
order as doit's own, with the same failed dependencies, on generated graphs and on ours."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from doit.control import TaskControl
from doit.exceptions import InvalidDodoFile
from doit.loader import load_tasks
from doit.task import Task

from tests.support import foundry_graph
from toyfoundry.graph import tasks
from toyfoundry.graph.run import SlimTask, _Ready, compact, our_runners

Spec = list[dict[str, Any]]


def _graph(seed: int) -> Spec:
    """Tasks with targets, file deps on other tasks' targets and on plain files, explicit
    task deps (a cycle now and then), and now and then a setup task or a calc dep, which
    take doit's own path."""
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    targets = {f"t{i}": [f"out/{i}.{k}" for k in range(rng.randint(0, 3))] for i in range(n)}
    every = [p for outs in targets.values() for p in outs] + [f"in/{k}" for k in range(5)]
    spec = []
    for i in range(n):
        deps = [rng.choice(every) for _ in range(rng.randint(0, 8))]
        task: dict[str, Any] = {
            "name": f"t{i}",
            "targets": targets[f"t{i}"],
            "file_dep": list(dict.fromkeys(deps)),
            "task_dep": sorted({f"t{rng.randrange(n)}" for _ in range(rng.randint(0, 2))}),
        }
        if rng.random() < 0.1:
            task["setup"] = [f"t{rng.randrange(n)}"]
        if rng.random() < 0.1:
            task["calc_dep"] = [f"t{rng.randrange(n)}"]
        spec.append(task)
    return spec


def _dispatch(task_list: list[Task], fails: set[str]) -> list[Any]:
    """Drive the dispatcher as doit's serial runner does: every task handed out runs at
    once and succeeds, but those in `fails`; what it hands out, and each one's failed deps."""
    control = TaskControl(task_list)
    control.process(None)
    dispatcher = control.task_dispatcher()
    out: list[Any] = []
    node: Any = None
    try:
        while True:
            try:
                node = dispatcher.generator.send(node)
            except StopIteration:
                break
            if node == "hold on":
                out.append("hold on")
                break
            bad = sorted(n.task.name for n in node.bad_deps)
            out.append((node.task.name, bad))
            node.run_status = "failure" if node.task.name in fails or bad else "successful"
    except InvalidDodoFile as exc:
        out.append(("cycle", str(exc)))
    return out


def _tasks(spec: Spec) -> list[Task]:
    """The tasks, each file-dep set copied: doit adds implicit deps in the set's order, and
    `compact` copies a set that grew one by one (a smaller table, so another order, as
    another hash seed gives), so both sides start from sets of the same layout."""
    return _copied(
        [Task(s["name"], None, **{k: v for k, v in s.items() if k != "name"}) for s in spec]
    )


def _copied(task_list: list[Task]) -> list[Task]:
    for task in task_list:
        task.file_dep = set(task.file_dep)
    return task_list


@pytest.mark.parametrize("seed", range(80))
def test_the_same_tasks_in_the_same_order_as_doits_dispatcher(seed: int) -> None:
    spec = _graph(seed)
    fails = {s["name"] for s in spec if random.Random(seed + 1000).random() < 0.2}
    expected = _dispatch(_tasks(spec), fails)
    slim = _tasks(spec)
    compact(slim)
    with our_runners(drop_targets=True):
        got = _dispatch(slim, fails)
    assert got == expected


def test_the_foundrys_graph_is_dispatched_the_same(tmp_path: Path) -> None:
    with foundry_graph(tmp_path) as namespace:
        expected = _dispatch(_copied(load_tasks(namespace)), set())
        loaded = _copied(load_tasks(namespace))
        compact(loaded)
        tasks.slim_targets(loaded)
        assert all(isinstance(t, SlimTask) for t in loaded)
        with our_runners(drop_targets=True):
            got = _dispatch(loaded, set())
    assert got == expected and len(got) == len(loaded)


def test_a_free_worker_is_handed_its_orders_next_stage_first() -> None:
    """The ready queue hands out first a node of the order that just finished (so its
    worker keeps the order's parsed artefacts), once, and only near the queue's head;
    otherwise doit's order."""
    ready = _Ready()
    mint2, report1, rituals3 = _node("mint:2"), _node("report:1"), _node("rituals:3")
    ready.extend([mint2, report1, rituals3])
    ready.prefer = "1"
    assert ready.popleft() is report1
    assert ready.prefer is None
    assert ready.popleft() is mint2
    ready.extend([_node(f"mint:{i}") for i in range(40)])
    ready.prefer = "39"  # further down than a running build's queue ever is
    assert ready.popleft() is rituals3
    ready.prefer = "nothing ready"
    assert ready.popleft().task.name == "mint:0"


def _node(name: str) -> Any:
    return SimpleNamespace(task=SimpleNamespace(name=name))
