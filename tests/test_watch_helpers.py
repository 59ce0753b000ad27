"""Shared pieces of the watch tests: a light stand-in graph, order writers and bounded waits."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from toyfoundry.store.layout import Layout

T = TypeVar("T")

#: The graph's task names and file shapes with tiny actions: fast enough for 200-order bursts.
LIGHT_DODO = '''
"""A light stand-in for Toyfoundry's graph: the same task names and chains, tiny actions."""

import hashlib
import os
import sys
import time
from pathlib import Path

from doit.exceptions import TaskFailed

from toyfoundry.exchange.loader import Exchange
from toyfoundry.graph.tasks import current_plan, rel
from toyfoundry.store.atomic import write_json_atomic
from toyfoundry.store.layout import Layout

GLOBAL = ["quilt", "export", "dashboard", "validate"]
DOIT_CONFIG = {
    "backend": "toyfoundry",
    "dep_file": ".toyfoundry/doit.sqlite",
    "continue": True,
    "default_tasks": ["mint", "rituals", "report", *GLOBAL],
}


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mint(root, order_id):
    layout = Layout(Path(root))
    loaded = Exchange(layout).order(order_id)
    if not loaded.ok:
        for problem in loaded.problems:
            print(problem, file=sys.stderr)
        return TaskFailed(f"order {order_id} rejected")
    order = rel(layout, layout.order_file(order_id))
    write_json_atomic(
        layout.mint_artefact(order_id),
        {"order_id": order_id, "status": "built", "inputs": {order: _sha(layout.root / order)}},
    )
    return None


def rituals(root, order_id, previous):
    layout = Layout(Path(root))
    digest = hashlib.sha256(layout.mint_artefact(order_id).read_bytes())
    if previous:
        digest.update(layout.chain_file(previous).read_bytes())
    write_json_atomic(layout.rituals_artefact(order_id), {"order_id": order_id})
    write_json_atomic(layout.chain_file(order_id), {"history": digest.hexdigest()})


def report(root, order_id):
    layout = Layout(Path(root))
    chain = layout.chain_file(order_id).read_bytes()
    write_json_atomic(
        layout.report_json(order_id),
        {
            "order_id": order_id,
            "status": "dry-run",
            "chain": hashlib.sha256(chain).hexdigest(),
        },
    )


def quilt(root, orders):
    layout = Layout(Path(root))
    slow = float(os.environ.get("LIGHT_DODO_SLOW", "0"))
    if slow:
        (layout.state / "slow-task-started").write_text("yes")
        time.sleep(slow)
    write_json_atomic(layout.rollup, {"orders": orders})


def copy(root, source, target):
    layout = Layout(Path(root))
    write_json_atomic(layout.root / target, {"from": _sha(layout.root / source)})


def task_mint():
    plan = current_plan()
    layout = plan.layout
    for node in plan.orders:
        deps = [layout.order_file(node.order_id)]
        if node.recipe and layout.recipe_file(node.recipe).is_file():
            deps.append(layout.recipe_file(node.recipe))
        review = layout.review_file(node.order_id)
        if review.is_file():
            deps.append(review)
        yield {
            "name": node.order_id,
            "actions": [(mint, [str(layout.root), node.order_id])],
            "file_dep": [rel(layout, p) for p in deps],
            "targets": [rel(layout, layout.mint_artefact(node.order_id))],
        }


def task_rituals():
    plan = current_plan()
    layout = plan.layout
    for node in plan.orders:
        deps = [layout.mint_artefact(node.order_id)]
        if node.previous:
            deps.append(layout.chain_file(node.previous))
        yield {
            "name": node.order_id,
            "actions": [(rituals, [str(layout.root), node.order_id, node.previous])],
            "file_dep": [rel(layout, p) for p in deps],
            "targets": [
                rel(layout, layout.rituals_artefact(node.order_id)),
                rel(layout, layout.chain_file(node.order_id)),
            ],
        }


def task_report():
    plan = current_plan()
    layout = plan.layout
    for node in plan.orders:
        yield {
            "name": node.order_id,
            "actions": [(report, [str(layout.root), node.order_id])],
            "file_dep": [rel(layout, layout.chain_file(node.order_id))],
            "targets": [rel(layout, layout.report_json(node.order_id))],
        }


def task_quilt():
    plan = current_plan()
    layout = plan.layout
    orders = [n.order_id for n in plan.orders]
    return {
        "actions": [(quilt, [str(layout.root), orders])],
        "file_dep": [rel(layout, layout.rituals_artefact(o)) for o in orders],
        "targets": [rel(layout, layout.rollup)],
    }


def task_export():
    layout = current_plan().layout
    target = rel(layout, layout.exports / "batches.jsonl")
    return {
        "actions": [(copy, [str(layout.root), rel(layout, layout.rollup), target])],
        "file_dep": [rel(layout, layout.rollup)],
        "targets": [target],
    }


def task_dashboard():
    layout = current_plan().layout
    target = rel(layout, layout.dashboard)
    return {
        "actions": [(copy, [str(layout.root), rel(layout, layout.rollup), target])],
        "file_dep": [rel(layout, layout.rollup)],
        "targets": [target],
    }


def task_validate():
    plan = current_plan()
    return {
        "actions": [lambda: None],
        "file_dep": list(plan.regular_inputs),
    }
'''


def write_light_dodo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "light_dodo.py"
    path.write_text(LIGHT_DODO, encoding="utf-8")
    return path


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_light_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pilot_order(order_id: str, *, recipe: str = "sprocket-scout", seed: int = 1) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "order_id": order_id,
        "phase": "pilot",
        "recipe": recipe,
        "batch_size": 4,
        "seed": seed,
        "dry_run": True,
        "issued_by": "Watch Tests",
    }


def order_bytes(order_id: str, **kwargs: Any) -> bytes:
    return (json.dumps(pilot_order(order_id, **kwargs), indent=2) + "\n").encode()


def drop(path: Path, data: bytes) -> None:
    """Write the way a careful producer does: a hidden temp file in the folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    temp.write_bytes(data)
    os.replace(temp, path)


def drop_order(layout: Layout, order_id: str, **kwargs: Any) -> Path:
    path = layout.order_file(order_id)
    drop(path, order_bytes(order_id, **kwargs))
    return path


def wait_for(probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.02) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {probe}")
        time.sleep(interval)


def stays(probe: Callable[[], bool], seconds: float, interval: float = 0.02) -> None:
    """Assert `probe` holds throughout `seconds`: the bounded form of "nothing happens"."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), f"{probe} stopped holding"
        time.sleep(interval)
