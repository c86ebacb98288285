"""The test split after the search: what the output says, and the winner of a real sweep scored on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sweep_reads import client

from hpo.holdout import NO_TEST_SPLIT, OWN_LOOP, no_estimate_reason
from hpo.loading import load_sweep
from hpo.report import result_json, where_to_look
from hpo.results import SweepResult, TrialRecord
from tracker import schema


def _result(test: dict[str, float], note: str | None = None, metric: str = "val_accuracy",
            task: str | None = None) -> SweepResult:
    best = TrialRecord("t0", 0, "run0", {"lr": 0.1}, "FINISHED", best=0.9, test_metrics=test)
    return SweepResult("s", "parent", "1", "sqlite:///x.db", metric, "maximize", [best], best, test_note=note,
                       task=task)


def test_the_summary_says_the_test_figure_is_of_the_trial_selected_on_validation() -> None:
    result = _result({"test_loss": 0.31, "test_accuracy": 0.875})
    assert ("test accuracy of the selected trial (selected on validation): 0.875  (test_loss 0.31)"
            in where_to_look(result, "sqlite:///x.db").splitlines())
    best = result_json(result)["best"]
    assert best["test"] == {"test_loss": 0.31, "test_accuracy": 0.875} and best["test_note"] is None
    mnist1d = where_to_look(_result({"test_accuracy": 0.9}, task="mnist1d"), "sqlite:///x.db")
    assert "trained on 3,600 rows, selected on 400 validation rows, tested once on 1,000 rows" in mnist1d
    regression = _result({"test_loss": 0.5, "test_mae": 0.4}, metric="val_mae")
    assert "test mae of the selected trial (selected on validation): 0.4  (test_loss 0.5)" in where_to_look(
        regression, "sqlite:///x.db")


def test_without_a_test_split_the_output_says_there_is_no_estimate() -> None:
    result = _result({}, NO_TEST_SPLIT)
    assert "test: no test split: no test estimate" in where_to_look(result, "sqlite:///x.db").splitlines()
    assert result_json(result)["best"] == {"run_id": "run0", "params": {"lr": 0.1}, "metric": 0.9, "test": None,
                                           "test_note": NO_TEST_SPLIT}


@pytest.mark.parametrize(("trainer", "reason"), [
    ("{task: digits}", None),
    ("{data_file: d.npz}", NO_TEST_SPLIT),
    ("{data_file: d.npz, options: {test_fraction: 0.2}}", None),
    ("{data_file: d.npz, test_file: t.npz}", None),
    ('{function: "holdout_own_loop:train"}', OWN_LOOP),
])
def test_which_sweeps_get_a_test_estimate(isolated_cwd: Path, trainer: str, reason: str | None) -> None:
    import numpy as np

    for name in ("d.npz", "t.npz"):
        np.savez(isolated_cwd / name, X=np.zeros((40, 2)), y=np.arange(40) % 2)
    (isolated_cwd / "holdout_own_loop.py").write_text("def train(config, report):\n    report({'val_accuracy': 1.0})\n")
    path = isolated_cwd / "s.yaml"
    path.write_text(f"name: s\nmetric: {{name: val_accuracy, goal: maximize}}\ntrainer: {trainer}\n"
                    "parameters: {lr: {values: [0.1, 0.2]}}\n")
    assert no_estimate_reason(load_sweep(path)[0]) == reason


def test_the_small_sweeps_winner_holds_test_metrics_recomputed_from_its_checkpoint(
    small_sweep_store: Any, tmp_path: Path
) -> None:
    uri, parent, result = small_sweep_store
    test = result["best"]["test"]
    assert set(test) == {"test_loss", "test_accuracy", "test_precision", "test_recall", "test_f1"}
    mlflow = client(uri)
    for run_id in (result["best"]["run_id"], parent):
        stored = mlflow.get_run(run_id).data.metrics
        assert {k: stored[k] for k in test} == test
    assert mlflow.get_run(parent).data.tags[schema.TEST_NOTE] == ""  # no reason: the winner has test figures
    folder = mlflow.download_artifacts(parent, schema.BEST_CHECKPOINT_DIR, str(tmp_path))
    checkpoint = torch.load(Path(folder) / "model.pt", weights_only=True)
    from trainers.catalog import resolve
    from trainers.models import build_model
    from trainers.tasks import load_task

    config = resolve(checkpoint["config"])
    assert config["split_seed"] == 0  # the sweep's seed
    data = load_task("digits", config)
    model = build_model(str(config["model"]), data.input_shape, data.n_outputs, config)
    model.load_state_dict(checkpoint["model_state"])
    with torch.no_grad():
        logits = model.eval()(data.x_test)
    assert test["test_accuracy"] == pytest.approx(float((logits.argmax(1) == data.y_test).float().mean()))
    assert test["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, data.y_test)), rel=1e-5)


def test_a_winner_from_before_a_resume_finds_its_checkpoint_in_ray_storage(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.checkpoints import kept_checkpoint

    monkeypatch.setenv("HPO_HOME", str(tmp_path))
    trial = tmp_path / "ray" / "quick-1700000000" / "trainable_ab12c_00003_3_lr=0.01"
    for n in (1, 4):  # Ray Tune keeps the latest; the store's record knows only the trial id
        (trial / f"checkpoint_00000{n}").mkdir(parents=True)
    assert kept_checkpoint("quick", "stored:ab12c_00003") == trial / "checkpoint_000004"
    assert kept_checkpoint("quick", "ab12c_00009") is None
    assert kept_checkpoint("other", "ab12c_00003") is None
