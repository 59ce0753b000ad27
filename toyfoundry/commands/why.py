"""`toyfoundry why ID`: where an order or an Alfa came from and where it went."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter

import orjson

from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.lineage import LedgerLine, Lineage, trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="an order id (2025-10-27-014) or an Alfa id")
    parser.add_argument("--json", action="store_true", help="print the lineage as JSON")


def _params(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def spans(hits: list[LedgerLine]) -> list[str]:
    """An order's records of one run, consecutive lines folded: `file:12-107  TIME  96 records (...)`."""
    groups: list[list[tuple[str, int, LedgerLine]]] = []
    for hit in hits:
        path, _, number = hit.where.rpartition(":")
        last = groups[-1][-1] if groups else None
        if last is not None and last[0] == path and last[1] + 1 == int(number):
            groups[-1].append((path, int(number), hit))
        else:
            groups.append([(path, int(number), hit)])
    out = []
    for group in groups:
        path, first, hit = group[0]
        end = group[-1][1]
        where = f"{path}:{first}" if end == first else f"{path}:{first}-{end}"
        kinds = Counter(h.what.split(" ", 1)[0] for _, _, h in group)
        what = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        out.append(
            f"{where}  {hit.time}  {len(group)} record{'s' if len(group) > 1 else ''} ({what})"
        )
    return out


def render(lineage: Lineage) -> list[str]:
    x = lineage
    lines = [f"{'Alfa' if x.is_alfa else 'order'} {x.ident}"]
    sha = f"sha256 {x.order_sha256}" if x.order_sha256 else "MISSING"
    lines.append(f"  order file: {x.order_file} ({sha})")
    if x.watcher:
        lines.append(f"  watcher:    {x.watcher}")
    if x.build:
        lines.append(
            f"  build:      {', '.join(x.build)}" + (f" (status {x.status})" if x.status else "")
        )
    if x.alfa:
        a = x.alfa
        lines.append(
            f"  minted:     slot {a['slot']}, share {a['share']}, validator {a['outcome']},"
            f" parent {a.get('parent_id') or '-'}, params {_params(a['params'])}"
        )
    if x.result:
        shown = ", ".join(f"{k} {v}" for k, v in x.result.items() if v not in (None, [], False, ""))
        lines.append(f"  rituals:    {shown or 'no verdicts yet'}")
    runs = len(x.attempts)
    lines.append(f"  mint attempts ({runs} run{'s' if runs != 1 else ''}):")
    for run_id, hits in x.attempts.items():
        lines.append(f"    run {run_id}:")
        if x.is_alfa:
            lines += [f"      {h.where}  {h.time}  {h.what}" for h in hits]
        else:
            lines += [f"      {span}" for span in spans(hits)]
    lines.append(f"  ritual records ({len(x.rituals)}):")
    lines += [f"    {h.where}  {h.time}  {h.what} (run {h.run_id})" for h in x.rituals]
    lines.append(f"  exports ({len(x.exports)}):")
    lines += [f"    {where}" for where in x.exports]
    if x.reports:
        lines.append(f"  reports:    {', '.join(x.reports)}")
    if x.stale:
        lines.append("  STALE:")
        lines += [f"    {s}" for s in x.stale]
    else:
        lines.append("  stale:      nothing (build inputs match their recorded digests)")
    for note in x.notes:
        lines.append(f"  note: {note}")
    return lines


def run(args: argparse.Namespace, layout: Layout) -> int:
    lineage = trace(layout, args.id)
    if args.json:
        sys.stdout.write(
            orjson.dumps(dataclasses.asdict(lineage), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        print("\n".join(render(lineage)))
    return 0
