"""nightly as scheduled in docs/scheduling.md, `why` lineage, and the loom on the real forge's output."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import make_project
from tests.test_loom_quilt import from_ledgers
from tests.test_loom_support import REPO, cli_shim, sample
from toyfoundry.formats.models import QuiltRollup, Report
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import exports
from toyfoundry.telemetry.loom import run_loom

PLACEHOLDER = "/srv/toyfoundry"


def documented_commands() -> list[tuple[str, list[str] | str, str]]:
    """(label, command, working folder) for each cron line and systemd ExecStart in the docs."""
    text = (REPO / "docs" / "scheduling.md").read_text(encoding="utf-8")
    found: list[tuple[str, list[str] | str, str]] = []
    for block in re.findall(r"```cron\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                found.append(("cron", line.split(None, 5)[5], "/"))
    for block in re.findall(r"```ini\n(.*?)```", text, flags=re.S):
        start = re.search(r"^ExecStart=(.*)$", block, flags=re.M)
        folder = re.search(r"^WorkingDirectory=(.*)$", block, flags=re.M)
        if start and folder:
            found.append(("systemd", shlex.split(start.group(1)), folder.group(1)))
    return found


def run_documented(
    project: Path, command: list[str] | str, folder: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TOYFOUNDRY_ROOT"}
    cwd = folder.replace(PLACEHOLDER, str(project))
    if isinstance(command, str):
        args: list[str] | str = command.replace(PLACEHOLDER, str(project))
    else:
        args = [part.replace(PLACEHOLDER, str(project)) for part in command]
    return subprocess.run(
        args,
        shell=isinstance(args, str),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_scheduling_doc_lists_both_jobs_both_ways() -> None:
    lines = [
        (label, c if isinstance(c, str) else shlex.join(c)) for label, c, _ in documented_commands()
    ]
    assert sorted((label, "nightly" in line) for label, line in lines) == [
        ("cron", False),
        ("cron", True),
        ("systemd", False),
        ("systemd", True),
    ]
    watchers = [line for _, line in lines if "nightly" not in line]
    assert all(
        line.endswith("toyfoundry watch-exchange --target toyfoundry_ai_0 --once")
        for line in watchers
    )


def test_documented_nightly_lines_run(tmp_path: Path) -> None:
    layout = sample(tmp_path / "srv")
    cli_shim(layout.root / ".venv" / "bin")
    nightly = [(label, c, f) for label, c, f in documented_commands() if "nightly" in str(c)]
    for label, command, folder in nightly:
        for path in (layout.rollup, layout.dashboard):
            path.unlink(missing_ok=True)
        done = run_documented(layout.root, command, folder)
        assert done.returncode == 0, (label, done.stdout, done.stderr)
        assert "loom: 4 orders in the quilt" in done.stdout
        assert "lint-telemetry: 2 ledgers" in done.stderr
        assert layout.rollup.is_file() and layout.dashboard.is_file()
        assert exports.batches_csv(layout).is_file()
        assert len(list((layout.telemetry / "dashboards").glob("20*.html"))) == 1


def test_documented_watcher_lines_run(tmp_path: Path) -> None:
    layout = sample(tmp_path / "srv")
    cli_shim(layout.root / ".venv" / "bin")
    watchers = [(label, c, f) for label, c, f in documented_commands() if "watch" in str(c)]
    for label, command, folder in watchers:
        done = run_documented(layout.root, command, folder)
        assert done.returncode == 0, (label, done.stdout, done.stderr)


def test_nightly_fails_on_drift_but_still_builds(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    with layout.mint_ledger.open("ab") as handle:
        handle.write(b'{"kind": "teleport"}\n')
    result = run_cli("--root", layout.root, "nightly")
    assert result.code == 1
    assert "unknown record type 'teleport'" in result.out
    assert layout.dashboard.is_file()
    assert "unknown record type 'teleport'" in " ".join(
        QuiltRollup.model_validate_json(layout.rollup.read_bytes()).skipped
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_why_traces_an_export_row_to_its_order_and_ledger_lines(
    tmp_path: Path, run_cli: Any
) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    partition = exports.partition(layout, "alfas", "2025-10-27-014", "csv")
    with partition.open(newline="") as handle:
        row = list(csv.DictReader(handle))[2]
    alfa = row["alfa_id"]
    result = run_cli("--root", layout.root, "why", alfa)
    assert result.code == 0, result.err
    out = result.out
    order_file = layout.order_file(row["order_id"])
    assert f"order file: exchange/orders/{row['order_id']}.json (sha256 {_sha(order_file)})" in out
    ledger_refs = re.findall(r"(\.toyfoundry/telemetry/forge_\w+\.jsonl):(\d+)\s", out)
    assert ledger_refs, out
    for rel, number in ledger_refs:
        record = orjson.loads((layout.root / rel).read_bytes().splitlines()[int(number) - 1])
        assert record["order_id"] == row["order_id"]
        if "forge_mint" in rel:
            assert record["alfa_id"] == alfa
    csv_ref = re.search(r"(\S+/alfas/2025-10-27-014\.csv):(\d+)$", out, flags=re.M)
    assert csv_ref is not None
    line = (layout.root / csv_ref.group(1)).read_text().splitlines()[int(csv_ref.group(2)) - 1]
    assert line.split(",")[1] == alfa
    assert "stale:      nothing" in out
    as_json = orjson.loads(run_cli("--root", layout.root, "why", alfa, "--json").out)
    assert as_json["order_sha256"] == _sha(order_file)
    assert as_json["alfa"]["alfa_id"] == alfa and as_json["result"]["rank"] is not None


def test_why_says_what_is_stale(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    order = layout.order_file("2025-10-20-011")
    order.write_bytes(order.read_bytes().replace(b'"seed": 7', b'"seed": 8'))
    result = run_cli("--root", layout.root, "why", "2025-10-20-011")
    assert result.code == 0
    assert "STALE:" in result.out
    assert "exchange/orders/2025-10-20-011.json: changed since mint.json was made" in result.out
    assert "mint attempts (1 run):" in result.out
    assert re.search(r"forge_mint_alfa\.jsonl:\d+-\d+ .* 8 records \(minted 8\)", result.out)


def test_why_refuses_unknown_and_bad_ids(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    unknown = run_cli("--root", layout.root, "why", "2030-01-01-001")
    assert unknown.code == 1 and "nothing is recorded about it" in unknown.err
    bad = run_cli("--root", layout.root, "why", "../etc/passwd")
    assert bad.code == 1 and "not an order id" in bad.err
    # an Alfa id the order never had: one line and exit 1, not the order's records
    no_alfa = run_cli("--root", layout.root, "why", "2025-10-20-011.a999")
    assert no_alfa.code == 1 and no_alfa.out == ""
    assert no_alfa.err.strip() == (
        "2025-10-20-011.a999: nothing is recorded about it (not in its order's build or any"
        " ledger line); `toyfoundry why 2025-10-20-011` shows the order"
    )
    assert run_cli("--root", layout.root, "why", "2025-10-20-011.a000").code == 0


def test_loom_on_the_sample_exchange_built_by_the_forge(tmp_path: Path, run_cli: Any) -> None:
    """End to end on the shipped sample: the real forge's artefacts and ledgers, then the loom."""
    from toyfoundry.forge.mint import mint_order
    from toyfoundry.forge.rituals import run_rituals

    layout: Layout = make_project(tmp_path / "project")
    orders = sorted(p.stem for p in layout.orders_dir.glob("*.json"))
    for oid in orders:
        mint_order(layout, oid)
        run_rituals(layout, oid)
    result = run_cli("--root", layout.root, "loom", "--export")
    assert result.code == 0, result.err
    rollup = QuiltRollup.model_validate_json(layout.rollup.read_bytes())
    assert [b.order_id for b in rollup.batches] == orders and rollup.skipped == []
    truth = from_ledgers(layout)
    for b in rollup.batches:
        report = Report.model_validate_json(layout.report_json(b.order_id).read_bytes())
        rows = exports.partition(layout, "alfas", b.order_id, "jsonl").read_bytes().splitlines()
        assert (
            b.outcomes.minted == report.outcomes.minted == len(rows) == truth[b.order_id]["minted"]
        )
        assert b.outcomes.promoted == len(report.promoted) == truth[b.order_id]["promoted"]
    assert layout.dashboard.is_file() and layout.summary_md.is_file()
    assert run_cli("--root", layout.root, "lint-telemetry").code == 0
