"""One piece of advice: every next step names the command that does the whole job, and works."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.conftest import REPO, Result, make_project
from tests.test_review_scenario import run as run_argv
from toyfoundry.store.layout import Layout

EXPANSION = "2025-10-20-011"
ADVICE = re.compile(r"run `(toyfoundry [^`{]*)`")
#: commands that are advice of their own kind: they show something, they do not build
SHOWING = ("toyfoundry lint-telemetry",)


def run(root: Path, line: str) -> Result:
    return run_argv(root, shlex.split(line))


def commands(text: str) -> list[str]:
    return re.findall(r"`(toyfoundry [^`]*)`", text)


def test_every_run_advice_in_the_package_names_the_whole_build() -> None:
    found = []
    for path in sorted((REPO / "toyfoundry").rglob("*.py")):
        found += [(path.name, m) for m in ADVICE.findall(path.read_text(encoding="utf-8"))]
    assert found
    assert all(m == "toyfoundry build" or m.startswith(SHOWING) for _, m in found), found


def test_following_the_reports_advice_clears_an_order(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "project")
    assert run(layout.root, "toyfoundry build").code == 0
    report = json.loads(layout.report_json(EXPANSION).read_text())
    assert report["status"] == "awaiting-review"
    (step,) = [s for s in report["next_steps"] if "review" in s]
    lines = commands(step)
    assert lines[-1] == "toyfoundry build"
    for line in lines:
        line = line.replace("{waive|reroll|reject}", "waive").replace("NAME", "QA")
        result = run(layout.root, line)
        assert result.code == 0, line + result.out + result.err
        for advised in ADVICE.findall(result.out):
            assert advised == "toyfoundry build"
    report = json.loads(layout.report_json(EXPANSION).read_text())
    assert report["status"] == "built" and report["awaiting_review"] == []
    assert not any("review" in s for s in report["next_steps"])


def test_a_step_run_too_early_advises_the_build_that_makes_it_work(tmp_path: Path) -> None:
    layout: Layout = make_project(tmp_path / "project")
    result = run(layout.root, f"toyfoundry ritual drill {EXPANSION}")
    assert result.code == 1
    (advised,) = ADVICE.findall(result.err)
    assert run(layout.root, advised).code == 0
    assert layout.rituals_artefact(EXPANSION).exists()
    assert run(layout.root, f"toyfoundry ritual drill {EXPANSION}").code == 0
