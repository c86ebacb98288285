"""Every sweep file we ship passes `hpo validate` from the folder a user runs it in."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.cli import main

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_example_sweep_validates(path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # byo examples import their own package, so they run from their folder, as their README says
    monkeypatch.chdir(path.parent if path.parent.name == "byo" else ROOT)
    monkeypatch.syspath_prepend(str(path.parent))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert ": ok - " in capsys.readouterr().out


def test_examples_exist():
    names = {p.name for p in FILES}
    assert {"quickstart.yaml", "mnist1d_mlp.yaml", "mnist1d_cnn.yaml"} <= names
