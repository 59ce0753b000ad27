"""Validator plugins registered through the `toyfoundry.validators` entry point group."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import make_project
from toyfoundry.forge import fingerprint
from toyfoundry.forge.mint import mint_order
from toyfoundry.formats.models import MintArtefact, MintRecord

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "exchange"
PILOT = "2025-10-12-005"


def install_plugin(site: Path, module: str, body: str, entry: str = "hook") -> None:
    """An installed distribution as importlib.metadata sees it: a dist-info folder and a module."""
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[toyfoundry.validators]\n{module}-check = {module}:{entry}\n"
    )
    (site / f"{module}.py").write_text(textwrap.dedent(body))


def test_a_plugin_registered_through_the_entry_point_runs_and_can_reject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = make_project(tmp_path / "project")
    clean = mint_order(layout, PILOT)
    assert all(a.outcome == "passed" for a in clean.alfas)
    before = fingerprint()
    install_plugin(
        tmp_path / "site",
        "tf_no_brass",
        """
        def hook(params, recipe):
            if params.get("chassis") == "brass":
                yield "brass chassis is banned this quarter"
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert fingerprint() != before
    artefact = mint_order(layout, PILOT)
    brass = [a for a in artefact.alfas if a.params["chassis"] == "brass"]
    assert brass
    for alfa in artefact.alfas:
        if alfa.params["chassis"] == "brass":
            assert alfa.outcome == "quarantined"
            assert alfa.reasons == ["tf_no_brass-check: brass chassis is banned this quarter"]
        else:
            assert alfa.outcome == "passed"
    records = [
        MintRecord.model_validate_json(x) for x in layout.mint_ledger.read_bytes().splitlines()
    ]
    assert sum(1 for r in records[-12:] if r.outcome == "quarantined") == len(brass)


def test_a_plugin_that_raises_fails_the_alfa_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = make_project(tmp_path / "project")
    install_plugin(
        tmp_path / "site",
        "tf_raises",
        "def hook(params, recipe):\n    raise RuntimeError('boom')\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    artefact = mint_order(layout, PILOT)
    assert {tuple(a.reasons) for a in artefact.alfas} == {
        ("tf_raises-check: raised RuntimeError: boom",)
    }


def test_a_plugin_that_cannot_load_stops_the_mint(tmp_path: Path) -> None:
    """Through the real command line in a fresh process, as an installed plugin would be seen."""
    layout = make_project(tmp_path / "project")
    site = tmp_path / "site"
    install_plugin(site, "tf_gone", "x = 1\n", entry="missing_hook")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "toyfoundry", "--root", str(layout.root), "mint", PILOT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "validator plugin 'tf_gone-check'" in proc.stderr and "cannot be loaded" in proc.stderr
    assert not layout.mint_artefact(PILOT).exists()
    install_plugin(
        tmp_path / "site2",
        "tf_odd_legs",
        "def hook(params, recipe):\n    return ['odd'] if params['legs'] % 2 else []\n",
    )
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site2"), str(REPO)])
    proc = subprocess.run(
        [sys.executable, "-m", "toyfoundry", "--root", str(layout.root), "mint", PILOT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    artefact = MintArtefact.model_validate_json(layout.mint_artefact(PILOT).read_bytes())
    odd = [a for a in artefact.alfas if int(a.params["legs"]) % 2]
    assert odd and all(a.reasons == ["tf_odd_legs-check: odd"] for a in odd)
    assert "quarantined: tf_odd_legs-check: odd" in proc.stdout


def test_stage_fingerprints_follow_their_own_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "toyfoundry", src / "toyfoundry", ignore=shutil.ignore_patterns("__pycache__")
    )
    code = "from toyfoundry.forge import fingerprint as f; print(f('mint'), f('rituals'), f())"

    def prints() -> list[str]:
        env = {**os.environ, "PYTHONPATH": str(src)}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return proc.stdout.split()

    before = prints()
    rituals = src / "toyfoundry" / "forge" / "rituals.py"
    rituals.write_text(rituals.read_text() + "\n# tweak\n")
    after = prints()
    assert after[0] == before[0] and after[1] != before[1] and after[2] != before[2]
    mint = src / "toyfoundry" / "forge" / "mint.py"
    mint.write_text(mint.read_text() + "\n# tweak\n")
    assert prints()[0] != after[0]
