"""Results out: bench/results/<date>.json, and the table in BENCHMARKS.md between its markers.

A run replaces the rows of the sizes it measured and keeps the day's other sizes, so
`--n 100` and a later `--n 1000` make one table. Only the text between the markers is
generated; the prose around it is written by people.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

START = "<!-- bench:table:start -->"
END = "<!-- bench:table:end -->"

SKELETON = f"""# Benchmarks

Run `make bench` (or `python -m bench`); see bench/__main__.py for the options.

{START}
{END}
"""


def write_json(doc: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{doc['date']}.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        sizes = {r["n"] for r in doc["results"]}
        kept = [r for r in old.get("results", []) if r["n"] not in sizes]
        doc = {**doc, "results": kept + doc["results"]}
    doc["results"].sort(key=lambda r: r["n"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit in ("Alfas/s", "lines/s", "tasks") or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if unit != "%" else f"{value:.1f}"


def table(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    machine = f"{m['cpu']}, {m['cores']} cores, Python {m['python']}"
    rows = [
        f"Measured {doc['date']} on {machine} ({m['platform']}).",
        "",
        "| date | machine | N | figure | value | reference | reference value | ratio | target | met |",
        "|---|---|---:|---|---:|---|---:|---:|---|:-:|",
    ]
    for r in doc["results"]:
        unit = r["unit"]
        value = fmt(r["value"], unit) + (f" {unit}" if r["value"] is not None and unit else "")
        ref = fmt(r["reference_value"], unit) if r["reference_value"] is not None else ""
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        note = f" ({r['note']})" if r["value"] is None and r["note"] else ""
        rows.append(
            f"| {doc['date']} | {m['cores']}-core {m['cpu']} | {r['n']:,} | {r['figure']}{note} "
            f"| {value} | {r['reference']} | {ref} | {ratio} | {r['target'] or ''} | {met} |"
        )
    notes = [f"- N={r['n']:,} {r['figure']}: {r['note']}" for r in doc["results"] if r["note"]]
    if notes:
        rows += ["", "<details><summary>notes per figure</summary>", "", *notes, "", "</details>"]
    return "\n".join(rows)


def write_table(results: Path, md: Path) -> None:
    doc = json.loads(results.read_text(encoding="utf-8"))
    text = md.read_text(encoding="utf-8") if md.exists() else SKELETON
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    md.write_text(f"{head}{START}\n{table(doc)}\n{END}{tail}", encoding="utf-8")
