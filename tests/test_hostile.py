"""The hostile corpus: every file in tests/hostile/ beside good orders, through validate and doit.

Each hostile file must be reported by name with its one-line error, by `toyfoundry
validate` and by the build (`report:<order>` for order files, `validate` for the
rest), while the good orders build byte for byte as they do alone, nothing is
written outside the foundry's own areas, and doit never hashes a FIFO or follows a
link. The manifest (tests/hostile/manifest.json) says where each file goes and what
it must produce; what cannot be committed (links, FIFOs, huge, growing or oddly
named files) is made here by a generator of the same name.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, doit, make_project
from toyfoundry.store.layout import Layout

HOSTILE = Path(__file__).parent / "hostile"
MANIFEST: dict[str, Any] = json.loads((HOSTILE / "manifest.json").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, Any]] = MANIFEST["entries"]
SAMPLE_ORDERS = ["2025-10-12-005", "2025-10-20-011", "2025-10-27-014", "2025-10-28-002"]
GOOD_STATUSES = {"built", "dry-run", "awaiting-review"}
#: Where the foundry may write: its state and the exchange areas it owns.
OWNED = (".toyfoundry/", "exchange/reports/", "exchange/outbox/")
#: The interpreter's bytecode cache for the project's dodo.py, written by Python when doit
#: imports it: not the foundry's doing, and .gitignored.
PYCACHE = "__pycache__/"

VALID_ORDER: dict[str, Any] = {
    "schema_version": 1,
    "phase": "pilot",
    "recipe": "sprocket-scout",
    "batch_size": 12,
    "seed": 5,
    "dry_run": True,
    "issued_by": "Hostile Command",
}


def order_bytes(order_id: str) -> bytes:
    return json.dumps({**VALID_ORDER, "order_id": order_id}).encode()


# --------------------------------------------------------------------------- generators


@dataclass
class Corpus:
    """The hostile files as placed in one exchange, and the writer that keeps one growing."""

    layout: Layout
    outside: Path
    placed: dict[str, Path] = field(default_factory=dict)
    growing: list[Path] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


Generator = Callable[[Corpus, Path], Path]


def _symlink_outside(c: Corpus, target: Path) -> Path:
    secret = c.outside / "secret-order.json"
    secret.write_bytes(order_bytes(target.stem))
    target.symlink_to(secret)
    return target


def _symlink_folder(c: Corpus, target: Path) -> Path:
    target.symlink_to(c.outside, target_is_directory=True)
    return target


def _symlink_dangling(c: Corpus, target: Path) -> Path:
    target.symlink_to(c.outside / "no-such-file.json")
    return target


def _symlink_device(c: Corpus, target: Path) -> Path:
    target.symlink_to("/dev/zero")
    return target


def _symlink_recipe(c: Corpus, target: Path) -> Path:
    target.symlink_to("bolt-bunny.json")  # a good recipe in the same folder
    return target


def _fifo(c: Corpus, target: Path) -> Path:
    os.mkfifo(target)
    return target


def _hardlink_outside(c: Corpus, target: Path) -> Path:
    other = c.outside / "hardlinked-order.json"
    other.write_bytes(order_bytes(target.stem))
    os.link(other, target)
    return target


def _directory(c: Corpus, target: Path) -> Path:
    target.mkdir()
    (target / "inside.json").write_bytes(order_bytes(target.stem))
    return target


def _oversized(c: Corpus, target: Path) -> Path:
    with target.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MiB without using the disk
    return target


def _deep_nesting(c: Corpus, target: Path) -> Path:
    target.write_bytes(b"[" * 10_000 + b"]" * 10_000)
    return target


def _huge_string(c: Corpus, target: Path) -> Path:
    doc = {**VALID_ORDER, "order_id": target.stem, "notes": "x" * 900_000}
    target.write_bytes(json.dumps(doc).encode())
    return target


def _huge_array(c: Corpus, target: Path) -> Path:
    doc = {**VALID_ORDER, "order_id": target.stem, "rituals": ["drill"] * 100_000}
    target.write_bytes(json.dumps(doc).encode())
    return target


def _huge_object(c: Corpus, target: Path) -> Path:
    doc = {**VALID_ORDER, "order_id": target.stem, **{f"k{i}": i for i in range(60_000)}}
    target.write_bytes(json.dumps(doc).encode())
    return target


def _being_written(c: Corpus, target: Path) -> Path:
    """A producer appending to the file under its final name for the whole run, never finishing."""
    head = json.dumps({**VALID_ORDER, "order_id": target.stem, "notes": ""})[:-2].encode()
    target.write_bytes(head)

    def write() -> None:
        with target.open("ab", buffering=0) as handle:
            written = len(head)
            while not c.stop.wait(0.005) and written < 512 * 1024:
                written += handle.write(b"still writing " * 8)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    c.threads.append(thread)
    c.growing.append(target)
    return target


def _in_progress(c: Corpus, target: Path) -> Path:
    target.write_bytes(order_bytes("2025-12-04-014")[:40])
    return target


def _named(raw: bytes, order_id: str) -> Generator:
    """A file with an odd name (`raw`, bytes) holding a valid order whose id cannot match it."""

    def make(c: Corpus, target: Path) -> Path:
        path = Path(os.fsdecode(os.fsencode(target.parent) + b"/" + raw))
        path.write_bytes(order_bytes(order_id))
        return path

    return make


GENERATORS: dict[str, Generator] = {
    "symlink_outside": _symlink_outside,
    "symlink_folder": _symlink_folder,
    "symlink_dangling": _symlink_dangling,
    "symlink_device": _symlink_device,
    "symlink_recipe": _symlink_recipe,
    "fifo": _fifo,
    "hardlink_outside": _hardlink_outside,
    "directory": _directory,
    "oversized": _oversized,
    "deep_nesting": _deep_nesting,
    "huge_string": _huge_string,
    "huge_array": _huge_array,
    "huge_object": _huge_object,
    "being_written": _being_written,
    "in_progress": _in_progress,
    "name_newline": _named(b"2025-12-04-015\n.json", "2025-12-04-015"),
    "name_invalid_utf8": _named(b"\xff\xfe.json", "2025-12-04-016"),
    "name_escape": _named(b"\x1b[31mred.json", "2025-12-04-017"),
    "name_long": _named(b"o" * 250 + b".json", "2025-12-04-018"),
}


@contextmanager
def hostile_exchange(layout: Layout, outside: Path) -> Iterator[Corpus]:
    """Place every manifest entry in `layout`'s exchange; stop the growing file's writer after."""
    outside.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(layout, outside)
    try:
        for entry in ENTRIES:
            target = layout.exchange / entry["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if "source" in entry:
                shutil.copyfile(HOSTILE / entry["source"], target)
            else:
                target = GENERATORS[entry["generator"]](corpus, target)
            corpus.placed[entry["file"]] = target
        yield corpus
    finally:
        corpus.stop.set()
        for thread in corpus.threads:
            thread.join(timeout=10)


# --------------------------------------------------------------------------- observing


def snapshot(root: Path, skip: list[Path]) -> dict[str, tuple[object, ...]]:
    """Every entry under `root`, never following links: what it is and, for files, its identity.

    Folder mtimes are left out: creating `exchange/reports/` touches `exchange/`.
    """
    skipped = {os.fsencode(p) for p in skip}
    out: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if path in skipped:
                continue
            st = os.lstat(path)
            rel = os.fsdecode(os.path.relpath(path, os.fsencode(root)))
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            else:
                out[rel] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def changed_outside_owned(
    before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]], project: str
) -> list[str]:
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    allowed = tuple(f"{project}/{area}" for area in (*OWNED, PYCACHE))
    return sorted(k for k in changed if not k.startswith(allowed) and k + "/" not in allowed)


def lines_for(output: str, entry: dict[str, Any], wording: str) -> list[str]:
    prefix = f"exchange/{entry['file']}: "
    return [line for line in output.splitlines() if line.startswith(prefix) and wording in line]


def mentions(output: str, entry: dict[str, Any]) -> bool:
    return f"exchange/{entry['file']}" in output


def validate_cli(root: Path) -> subprocess.CompletedProcess[str]:
    """`toyfoundry validate` as a hook runs it, with a strict UTF-8 stdout (as in CI)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "toyfoundry", "--root", str(root), "validate"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        errors="backslashreplace",
    )


def order_outputs(layout: Layout, order_id: str) -> dict[str, bytes]:
    paths = [
        *sorted(layout.order_build(order_id).iterdir()),
        layout.report_json(order_id),
        layout.report_md(order_id),
    ]
    if layout.outbox_file(order_id).exists():
        paths.append(layout.outbox_file(order_id))
    return {str(p.relative_to(layout.root)): p.read_bytes() for p in paths}


def recorded_inputs(db: Path) -> tuple[list[str], list[str]]:
    """(exchange files doit hashed, exchange file deps it recorded), from the dependency DB."""
    conn = sqlite3.connect(db)
    try:
        hashed = [r[0] for r in conn.execute("select path from hashes")]
        recorded: list[str] = []
        for (data,) in conn.execute("select task_data from doit"):
            recorded += [k for k in json.loads(data) if k.startswith("exchange/")]
    finally:
        conn.close()
    return [p for p in hashed if p.startswith("exchange/")], recorded


def graph_file_deps(layout: Layout) -> list[str]:
    """Every file dep the graph declares, loaded in a fresh process as doit would load it."""
    script = (
        "import json\n"
        "from toyfoundry.graph import dodo\n"
        "deps = []\n"
        "for name in dir(dodo):\n"
        "    if name.startswith('task_'):\n"
        "        made = getattr(dodo, name)()\n"
        "        for task in [made] if isinstance(made, dict) else made:\n"
        "            deps += task.get('file_dep', [])\n"
        "print(json.dumps(deps))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=layout.root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        errors="surrogateescape",
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


# --------------------------------------------------------------------------- tests


def test_manifest_covers_the_corpus() -> None:
    hostile = [e for e in ENTRIES if e["expected"] is not None]
    assert len(hostile) >= 50
    files = [e["file"] for e in ENTRIES]
    assert len(files) == len(set(files)), "two entries go to the same place"
    sources = {e["source"] for e in ENTRIES if "source" in e}
    committed = {str(p.relative_to(HOSTILE)) for p in HOSTILE.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert sources == committed, "every committed hostile file is in the manifest, and only those"
    assert {e["generator"] for e in ENTRIES if "generator" in e} == set(GENERATORS)
    for entry in ENTRIES:
        assert entry["why"], entry
        assert entry["file"].split("/")[0] in ("orders", "recipes", "checkpoints", "reviews")


@pytest.mark.slow
def test_hostile_files_beside_good_orders(tmp_path: Path) -> None:
    reference = make_project(tmp_path / "reference")
    result = doit(reference.root)
    assert result.code == 0, result.out + result.err

    layout = make_project(tmp_path / "project")
    with hostile_exchange(layout, tmp_path / "outside") as corpus:
        before = snapshot(tmp_path, corpus.growing)
        checked = validate_cli(layout.root)
        built = doit(layout.root, timeout=240)
        after = snapshot(tmp_path, corpus.growing)
        corpus.stop.set()
        # the graph as doit loads it: file deps are regular files only
        deps = graph_file_deps(layout)

    validate_out = checked.stdout + checked.stderr
    build_out = built.out + built.err
    for name, out in (("validate", validate_out), ("doit", build_out)):
        assert "Traceback" not in out, f"{name} printed a traceback:\n{out[-3000:]}"
        assert "unexpected error" not in out, out[-3000:]
    assert checked.returncode == 1, validate_out[-3000:]
    assert built.code != 0, build_out[-3000:]
    assert all(line.startswith("exchange/") for line in checked.stdout.splitlines())

    missing = []
    for entry in ENTRIES:
        if entry["expected"] is None:
            assert not mentions(validate_out, entry), entry
            assert not mentions(build_out, entry), entry
            continue
        if not lines_for(validate_out, entry, entry["expected"]):
            missing.append(f"validate: {entry['file']}: {entry['expected']}")
        wordings = entry.get("build", entry["expected"])
        if isinstance(wordings, str):
            wordings = [wordings]
        if not any(lines_for(build_out, entry, wording) for wording in wordings):
            missing.append(f"doit: {entry['file']}: {' or '.join(wordings)}")
    assert not missing, "\n".join(missing) + "\n--- validate:\n" + validate_out[-4000:]

    # the good orders build, byte for byte as they do without the hostile files
    for order_id in SAMPLE_ORDERS:
        assert order_outputs(layout, order_id) == order_outputs(reference, order_id), order_id
    for order_id in [*SAMPLE_ORDERS, "2025-12-02-001"]:
        report = json.loads(layout.report_json(order_id).read_bytes())
        assert report["status"] in GOOD_STATUSES, (order_id, report["status"])
    assert layout.rollup.is_file() and layout.dashboard.is_file()

    assert changed_outside_owned(before, after, "project") == []

    odd = [
        str(p.relative_to(layout.root))
        for p in corpus.placed.values()
        if not stat.S_ISREG(os.lstat(p).st_mode)
    ]
    hashed, recorded = recorded_inputs(layout.dep_db)
    assert not set(odd) & (set(hashed) | set(recorded) | set(deps)), "doit touched a link or FIFO"
    for dep in deps:
        if dep.startswith("exchange/"):
            assert stat.S_ISREG(os.lstat(layout.root / dep).st_mode), dep


@pytest.mark.parametrize(
    "entry",
    [e for e in ENTRIES if "source" in e and e["expected"] is not None],
    ids=lambda e: e["source"],
)
def test_each_committed_file_alone(tmp_path: Path, run_cli: Any, entry: dict[str, Any]) -> None:
    """One file at a time, in-process: its line, exit 1, and nothing written anywhere."""
    layout = make_project(tmp_path / "project")
    for other in ENTRIES:  # the support files a hostile review or order refers to
        if other.get("role") == "good":
            shutil.copyfile(HOSTILE / other["source"], layout.exchange / other["file"])
    if entry["source"] == "orders/invalid-recipe.json":
        shutil.copyfile(
            HOSTILE / "recipes/broken-json.json", layout.recipes_dir / "broken-json.json"
        )
    if entry["source"] == "orders/linked-recipe.json":
        (layout.recipes_dir / "linked-recipe.json").symlink_to("bolt-bunny.json")
    target = layout.exchange / entry["file"]
    shutil.copyfile(HOSTILE / entry["source"], target)
    before = snapshot(tmp_path, [])
    result = run_cli("--root", layout.root, "validate", target)
    assert result.code == 1
    assert lines_for(result.out, entry, entry["expected"]), result.out
    assert snapshot(tmp_path, []) == before
