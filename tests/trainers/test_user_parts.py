"""Bring your own model, data, data file or loop: checks before any trial, and real short sweeps.

The sweeps use the example project in examples/byo (copied into tmp_path), so the example is tested too.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hpo.cli import main
from hpo.errors import ConfigError
from hpo.loading import load_sweep
from trainers.user_parts import data_from_file, data_from_function, user_model_and_data

torch.set_num_threads(1)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "byo"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path holding the example project, as the working folder; sys.path and modules restored after."""
    shutil.copytree(EXAMPLE / "winelab", tmp_path / "winelab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(EXAMPLE / "wine.csv", tmp_path / "wine.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPO_HOME", str(tmp_path / ".hpo"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    for name in [m for m in sys.modules if m == "winelab" or m.startswith("winelab.")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


# A sweep needs a parameter to search; one seed, the sweep's own, keeps the trial what it was without it.
ONE_SEED = "parameters: {seed: {values: [0]}}\n"


def _sweep(folder: Path, name: str, trainer: str, extra: str = ONE_SEED) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmethod: random\nmetric: {{name: val_accuracy, goal: maximize}}\n"
        f"budget: {{trials: 1, max_concurrent: 1}}\ntrainer: {trainer}\n{extra}"
    )
    return path


def _run(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    code = main(["run", str(path), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    doc: dict = json.loads(captured.out)
    assert [t["status"] for t in doc["trials"]] == ["FINISHED"]
    return doc


# -- real sweeps -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("trainer", "floor"), [
    ('{task: breast_cancer, model: "winelab.models:build_model", epochs: 2, options: {lr: 0.01}}', 0.8),
    ('{function: "winelab.train:train", epochs: 3, options: {lr: 0.5}}', 0.6),
])
def test_own_model_or_loop_runs_a_sweep(project: Path, capsys: pytest.CaptureFixture[str], trainer: str,
                                        floor: float) -> None:
    doc = _run(_sweep(project, "byo", trainer), capsys)
    assert doc["best"]["metric"] > floor
    if "function" in trainer:
        assert doc["best"]["test"] is None and "no test estimate" in doc["best"]["test_note"]
    else:  # breast_cancer's own test split, scored once for the winner
        assert set(doc["best"]["test"]) >= {"test_accuracy", "test_loss"} and doc["best"]["test_note"] is None


# The example's load_data, with test arrays that write a line to a file whenever their values are read,
# and a line per call of load_data: both with the reading process's id.
RECORDED = """\
import os
from pathlib import Path

from winelab.data import load_data as wine

READS, CALLS = Path({reads!r}), Path({calls!r})


class Recorded:
    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values)

    def __array__(self, dtype=None, copy=None):
        with READS.open("a") as f:
            f.write(f"{{os.getpid()}}\\n")
        return self.values


def load_data(config):
    with CALLS.open("a") as f:
        f.write(f"{{os.getpid()}}\\n")
    *train_val, x_test, y_test = wine(config)
    return (*train_val, Recorded(x_test), Recorded(y_test))
"""


@pytest.mark.slow
def test_own_data_test_split_is_read_once_after_the_search(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The test arrays are never read in a trial; the winner's checkpoint is scored on them once, and the
    winner's run and the sweep run hold what a recomputation from the stored checkpoint gives."""
    from mlflow import MlflowClient

    reads, calls = project / "reads.txt", project / "calls.txt"
    (project / "winelab" / "recorded.py").write_text(RECORDED.format(reads=str(reads), calls=str(calls)))
    doc = _run(_sweep(project, "byo", '{data: "winelab.recorded:load_data", epochs: 2, '
                                      "options: {hidden: 16, lr: 0.01}}"), capsys)
    assert doc["best"]["metric"] > 0.5
    callers, readers = calls.read_text().split(), reads.read_text().split()
    assert len(callers) == 2 and callers[0] != callers[1]  # the trial, then the scoring task
    assert readers == [callers[1]] * 2  # x_test and y_test, once each, by the scoring task only
    test = doc["best"]["test"]
    client = MlflowClient(doc["tracking_uri"])
    for run_id in (doc["best"]["run_id"], doc["parent_run_id"]):
        stored = client.get_run(run_id).data.metrics
        assert {k: stored[k] for k in test} == test
    folder = client.download_artifacts(doc["parent_run_id"], "best_checkpoint", str(project / "ckpt"))
    checkpoint = torch.load(Path(folder) / "model.pt", weights_only=True)
    from winelab.data import load_data

    from trainers.catalog import resolve
    from trainers.models import build_model

    config = resolve(checkpoint["config"])
    *_, x_test, y_test = load_data(config)
    model = build_model("mlp", (13,), 3, config)
    model.load_state_dict(checkpoint["model_state"])
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x_test))
    assert test["test_accuracy"] == pytest.approx(float((logits.argmax(1).numpy() == y_test).mean()))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y_test))
    assert test["test_loss"] == pytest.approx(float(loss), rel=1e-5)


BAD_REPORTS = """\
import math


def train(config, report):
    for epoch in range(2):
        if config["mode"] == "nan" and epoch == 1:
            report({"val_loss": 0.5, "val_accuracy": math.nan})
        elif config["mode"] == "missing":
            report({"val_loss": 0.5})
        else:
            report({"val_loss": 0.5, "val_accuracy": 0.25 + epoch / 4})
"""


@pytest.mark.slow
def test_a_report_without_a_finite_sweep_metric_fails_that_trial_only(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "winelab" / "bad_reports.py").write_text(BAD_REPORTS)
    path = _sweep(project, "bad_reports", '{function: "winelab.bad_reports:train"}',
                  "parameters: {mode: {values: [nan, missing, ok]}}\n")
    path.write_text(path.read_text().replace("method: random", "method: grid").replace("trials: 1, ", ""))
    assert main(["run", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    trials = {t["params"]["mode"]: t for t in doc["trials"]}
    assert {m: t["status"] for m, t in trials.items()} == {"nan": "FAILED", "missing": "FAILED", "ok": "FINISHED"}
    assert trials["nan"]["error"].endswith("MetricNotReported: the sweep metric val_accuracy is nan at report 2")
    assert "report 1 holds ['val_loss'] but not the sweep metric 'val_accuracy'" in trials["missing"]["error"]
    assert doc["best"]["metric"] == 0.5


@pytest.mark.slow
def test_data_file_sweep_with_cross_validation_reports_fold_spread(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    trainer = "{data_file: wine.csv, target: target, epochs: 2, options: {hidden: 16, lr: 0.01, folds: 3}}"
    doc = _run(_sweep(project, "byo_file", trainer), capsys)
    metrics = MlflowClient(doc["tracking_uri"]).get_run(doc["trials"][0]["run_id"]).data.metrics
    assert {"val_accuracy", "val_accuracy_std", "val_f1_std"} <= set(metrics)
    assert metrics["val_accuracy"] > 0.5
    assert doc["best"]["test"] is None and doc["best"]["test_note"] == "no test split: no test estimate"


# -- checks before any trial -------------------------------------------------------------------------
@pytest.mark.parametrize(("trainer", "match"), [
    ('{task: digits, model: "winelab.nowhere:build_model"}', "cannot import 'winelab.nowhere:build_model'"),
    ('{task: digits, model: "winelab.models:missing"}', "'winelab.models:missing' does not exist"),
    ('{task: digits, model: "winelab.data:load_data"}',
     r"must accept \(config, input_shape, n_outputs\); its signature is \(config"),
    ('{data: "winelab.models:build_model"}', r"winelab.models:build_model must accept \(config\)"),
    ("{data_file: nowhere.csv, target: y}", "data file 'nowhere.csv' does not exist"),
    ("{data_file: wine.csv, target: cultivar}", "data file 'wine.csv' has no 'cultivar'.*its columns: alcohol"),
    ("{data_file: wine.csv}", "is a table: name the column to predict in trainer.target"),
    ("{data_file: arrays.npz, target: y}", "trainer.target names a column of a .csv/.parquet"),
    ("{data_file: wine.txt, target: y}", "must end in .csv, .parquet, .npz"),
    ('{task: digits, data: "winelab.data:load_data"}', "set exactly one of trainer.task.*got task, data"),
    ('{function: "winelab.train:train", model: "winelab.models:build_model"}', "remove trainer.model"),
    ('{data: "winelab.data"}', "must look like 'package.module:function'"),
    ("{data_file: wine.csv, target: target, test_file: nowhere.csv}",
     "trainer.test_file: data file 'nowhere.csv' does not exist"),
    ("{data_file: wine.csv, target: target, test_file: test.npz}", "must have the layout of.*same suffix"),
    ("{data_file: wine.csv, target: target, test_file: wine.csv, options: {test_fraction: 0.2}}",
     "give trainer.test_file or trainer.options.test_fraction, not both"),
    ('{data: "winelab.data:load_data", options: {test_fraction: 0.2}}',
     r"trainer.options.test_fraction: trainer.data \(winelab.data:load_data\) supplies its own split"),
])
def test_broken_user_parts_fail_before_any_trial(project: Path, trainer: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_sweep(_sweep(project, "broken", trainer))


def test_a_module_that_raises_on_import_is_an_input_error(project: Path) -> None:
    (project / "winelab" / "broken.py").write_text("def build_model(config, input_shape, n_outputs:\n")
    with pytest.raises(ConfigError, match=r"trainer.model: importing 'winelab.broken:build_model' raised "
                                          r"SyntaxError: .*broken.py, line 1"):
        load_sweep(_sweep(project, "broken", '{task: digits, model: "winelab.broken:build_model"}'))


def test_npz_needs_arrays_x_and_y(project: Path) -> None:
    np.savez(project / "arrays.npz", X=np.zeros((4, 2)), labels=np.zeros(4))
    with pytest.raises(ConfigError, match="data file 'arrays.npz' has no 'y'.*numpy.savez"):
        load_sweep(_sweep(project, "npz", "{data_file: arrays.npz}"))


def test_regression_metric_is_allowed_for_own_data_but_not_for_a_classification_task(project: Path) -> None:
    load_sweep(_sweep(project, "ok", "{data_file: wine.csv, target: target}").parent / "ok.yaml")
    path = project / "reg.yaml"
    path.write_text("name: reg\nmetric: {name: val_r2, goal: maximize}\ntrainer: {data: 'winelab.data:load_data'}\n"
                    + ONE_SEED)
    load_sweep(path)
    path.write_text("name: reg\nmetric: {name: val_accuracy, goal: maximize}\ntrainer: {task: diabetes}\n" + ONE_SEED)
    with pytest.raises(ConfigError, match="metric 'val_accuracy' is not reported by task diabetes.*val_r2"):
        load_sweep(path)


def test_a_data_file_metric_must_fit_its_targets(project: Path) -> None:
    """wine.csv's target holds class labels; a column of floats makes regression (val_r2, val_mae)."""
    path = _sweep(project, "cls", "{data_file: wine.csv, target: target}")
    path.write_text(path.read_text().replace("val_accuracy", "val_r2"))
    with pytest.raises(ConfigError, match=r"metric 'val_r2' is not reported for 'wine.csv': its "
                                          r"target holds class labels, so the loop runs classification"):
        load_sweep(path)
    import pandas as pd

    table = pd.read_csv(project / "wine.csv")
    table["alcohol"].to_frame().assign(x=table["target"]).to_csv(project / "alcohol.csv", index=False)
    with pytest.raises(ConfigError, match="its target holds floating-point values, so the loop runs regression"):
        load_sweep(_sweep(project, "reg", "{data_file: alcohol.csv, target: alcohol}"))
    np.savez(project / "arrays.npz", X=np.zeros((8, 2)), y=np.linspace(0, 1, 8))
    path = _sweep(project, "npz", "{data_file: arrays.npz}")
    path.write_text(path.read_text().replace("val_accuracy, goal: maximize", "val_mae, goal: minimize"))
    assert load_sweep(path)[0].metric.name == "val_mae"


# -- loading -----------------------------------------------------------------------------------------
def test_data_files_give_classification_or_regression(project: Path) -> None:
    table = data_from_file(project / "wine.csv", "target", 0.25)
    assert table.kind == "classification" and table.n_classes == 3 and table.input_shape == (13,)
    assert len(table.y_val) == 45
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    np.savez(project / "reg.npz", X=x, y=x @ np.array([1.0, -2.0, 0.5]))
    reg = data_from_file(project / "reg.npz", None, 0.2)
    assert reg.kind == "regression" and reg.n_outputs == 1 and len(reg.y_val) == 12
    import pandas as pd

    pd.read_csv(project / "wine.csv").to_parquet(project / "wine.parquet")
    assert data_from_file(project / "wine.parquet", "target", 0.25).n_classes == 3


def test_data_file_test_split_from_a_share_or_a_later_read_file(project: Path) -> None:
    import pandas as pd

    shared = data_from_file(project / "wine.csv", "target", 0.25, test_fraction=0.2, split_seed=1)
    assert shared.test is not None and shared.test.rows == 36 and len(shared.y_train) + len(shared.y_val) == 142
    assert shared.test is not data_from_file(project / "wine.csv", "target", 0.25).test is None
    separate = data_from_file(project / "wine.csv", "target", 0.25, test_file=project / "test.csv")
    table = pd.read_csv(project / "wine.csv")
    table.iloc[::-6].to_csv(project / "test.csv", index=False)  # written after: the split did not read it
    assert separate.y_test is not None and separate.x_test is not None and len(separate.y_test) == 30
    labels = sorted(table["target"].unique())
    assert [labels[i] for i in separate.y_test.tolist()] == table["target"].iloc[::-6].tolist()
    assert separate.x_test.shape[1:] == separate.x_train.shape[1:]


def test_load_data_results_are_checked(project: Path) -> None:
    x = np.zeros((5, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="must return"):
        data_from_function(lambda config: (x, x), {})
    with pytest.raises(ValueError, match="x_val has 5 rows but y_val has 4"):
        data_from_function(lambda config: (x, np.zeros(5, np.int64), x, np.zeros(4, np.int64)), {})
    with pytest.raises(ValueError, match="use one kind"):
        data_from_function(lambda config: (x, np.zeros(5, np.int64), x, np.zeros(5)), {})
    data, build = user_model_and_data({"data": "winelab.data:load_data", "model": "winelab.models:build_model"}, {})
    assert data is not None and data.kind == "classification" and data.n_classes == 3 and build is not None


@pytest.mark.parametrize("name", ["model", "data", "data_file", "function"])
def test_example_sweep_files_validate(project: Path, name: str) -> None:
    shutil.copy(EXAMPLE / f"{name}.yaml", project / f"{name}.yaml")
    config, _ = load_sweep(project / f"{name}.yaml")
    assert config.trainer.epochs <= 5 and (config.budget.trials or 0) <= 2  # the examples stay tiny
