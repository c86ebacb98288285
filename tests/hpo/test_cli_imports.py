"""The light commands stay light: ``import hpo``, ``hpo --help`` and ``hpo validate`` load none of torch, Ray,
Streamlit or MLflow; ``hpo best`` and ``hpo diagnose`` (a stored run, or ``--history``) read the store but load
neither Ray nor torch nor Streamlit. Each runs in a fresh interpreter and reads ``sys.modules`` after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "ray", "streamlit", "mlflow")
RUNTIME = ("torch", "ray", "streamlit")  # what reading a store must not load (reading it needs MLflow's schema)


def _heavy_modules_after(code: str, cwd: Path, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "code",
    [
        "import hpo",
        "import hpo.cli",
        "import hpo.config, hpo.space, hpo.errors",
        "import hpo.loading, hpo.rules, hpo.results, hpo.cluster, hpo.report, hpo.diagnose",
        # --help exits through argparse; the modules it loaded are what counts
        "from hpo.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
        "from hpo.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0",
    ],
    ids=["import hpo", "import hpo.cli", "import config+space", "import the Ray-free modules", "hpo --help",
         "hpo run --help"],
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


# -- commands that read a store ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """``(tracking_uri, parent_run_id, trial_run_id)`` of a sweep ``light`` with two trials, written by the
    same ``SweepLogger`` calls ``hpo run`` makes (in this process: the commands under test run in others)."""
    from tracker import schema
    from tracker.mlflow_log import SweepLogger, open_client

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    tags = {schema.SWEEP: "light", schema.METHOD: "random", schema.SAMPLER: "random", schema.METRIC: "val_loss",
            schema.GOAL: "minimize", schema.SEED: "0", schema.TASK: "digits"}
    logger = SweepLogger.start(open_client(uri), experiment="light", run_name="light",
                               tags={**tags, schema.SWEEP_STATE: "running", schema.TRIALS_TOTAL: "2"},
                               params={"name": "light"}, artifact_location=None)
    trial_ids = []
    for number, lr in enumerate((0.01, 0.1)):
        run_id = logger.start_trial(f"light-{number:03d}", {"lr": lr, "epochs": 4},
                                    {**tags, schema.TRIAL_ID: f"t{number}", schema.TRIAL_NUMBER: str(number)})
        for epoch in range(1, 5):
            loss = (1.0 + 5 * lr) / epoch
            logger.log_epoch(run_id, {"train_loss": loss, "val_loss": loss * 1.1, "lr": lr}, step=epoch,
                             timestamp_ms=1_700_000_000_000 + epoch)
        logger.finish_trial(run_id, "FINISHED", {}, {schema.EPOCHS_RUN: 4.0,
                                                     schema.BEST_PREFIX + "val_loss": 0.275 * (1 + 5 * lr)})
        trial_ids.append(run_id)
    logger.finish_sweep("FINISHED", {schema.SWEEP_STATE: "finished", schema.BEST_RUN_ID: trial_ids[0]},
                        {schema.BEST_PREFIX + "val_loss": 0.2887})
    return uri, logger.parent_run_id, trial_ids[0]


def _command_loads(argv: list[str], cwd: Path) -> list[str]:
    """Run ``hpo ARGV`` in a fresh interpreter (it must exit 0); the runtime modules it loaded."""
    code = f"from hpo.cli import main\nassert main({argv!r}) == 0"
    return _heavy_modules_after(code, cwd, RUNTIME)


def test_best_reads_the_store_without_ray_or_torch(tiny_store: tuple[str, str, str], tmp_path: Path) -> None:
    uri, _, _ = tiny_store
    assert _command_loads(["best", "light", "--tracking-uri", uri, "--json"], tmp_path) == []


@pytest.mark.parametrize("which", ["trial", "sweep"])
def test_stored_diagnose_runs_without_ray_or_torch(
    which: str, tiny_store: tuple[str, str, str], tmp_path: Path
) -> None:
    uri, parent, trial = tiny_store
    target = trial if which == "trial" else parent
    assert _command_loads(["diagnose", target, "--tracking-uri", uri], tmp_path) == []


def test_diagnose_history_runs_without_ray_or_torch(tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"train_loss": [1.0, 0.6, 0.4, 0.3, 0.25], "val_loss": [1.1, 0.8, 0.7, 0.75, 0.9]}),
                       encoding="utf-8")
    code = f"from hpo.cli import main\nassert main(['diagnose', '--history', {str(history)!r}]) == 0"
    assert _heavy_modules_after(code, tmp_path) == []  # MLflow neither: nothing is read from a store
