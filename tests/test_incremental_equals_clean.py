"""Incremental equals clean: after any history of what users do, `doit` leaves what a clean
build of the same inputs leaves.

A hypothesis state machine plays a user on a small project: it adds, edits, deletes and
re-adds orders, edits a recipe, withdraws and restores checkpoints, records and removes
reviews, deletes outputs, runs the README's manual commands, touches every mtime,
restores the project as a CI runner does (the inputs and the cached `.toyfoundry/`
only), runs `toyfoundry watch` and `doit auto` for a cycle, and kills builds at
random moments. After each `doit` three things must hold:

- every deliverable (reports, the outbox, the export datasets, the build artefacts)
  equals, byte for byte, the same file of a clean build of the same inputs;
- a second `doit` executes no task (but the report of a rejected order, which fails
  on purpose, like a compiler error, until the order is fixed);
- no temp file is left anywhere, and every ledger line parses (no torn line).

`make test` runs a few examples; `TOYFOUNDRY_SOAK=1` runs thousands
(`TOYFOUNDRY_DIFF_EXAMPLES` and `TOYFOUNDRY_DIFF_STEPS` override both).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from tests.conftest import REPO, SAMPLE, doit, executed

SOAK = os.environ.get("TOYFOUNDRY_SOAK") == "1"
EXAMPLES = int(os.environ.get("TOYFOUNDRY_DIFF_EXAMPLES", "2000" if SOAK else "4"))
STEPS = int(os.environ.get("TOYFOUNDRY_DIFF_STEPS", "12" if SOAK else "8"))

RECIPES = ("sprocket-scout", "bolt-bunny", "marble-mech")
CAPS = {"pilot": 12, "expansion": 48, "operational": 96}
#: Ids the machine may add: the sample orders' and a few of its own, in two recipes' chains.
NEW_IDS = ("2025-11-03-001", "2025-11-03-002", "2025-11-04-001")
SAMPLE_ORDERS = tuple(sorted(p.name for p in (SAMPLE / "orders").glob("*.json")))
INPUT_FOLDERS = ("recipes", "checkpoints", "orders", "reviews")


# --------------------------------------------------------------------------- the project


def inputs(root: Path) -> dict[str, bytes]:
    """Every file a build reads from the user: the exchange's inputs, the settings, the dodo."""
    out: dict[str, bytes] = {}
    for folder in INPUT_FOLDERS:
        base = root / "exchange" / folder
        for path in sorted(base.glob("*")) if base.exists() else []:
            if path.is_file():
                out[f"exchange/{folder}/{path.name}"] = path.read_bytes()
    for name in ("pyproject.toml", "dodo.py"):
        out[name] = (root / name).read_bytes()
    return out


def write_inputs(root: Path, files: dict[str, bytes]) -> None:
    for folder in INPUT_FOLDERS:
        (root / "exchange" / folder).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).write_bytes(data)


def inputs_key(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for rel, data in sorted(files.items()):
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def is_temp(path: Path) -> bool:
    return path.name.endswith(".tmp")


def deliverables(root: Path) -> dict[str, bytes]:
    """What the foundry delivers, by path: reports, the outbox, the export datasets and the
    build artefacts. The dated dashboard copies carry the wall-clock day, and the quilt,
    the dashboard and the ledgers carry telemetry (every attempt, history included)."""
    out: dict[str, bytes] = {}
    state = root / ".toyfoundry"
    bases = [
        root / "exchange" / "reports",
        root / "exchange" / "outbox",
        state / "telemetry" / "quilt" / "exports",
        state / "build",
    ]
    for base in bases:
        for path in sorted(base.rglob("*")) if base.exists() else []:
            if path.is_file() and not is_temp(path) and "dashboards" not in path.parts:
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


def temp_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*.tmp") if "__pycache__" not in p.parts
    )


def torn_ledger_lines(root: Path) -> list[str]:
    """Ledger lines that do not parse, and ledgers whose last line has no newline."""
    bad: list[str] = []
    ledgers = [*(root / ".toyfoundry" / "telemetry").glob("*.jsonl")]
    ledgers.append(root / ".toyfoundry" / "doctrine" / "index.jsonl")
    for path in ledgers:
        if not path.exists():
            continue
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            bad.append(f"{path.name}: ends in a torn line")
        for number, line in enumerate(data.split(b"\n"), 1):
            if not line:
                continue
            try:
                json.loads(line)
            except ValueError:
                bad.append(f"{path.name}:{number}: {line[:80]!r}")
    return bad


def toyfoundry(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`toyfoundry --root ROOT ARGS` in a fresh process, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "toyfoundry", "--root", str(root), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
    )


def rejected_orders(root: Path) -> set[str]:
    """Orders whose mint.json says rejected: their report fails on purpose at every build."""
    out = set()
    for path in (root / ".toyfoundry" / "build").glob("*/mint.json"):
        try:
            if json.loads(path.read_bytes()).get("status") == "rejected":
                out.add(path.parent.name)
        except ValueError:
            continue
    return out


def failed(output: str) -> set[str]:
    """Tasks a doit run reported as failed: like a compiler error, they run until fixed."""
    return {
        line.split("taskid:", 1)[1].strip()
        for line in output.splitlines()
        if "taskid:" in line and line.split(" ", 1)[0] in ("TaskFailed", "TaskError")
    }


#: Clean builds, by the hash of their inputs: a history often comes back to the same inputs.
_clean: dict[str, dict[str, bytes]] = {}


def clean_build(files: dict[str, bytes], base: Path) -> dict[str, bytes]:
    key = inputs_key(files)
    if key not in _clean:
        root = Path(tempfile.mkdtemp(prefix="clean-", dir=base))
        try:
            write_inputs(root, files)
            result = doit(root)
            assert result.code in (0, 1), result.out + result.err
            _clean[key] = deliverables(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return _clean[key]


def diff(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    lines = [f"missing: {p}" for p in sorted(want.keys() - got.keys())]
    lines += [f"extra: {p}" for p in sorted(got.keys() - want.keys())]
    lines += [f"differs: {p}" for p in sorted(want.keys() & got.keys()) if want[p] != got[p]]
    return lines


def check(root: Path, base: Path) -> None:
    """Build, then the three parts of the invariant."""
    first = doit(root)
    assert first.code in (0, 1), f"doit crashed ({first.code}):\n{first.out}\n{first.err}"
    again = doit(root)
    assert again.code in (0, 1), f"doit crashed ({again.code}):\n{again.out}\n{again.err}"
    allowed = failed(first.out + first.err) | {f"report:{o}" for o in rejected_orders(root)}
    rerun = [t for t in executed(again.out) if t not in allowed]
    assert rerun == [], f"a second doit ran {rerun}\n{again.out}\n{again.err}"
    assert temp_files(root) == []
    assert torn_ledger_lines(root) == []
    want = clean_build(inputs(root), base)
    problems = diff(deliverables(root), want)
    assert problems == [], "incremental differs from clean:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- the user


def order_data(order_id: str, phase: str, recipe: str, size: int, seed: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "order_id": order_id,
        "phase": phase,
        "recipe": recipe,
        "batch_size": size,
        "seed": seed,
        "dry_run": phase == "pilot",
        "issued_by": "High Command",
        "notes": f"order {order_id}",
    }


def dump(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


class Watching:
    """A watcher in its own session, its output lines collected by a thread; Ctrl-C on exit."""

    def __init__(self, argv: list[str], root: Path) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        #: every line read so far, for a failure's message
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, prefix: str, timeout: float = 90) -> bool:
        """True once a line starting with `prefix` was printed; False on timeout or exit."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    return False
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return True
        return False

    def transcript(self) -> str:
        return "".join(self.seen[-40:])

    def __enter__(self) -> Watching:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.thread.join(timeout=10)


class IncrementalEqualsClean(RuleBasedStateMachine):
    """A user's history on a small project; `build` checks the invariant after each `doit`."""

    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="incremental-"))
        self.root = self.base / "project"
        self.root.mkdir()
        write_inputs(self.root, self._sample_inputs())
        self.deleted: dict[str, bytes] = {}
        self.withdrawn: dict[str, bytes] = {}
        self.dirty = True

    @staticmethod
    def _sample_inputs() -> dict[str, bytes]:
        files = {
            f"exchange/recipes/{p.name}": p.read_bytes()
            for p in sorted((SAMPLE / "recipes").glob("*.json"))
        }
        files |= {
            f"exchange/checkpoints/{p.name}": p.read_bytes()
            for p in sorted((SAMPLE / "checkpoints").glob("*.json"))
        }
        files |= {
            f"exchange/orders/{name}": (SAMPLE / "orders" / name).read_bytes()
            for name in SAMPLE_ORDERS[:3]
        }
        files["pyproject.toml"] = (REPO / "pyproject.toml").read_bytes()
        files["dodo.py"] = (REPO / "dodo.py").read_bytes()
        return files

    def teardown(self) -> None:
        try:
            if self.dirty:
                check(self.root, self.base)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # --- helpers
    @property
    def orders_dir(self) -> Path:
        return self.root / "exchange" / "orders"

    def present(self) -> list[str]:
        return sorted(p.stem for p in self.orders_dir.glob("*.json"))

    def changed(self) -> None:
        self.dirty = True

    # --- the build and its invariant
    @rule()
    def build(self) -> None:
        check(self.root, self.base)
        self.dirty = False

    # --- orders
    @rule(
        order_id=st.sampled_from([*NEW_IDS, *(n.removesuffix(".json") for n in SAMPLE_ORDERS)]),
        phase=st.sampled_from(tuple(CAPS)),
        recipe=st.sampled_from(RECIPES),
        seed=st.integers(1, 10**6),
        data=st.data(),
    )
    def add_order(self, order_id: str, phase: str, recipe: str, seed: int, data: Any) -> None:
        path = self.orders_dir / f"{order_id}.json"
        if path.exists():
            return
        size = data.draw(st.integers(1, CAPS[phase]), label="batch_size")
        path.write_bytes(dump(order_data(order_id, phase, recipe, size, seed)))
        self.changed()

    @precondition(lambda self: bool(self.present()))
    @rule(
        data=st.data(),
        field=st.sampled_from(("notes", "seed", "batch_size")),
        value=st.integers(1, 120),
    )
    def edit_order(self, data: Any, field: str, value: int) -> None:
        order_id = data.draw(st.sampled_from(self.present()), label="order")
        path = self.orders_dir / f"{order_id}.json"
        order = json.loads(path.read_bytes())
        if field == "notes":
            order["notes"] = f"edited {value}"
        elif field == "seed":
            order["seed"] = order["seed"] + value
        else:  # above the phase's cap on purpose now and then: the order is then refused
            order["batch_size"] = value
        path.write_bytes(dump(order))
        self.changed()

    @precondition(lambda self: bool(self.present()))
    @rule(data=st.data())
    def delete_order(self, data: Any) -> None:
        order_id = data.draw(st.sampled_from(self.present()), label="order")
        path = self.orders_dir / f"{order_id}.json"
        self.deleted[order_id] = path.read_bytes()
        path.unlink()
        self.changed()

    @precondition(lambda self: bool(self.deleted))
    @rule(data=st.data())
    def re_add_order(self, data: Any) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.deleted)), label="order")
        path = self.orders_dir / f"{order_id}.json"
        if not path.exists():
            path.write_bytes(self.deleted.pop(order_id))
            self.changed()

    # --- recipes, checkpoints, reviews
    @rule(
        recipe=st.sampled_from(RECIPES),
        edit=st.sampled_from(("title", "base", "pass_score")),
        value=st.integers(1, 30),
    )
    def edit_recipe(self, recipe: str, edit: str, value: int) -> None:
        path = self.root / "exchange" / "recipes" / f"{recipe}.json"
        data = json.loads(path.read_bytes())
        if edit == "title":
            data["title"] = f"{data['title'].split(' #')[0]} #{value}"
        elif edit == "base":
            data["scoring"]["base"] = float(30 + value)
        else:  # a valid recipe keeps pass_score at or below promote_score
            data["pass_score"] = min(float(30 + value), data["promote_score"])
        path.write_bytes(dump(data))
        self.changed()

    @rule(phase=st.sampled_from(("expansion", "operational")))
    def withdraw_checkpoint(self, phase: str) -> None:
        path = self.root / "exchange" / "checkpoints" / f"{phase}.json"
        if path.exists():
            self.withdrawn[phase] = path.read_bytes()
            path.unlink()
            self.changed()

    @precondition(lambda self: bool(self.withdrawn))
    @rule(data=st.data())
    def restore_checkpoint(self, data: Any) -> None:
        phase = data.draw(st.sampled_from(sorted(self.withdrawn)), label="phase")
        path = self.root / "exchange" / "checkpoints" / f"{phase}.json"
        path.write_bytes(self.withdrawn.pop(phase))
        self.changed()

    @precondition(lambda self: bool(self.present()))
    @rule(data=st.data(), decision=st.sampled_from(("waive", "reroll", "reject")))
    def review_decide(self, data: Any, decision: str) -> None:
        """`toyfoundry review decide` on a quarantined Alfa, when the last build left one."""
        order_id = data.draw(st.sampled_from(self.present()), label="order")
        # drawn whatever the outputs hold: what a killed build left varies from run to run,
        # and hypothesis needs the same draws when it replays a history
        pick = data.draw(st.integers(0, 10**6), label="alfa")
        mint = self.root / ".toyfoundry" / "build" / order_id / "mint.json"
        try:
            alfas = json.loads(mint.read_bytes()).get("alfas", [])
        except (OSError, ValueError):
            return
        held = [a["alfa_id"] for a in alfas if a.get("outcome") == "quarantined"]
        if held:
            alfa = held[pick % len(held)]
            toyfoundry(self.root, "review", "decide", order_id, alfa, decision, "--by", "QA")
            self.changed()

    @rule()
    def remove_reviews(self) -> None:
        for path in (self.root / "exchange" / "reviews").glob("*.json"):
            path.unlink()
            self.changed()

    @rule(phase=st.sampled_from(("expansion", "operational")))
    def checkpoint_approve(self, phase: str) -> None:
        toyfoundry(self.root, "checkpoint", "approve", phase, "--by", "High Command")
        self.withdrawn.pop(phase, None)
        self.changed()

    # --- outputs deleted by hand
    @rule(what=st.sampled_from(("report", "outbox", "build", "quilt", "manifest")), data=st.data())
    def delete_output(self, what: str, data: Any) -> None:
        exchange, state = self.root / "exchange", self.root / ".toyfoundry"
        if what == "outbox":
            shutil.rmtree(exchange / "outbox", ignore_errors=True)
        elif what == "quilt":
            shutil.rmtree(state / "telemetry" / "quilt", ignore_errors=True)
        else:
            folder = {
                "report": exchange / "reports",
                "manifest": exchange / "outbox" / "toysoldiers",
                "build": state / "build",
            }[what]
            names = sorted(p.name for p in folder.glob("*")) if folder.exists() else []
            pick = data.draw(st.integers(0, 10**6), label=what)  # see `review_decide`
            if not names:
                return
            victim = folder / names[pick % len(names)]
            if victim.is_dir():
                shutil.rmtree(victim)
            else:
                victim.unlink()
        self.changed()

    # --- the README's manual commands
    @precondition(lambda self: bool(self.present()))
    @rule(
        data=st.data(),
        command=st.sampled_from(("mint", "drill", "parade", "purge", "promote", "all")),
    )
    def forge_by_hand(self, data: Any, command: str) -> None:
        order_id = data.draw(st.sampled_from(self.present()), label="order")
        if command == "mint":
            toyfoundry(self.root, "mint", order_id)
        else:
            toyfoundry(self.root, "ritual", command, order_id)
        self.changed()

    @rule()
    def loom_export(self) -> None:
        toyfoundry(self.root, "loom", "--export")
        self.changed()

    # --- the machine and the CI runner
    @rule(seconds=st.integers(1, 10**6))
    def touch_everything(self, seconds: int) -> None:
        stamp = time.time() + seconds
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                os.utime(path, (stamp, stamp))
        self.changed()

    @rule()
    def ci_restore(self) -> None:
        """A fresh checkout of the current inputs, with the cached `.toyfoundry/` restored."""
        fresh = Path(tempfile.mkdtemp(prefix="ci-", dir=self.base)) / "project"
        fresh.mkdir()
        write_inputs(fresh, inputs(self.root))
        if (self.root / ".toyfoundry").exists():
            shutil.copytree(self.root / ".toyfoundry", fresh / ".toyfoundry", symlinks=True)
        shutil.rmtree(self.root)
        self.root = fresh
        self.changed()

    @rule(
        command=st.sampled_from(("watch", "auto")),
        edit=st.booleans(),
        value=st.integers(1, 1000),
    )
    def watch_cycle(self, command: str, edit: bool, value: int) -> None:
        """`toyfoundry watch` or `doit auto` until its first build, then (maybe) an order
        edited while it watches and its rebuild, then Ctrl-C."""
        argv = (
            [sys.executable, "-m", "toyfoundry", "--root", str(self.root), "watch"]
            if command == "watch"
            else [sys.executable, "-m", "doit", "auto"]
        )
        first, later = (
            ("watch: start", "watch: orders/")
            if command == "watch"
            else (
                "doit auto: cycle 1",
                "doit auto: cycle 2",
            )
        )
        with Watching(argv, self.root) as watching:
            if not watching.wait_for(first) or not edit or not self.present():
                return
            order_id = self.present()[value % len(self.present())]
            path = self.orders_dir / f"{order_id}.json"
            before = path.read_bytes()
            order = json.loads(before)
            order["notes"] = f"edited while watched {value}"
            temp = path.parent / f".{path.name}.edit"
            temp.write_bytes(dump(order))
            os.replace(temp, path)
            self.changed()
            # the same bytes again (the same edit twice) are no change, and rebuild nothing
            assert path.read_bytes() == before or watching.wait_for(later), (
                f"{command}: no rebuild after {path.name} was edited while watched:\n"
                + watching.transcript()
            )
        self.changed()

    @rule(delay=st.floats(0.0, 1.5))
    def killed_build(self, delay: float) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "doit"],
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        self.changed()


IncrementalEqualsClean.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not SOAK,
)
TestIncrementalEqualsClean = pytest.mark.slow(IncrementalEqualsClean.TestCase)


# --------------------------------------------------------------------------- regressions
# Each failure the machine found, as the shortest history that showed it.


@pytest.fixture
def built(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    write_inputs(root, IncrementalEqualsClean._sample_inputs())
    assert doit(root).code == 0
    return root


def readme_ci_paths() -> list[str]:
    """The folders the README's CI recipe caches, read from its YAML block."""
    text = (REPO / "README.md").read_text()
    block = text.split("## CI with a cached `.toyfoundry/`", 1)[1].split("```yaml", 1)[1]
    block = block.split("```", 1)[0]
    lines = block.split("path: |", 1)[1].splitlines()[1:]
    paths = []
    for line in lines:
        if not line.startswith("      ") or ":" in line:
            break
        paths.append(line.strip())
    return paths


def checkout(source: Path, dest: Path, restored: list[str]) -> Path:
    """A fresh runner: the inputs as a checkout gives them, and the restored cache paths."""
    dest.mkdir()
    write_inputs(dest, inputs(source))
    for rel in restored:
        if (source / rel).exists():
            shutil.copytree(source / rel, dest / rel, symlinks=True)
    return dest


def test_the_readme_ci_recipe_followed_literally_reruns_nothing(
    built: Path, tmp_path: Path
) -> None:
    paths = readme_ci_paths()
    assert ".toyfoundry" in paths and "exchange/outbox" in paths
    runner = checkout(built, tmp_path / "runner", paths)
    result = doit(runner)
    assert result.code == 0 and executed(result.out) == [], result.out + result.err
    assert diff(deliverables(runner), clean_build(inputs(runner), tmp_path)) == []


def test_a_ci_restore_of_the_state_folder_alone_ends_equal_to_clean(
    built: Path, tmp_path: Path
) -> None:
    """Found by the machine: `build, ci_restore, build` left no outbox (it was outside
    the graph); now the rituals declare their manifests and restore them."""
    runner = checkout(built, tmp_path / "runner", [".toyfoundry"])
    check(runner, tmp_path)


def test_a_deleted_outbox_comes_back(built: Path, tmp_path: Path) -> None:
    shutil.rmtree(built / "exchange" / "outbox")
    check(built, tmp_path)
    assert sorted(p.stem for p in (built / "exchange/outbox/toysoldiers").glob("*.json")) == [
        n.removesuffix(".json") for n in SAMPLE_ORDERS[:3]
    ]


def test_a_killed_writers_temp_files_are_swept_by_the_next_build(built: Path) -> None:
    """A temp file in each area the foundry writes, and a lock note left by a killed holder."""
    leftovers = [
        built / ".toyfoundry" / "build" / "2025-10-12-005" / ".mint.json.999999.1.tmp",
        built / "exchange" / "reports" / ".summary.md.999999.2.tmp",
        built / "exchange" / "outbox" / "toysoldiers" / ".2025-10-20-011.json.999999.3.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half")
    (built / ".toyfoundry" / "lock").write_text("999999 doit (999999)\n")
    assert doit(built).code == 0
    assert temp_files(built) == []


def test_a_removed_orders_build_folder_goes(built: Path, tmp_path: Path) -> None:
    gone = SAMPLE_ORDERS[2].removesuffix(".json")
    (built / "exchange" / "orders" / f"{gone}.json").unlink()
    check(built, tmp_path)
    assert not (built / ".toyfoundry" / "build" / gone).exists()


@pytest.mark.parametrize("ritual", ["promote", "purge"])
def test_a_ritual_run_by_hand_is_redone_by_the_next_build(
    built: Path, tmp_path: Path, ritual: str
) -> None:
    """An expansion order runs Drill and Parade; run Promote (or Purge) on it by hand and
    it promotes, changing its artefact, its outbox manifest and the chain it hands on.
    doit trusted those files (the task's inputs had not changed), so the report and the
    recipe's later orders differed from a clean build; now the command drops the task's
    record first and the next build makes the graph's bytes again."""
    expansion = SAMPLE_ORDERS[1].removesuffix(".json")
    assert json.loads((built / "exchange/orders" / SAMPLE_ORDERS[1]).read_bytes())["phase"] == (
        "expansion"
    )
    assert toyfoundry(built, "ritual", ritual, expansion).returncode == 0
    check(built, tmp_path)


def test_the_loom_run_by_hand_is_redone_by_the_next_build(built: Path, tmp_path: Path) -> None:
    """Found by the machine: one ritual by hand on a pilot order (its stub artefact then
    lists that ritual only), then `toyfoundry loom --export`, which wrote the order's
    report from that artefact. The next build redid the rituals (their record was
    dropped) and they made the graph's bytes again, so the report task, whose inputs
    matched its record, kept the loom's report. Now the loom, too, drops the records of
    the tasks whose files it is about to write."""
    pilot = SAMPLE_ORDERS[0].removesuffix(".json")
    assert toyfoundry(built, "ritual", "drill", pilot).returncode == 0
    assert toyfoundry(built, "loom", "--export").returncode == 0
    check(built, tmp_path)


def test_an_exchange_with_no_orders_settles(tmp_path: Path) -> None:
    """Found by the soak: a first build with no order wrote no dashboard index (no day to
    keep), but the index is the dashboard task's target, so every later build ran the
    dashboard again."""
    root = tmp_path / "project"
    root.mkdir()
    write_inputs(root, IncrementalEqualsClean._sample_inputs())
    for order in (root / "exchange" / "orders").glob("*.json"):
        order.unlink()
    check(root, tmp_path)


KILLING_DODO = '''\
"""The project's dodo, with the build killed right after one task's action returns."""
import os
import signal

from toyfoundry.graph import tasks as _tasks
from toyfoundry.graph.dodo import *  # noqa: F403

_report = _tasks.report_action


def _report_then_die(root, order_id):
    result = _report(root, order_id)
    if order_id == os.environ.get("KILL_AFTER_REPORT"):
        os.kill(os.getpid(), signal.SIGKILL)
    return result


_tasks.report_action = _report_then_die
'''


def test_a_task_killed_after_its_action_runs_again(built: Path, tmp_path: Path) -> None:
    """Found by the soak: a build killed after an order's report was rewritten for a
    withdrawn checkpoint (blocked), before doit recorded the task. Once the checkpoint
    was back, the order's mint and rituals made their recorded bytes again, so the
    task's older record matched its inputs and doit kept the blocked report. Now a task
    loses its record before its action runs, and runs again after a kill."""
    operational = SAMPLE_ORDERS[2].removesuffix(".json")
    checkpoint = built / "exchange" / "checkpoints" / "operational.json"
    kept = checkpoint.read_bytes()
    checkpoint.unlink()
    dodo = built / "dodo.py"
    plain = dodo.read_bytes()
    dodo.write_text(KILLING_DODO)
    killed = doit(built, env={"KILL_AFTER_REPORT": operational})
    assert killed.code == -signal.SIGKILL, killed.out + killed.err
    assert "blocked" in (built / "exchange/reports" / f"{operational}.md").read_text()
    dodo.write_bytes(plain)
    checkpoint.write_bytes(kept)
    check(built, tmp_path)
