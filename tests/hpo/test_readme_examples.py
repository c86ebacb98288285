"""The sweep files the README shows are valid sweep files: a user copying one gets no input error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hpo.loading import load_sweep

README = Path(__file__).resolve().parents[2] / "README.md"
# whole sweep files (a name and a trainer), not the fragments that show one field
SWEEPS = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
          if re.search(r"^name:", b, re.M) and re.search(r"^trainer:", b, re.M)]


def test_the_readme_shows_a_sweep_file() -> None:
    assert SWEEPS


@pytest.mark.parametrize("block", SWEEPS, ids=lambda b: str(yaml.safe_load(b)["name"]))
def test_each_readme_sweep_validates(block: str, isolated_cwd: Path) -> None:
    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text(block, encoding="utf-8")
    config, text = load_sweep(sweep)
    assert config.name == yaml.safe_load(block)["name"]
    assert config.parameters.keys() >= {"optimizer", "lr", "momentum"}
