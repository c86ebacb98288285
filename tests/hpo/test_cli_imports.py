"""``import hpo``, ``import hpo.cli`` and ``hpo --help`` stay light: no torch, Ray, Streamlit or MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "ray", "streamlit", "mlflow")


def _heavy_modules_after(code: str, cwd: Path) -> list[str]:
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "code",
    [
        "import hpo",
        "import hpo.cli",
        "import hpo.config, hpo.space, hpo.errors",
        # --help exits through argparse; the modules it loaded are what counts
        "from hpo.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
        "from hpo.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
    ],
    ids=["import hpo", "import hpo.cli", "import config+space", "hpo --help", "hpo run --help"],
)
def test_stays_light(code: str, tmp_path: Path) -> None:
    assert _heavy_modules_after(code, tmp_path) == []


def test_validate_stays_light(tmp_path: Path) -> None:
    """Checking a sweep file needs the trainer's catalog, not torch."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: v\ntrainer: {task: digits}\nparameters:\n  lr: {distribution: log_uniform, "
                     "min: 1.0e-4, max: 0.1}\n", encoding="utf-8")
    code = f"from hpo.cli import main\nassert main(['validate', {str(sweep)!r}]) == 0"
    assert _heavy_modules_after(code, tmp_path) == []


def test_console_script_help(run_hpo, tmp_path: Path) -> None:
    done = run_hpo(["--help"], cwd=tmp_path)
    assert done.returncode == 0
    for command in ("run", "validate", "best"):
        assert command in done.stdout
    assert list(tmp_path.iterdir()) == []
