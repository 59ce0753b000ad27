"""The review queue at scale: the operators' guide's commands clear a generated exchange's queue in one build.

The exchange is bench's workload with forbidden rules as a quality desk writes them
(about 1 Alfa in 20 refused). `TOYFOUNDRY_REVIEW_ORDERS=1000` replays it at 1,000 orders;
run with `-s` to see the figures.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import workload
from tests.conftest import REPO, Result, executed
from toyfoundry.formats.review_key import is_replacement
from toyfoundry.store.layout import Layout

ORDERS = int(os.environ.get("TOYFOUNDRY_REVIEW_ORDERS", "72"))
QUEUE = re.compile(r"^(\d+) quarantined Alfa\(s\) await review")


def scenario() -> list[list[str]]:
    """The command lines of the operators' guide's review scenario, in order."""
    text = (REPO / "docs" / "operators.md").read_text(encoding="utf-8")
    block = text.split("<!-- review-scenario -->")[1].split("<!-- /review-scenario -->")[0]
    return [shlex.split(line[2:]) for line in block.splitlines() if line.startswith("$ ")]


def run(root: Path, argv: list[str]) -> Result:
    """A line of the guide in a fresh process, from the project folder, as a user types it."""
    assert argv[0] == "toyfoundry"
    proc = subprocess.run(
        [sys.executable, "-m", "toyfoundry", *argv[1:]],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONPATH": str(REPO), "TOYFOUNDRY_ROOT": str(root)},
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def batches(layout: Layout) -> dict[str, list[dict[str, Any]]]:
    """Each order's Alfas as mint.json holds them."""
    return {
        path.parent.name: json.loads(path.read_bytes())["alfas"]
        for path in sorted(layout.build.glob("*/mint.json"))
    }


def queue(out: str) -> int:
    first = out.splitlines()[0]
    if first == "nothing awaits review":
        return 0
    found = QUEUE.match(first)
    assert found, out
    return int(found.group(1))


def test_the_readme_clears_a_realistic_queue_in_one_build(tmp_path: Path) -> None:
    root = tmp_path / "factory"
    order_ids = workload.write(root, ORDERS, forbidden=workload.REVIEW_FORBIDDEN)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy2(REPO / "dodo.py", root / "dodo.py")
    layout = Layout(root)
    lines = scenario()
    builds = [i for i, argv in enumerate(lines) if argv[:2] == ["toyfoundry", "build"]]
    assert len(builds) == 2 and builds[0] == 0, "the scenario is: build, decide, one rebuild"
    queues: list[int] = []
    before: dict[str, list[dict[str, Any]]] = {}
    ran: list[str] = []
    for i, argv in enumerate(lines):
        if i == builds[1]:
            before = batches(layout)
        result = run(root, argv)
        assert result.code == 0, f"{shlex.join(argv)}\n{result.out}\n{result.err}"
        if argv[:3] == ["toyfoundry", "review", "list"]:
            queues.append(queue(result.out))
        if i == builds[1]:
            ran = executed(result.out)
    decided = {p.stem for p in layout.reviews_dir.glob("*.json")}
    reminted = {name.split(":", 1)[1] for name in ran if name.startswith("mint:")}
    after = batches(layout)

    assert queues[0] > ORDERS, "most orders hold quarantined Alfas"
    assert queues[-1] == 0, "the queue is cleared"
    assert decided <= reminted, "every order with new decisions is re-minted"
    # an order re-run only because its chain file changed comes out with the same batch
    assert all(after[o] == before[o] for o in reminted - decided)
    assert len(reminted - decided) <= len(order_ids) - len(decided)
    # no replacement is a forbidden combination (nor anything else still quarantined)
    replacements = [a for alfas in after.values() for a in alfas if is_replacement(a["alfa_id"])]
    assert replacements and all(a["outcome"] == "passed" for a in replacements)

    again = run(root, ["toyfoundry", "build"])
    assert again.code == 0 and executed(again.out) == [], "the decisions are applied once"

    decides = [argv for argv in lines if argv[1:3] == ["review", "decide"]]
    print(
        f"\nreview scenario at {ORDERS} orders: {len(lines)} commands"
        f" ({len(decides)} decide, 2 builds); queue {queues[0]} -> {queues[-1]};"
        f" rebuild re-minted {len(reminted)} orders ({len(decided)} with new decisions,"
        f" {len(reminted - decided)} re-run for their chain, same batch),"
        f" {len(ran)} tasks run of {3 * len(order_ids) + 4}"
    )
