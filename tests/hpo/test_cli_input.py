"""Bad sweep files and flags: each gives its message and exit code 2, and creates nothing.

Most cases run in-process through ``hpo.cli.main``; a few through the console script for the real
exit code, and one fresh interpreter checks that no bad input gets as far as importing Ray or MLflow.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo.cli import main

BASE: dict[str, Any] = {
    "name": "tiny",
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "budget": {"trials": 2},
    "trainer": {"task": "digits", "epochs": 2, "options": {"hidden": 16}},
    "parameters": {
        "optimizer": {"values": ["sgd", "adam"]},
        "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.1},
        "momentum": {"distribution": "uniform", "min": 0.5, "max": 0.9, "when": {"optimizer": "sgd"}},
    },
}


def _edit(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    change(raw)
    return raw


def _rename(node: dict[str, Any], old: str, new: str) -> None:
    node[new] = node.pop(old)


# id -> (sweep mapping, field path in the message, fragments the message must hold)
CASES: dict[str, tuple[dict[str, Any], str, list[str]]] = {
    "no parameters": (
        _edit(lambda r: r.pop("parameters")), "parameters",
        ["no parameters, so there is nothing to search", "values", "distribution"],
    ),
    "empty parameters": (
        _edit(lambda r: r.update(parameters={})), "parameters", ["no parameters, so there is nothing to search"],
    ),
    "parameters: with nothing under it": (
        _edit(lambda r: r.update(parameters=None)), "parameters", ["no parameters, so there is nothing to search"],
    ),
    "no parameters in a grid": (
        _edit(lambda r: (r.update(method="grid"), r.pop("budget"), r.pop("parameters"))), "parameters",
        ["no parameters, so there is nothing to search"],
    ),
    "every parameter fixed": (
        _edit(lambda r: r.update(parameters={"optimizer": "adam", "lr": {"value": 0.01}})), "parameters",
        ["every parameter is fixed (lr, optimizer)", "nothing to search", "values", "distribution"],
    ),
    "unknown top-level key": (
        _edit(lambda r: _rename(r, "metric", "metrc")), "metrc",
        ["unknown key 'metrc'", "did you mean 'metric'?"],
    ),
    "unknown parameter key": (
        _edit(lambda r: _rename(r["parameters"]["lr"], "distribution", "distribtion")), "parameters.lr.distribtion",
        ["unknown key 'distribtion'", "did you mean 'distribution'?"],
    ),
    "unknown budget key": (
        _edit(lambda r: _rename(r["budget"], "trials", "trails")), "budget.trails",
        ["unknown key 'trails'", "did you mean 'trials'?"],
    ),
    "trials not a number": (
        _edit(lambda r: r["budget"].update(trials="many")), "budget.trials", ["integer", "'many'"],
    ),
    "epochs not a number": (
        _edit(lambda r: r["trainer"].update(epochs="two")), "trainer.epochs", ["integer", "'two'"],
    ),
    "goal not allowed": (
        _edit(lambda r: r["metric"].update(goal="max")), "metric.goal", ["'maximize' or 'minimize'", "'max'"],
    ),
    "min > max": (
        _edit(lambda r: r["parameters"]["lr"].update(min=0.1, max=1e-4)), "parameters.lr",
        ["min <= max", "min=0.1", "max=0.0001"],
    ),
    "log with min 0": (
        _edit(lambda r: r["parameters"]["lr"].update(min=0)), "parameters.lr",
        ["log_uniform", "min > 0", "min=0"],
    ),
    "empty values": (
        _edit(lambda r: r["parameters"]["optimizer"].update(values=[])), "parameters.optimizer.values",
        ["at least 1"],
    ),
    "unknown task": (
        _edit(lambda r: r["trainer"].update(task="digitz")), "trainer.task",
        ["unknown task 'digitz'", "did you mean 'digits'?", "mnist1d"],
    ),
    "unknown optimizer": (
        _edit(lambda r: r["parameters"]["optimizer"].update(values=["sgd", "adamm"])),
        "parameters.optimizer.values[1]", ["'adamm'", "adamw"],
    ),
    "metric not reported": (
        _edit(lambda r: r["metric"].update(name="val_los")), "metric.name",
        ["'val_los' is not reported by task digits", "did you mean 'val_loss'?"],
    ),
    "continuous range in a grid": (
        _edit(lambda r: (r.update(method="grid"), r.pop("budget"))), "parameters.lr",
        ["method grid needs discrete values", "log_uniform", "[0.0001, 0.1]"],
    ),
    "zero trials": (
        _edit(lambda r: r["budget"].update(trials=0)), "budget.trials", ["greater than or equal to 1", "0"],
    ),
    "conditional param without when": (
        _edit(lambda r: r["parameters"]["momentum"].pop("when")), "parameters.momentum",
        ["momentum applies only when optimizer is sgd", "optimizer can be adam", "when: {optimizer: sgd}"],
    ),
    "when names an undefined parameter": (
        _edit(lambda r: _rename(r["parameters"]["momentum"]["when"], "optimizer", "optimiser")),
        "parameters.momentum.when.optimiser",
        ["'optimiser', which is not defined", "did you mean 'optimizer'?"],
    ),
    "when names a value the parent never takes": (
        _edit(lambda r: r["parameters"]["momentum"]["when"].update(optimizer="sgdd")),
        "parameters.momentum.when.optimizer", ["'sgdd'"],
    ),
    "grid with budget.trials": (
        _edit(lambda r: (r.update(method="grid"), r["parameters"].update(lr={"values": [0.1, 0.01]}),
                         r["parameters"]["momentum"].update(distribution="uniform", step=0.4))),
        "budget.trials", ["exactly once", "budget.trials=2"],
    ),
    "batch larger than the training set": (
        _edit(lambda r: r["parameters"].update(batch_size={"values": [64, 5000]})),
        "parameters", ["batch_size (5000) is larger than the 1149 training rows of task digits"],
    ),
    "bound not finite": (
        _edit(lambda r: r["parameters"]["lr"].update(max=float("inf"))), "parameters.lr",
        ["max must be a finite number, got inf"],
    ),
    "fixed value not finite": (
        _edit(lambda r: r["parameters"].update(dropout=float("nan"))), "parameters.dropout.value",
        ["expected a finite number, got nan"],
    ),
    "step on a log range": (
        _edit(lambda r: r["parameters"]["lr"].update(step=1)), "parameters.lr",
        ["a log_uniform distribution takes no step, got step=1"],
    ),
    "warmup longer than training": (
        _edit(lambda r: r["parameters"].update(scheduler="cosine", warmup_epochs=50)),
        "parameters", ["warmup_epochs (50) must be smaller than epochs"],
    ),
}


def _large_space_with_a_warmup_clash(raw: dict[str, Any]) -> None:
    """Over 4096 corners, so the rules are checked on pairs of corners; the clash needs two parameters."""
    raw["parameters"].update(
        epochs={"values": [10, 3]}, scheduler="cosine", warmup_epochs={"distribution": "int", "min": 0, "max": 4},
        weight_decay={"distribution": "log_uniform", "min": 1e-6, "max": 1e-2},
        dropout={"distribution": "uniform", "min": 0.0, "max": 0.5},
        layers={"distribution": "int", "min": 1, "max": 4},
        batch_size={"values": [16, 32, 64, 128]}, label_smoothing={"distribution": "uniform", "min": 0.0, "max": 0.2},
        l1={"distribution": "log_uniform", "min": 1e-7, "max": 1e-3}, seed={"values": [0, 1, 2]},
    )


CASES["early_stop key cut short"] = (
    _edit(lambda r: r.update(early_stop={"type": "asha", "grace": 2})), "early_stop.grace",
    ["unknown key 'grace'", "did you mean 'grace_epochs'?"],
)
CASES["fixed option that no trial uses"] = (
    _edit(lambda r: (r["parameters"].pop("momentum"), r["parameters"].update(optimizer="adam"),
                     r["trainer"]["options"].update(nesterov=False))),
    "trainer.options.nesterov",
    ["nesterov applies only when optimizer is sgd, but optimizer is adam here (parameters.optimizer)"],
)
CASES["warmup longer than training, in a large space"] = (
    _edit(_large_space_with_a_warmup_clash), "parameters",
    ["warmup_epochs (4) must be smaller than epochs (3)", "epochs=3,", "warmup_epochs=4"],
)

# the data split is the same for every trial: fixed by the sweep's seed and the test settings
CASES["test_fraction searched"] = (
    _edit(lambda r: r["parameters"].update(test_fraction={"values": [0.1, 0.2]})), "parameters.test_fraction",
    ["test_fraction fixes the test split", "cannot be searched", "trainer.options"],
)
CASES["split_seed set by hand"] = (
    _edit(lambda r: r["trainer"]["options"].update(split_seed=3)), "trainer.options.split_seed",
    ["split_seed is set from the sweep's own seed (now 0)", "set `seed:` at the top"],
)
CASES["test_fraction on mnist1d"] = (
    _edit(lambda r: r["trainer"].update(task="mnist1d", options={"hidden": 16, "test_fraction": 0.1})),
    "trainer.options.test_fraction", ["task mnist1d has its official test split", "(0.1)", "remove it"],
)
CASES["test_fraction too large"] = (
    _edit(lambda r: r["trainer"]["options"].update(test_fraction=0.9)), "trainer.options.test_fraction",
    ["test_fraction must be <= 0.5, got 0.9"],
)
CASES["test_file without data_file"] = (
    _edit(lambda r: r["trainer"].update(test_file="test.csv")), "trainer",
    ["trainer.test_file ('test.csv') is the test set of a trainer.data_file"],
)


def _nothing_created(folder: Path, sweep_file: Path | None) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ([sweep_file.name] if sweep_file else [])
    assert not (folder / ".hpo").exists()
    assert not (folder / "hpo_home").exists()  # HPO_HOME of these tests


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_sweep_file_exits_2_with_its_message(
    case: str, command: str, isolated_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, field, fragments = CASES[case]
    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(raw), encoding="utf-8")

    assert main([command, str(sweep)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {sweep}: {field}: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    _nothing_created(isolated_cwd, sweep)
    assert not _ray_running()


def test_missing_file(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nope.yaml"]) == 2
    assert capsys.readouterr().err == "error: nope.yaml: no such sweep file\n"
    _nothing_created(isolated_cwd, None)


def test_not_yaml(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text("name: [unclosed\n", encoding="utf-8")
    assert main(["run", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {sweep}: not valid YAML: ")
    assert "line 2" in err  # where the parser gave up
    _nothing_created(isolated_cwd, sweep)


def test_binary_file(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = isolated_cwd / "model.pt"
    sweep.write_bytes(b"PK\x03\x04\xff\xfe binary")
    assert main(["validate", str(sweep)]) == 2
    assert capsys.readouterr().err == f"error: {sweep}: not a text (UTF-8) file: invalid start byte at byte 4\n"
    _nothing_created(isolated_cwd, sweep)


def test_yaml_that_is_not_a_mapping(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text("- a\n- b\n", encoding="utf-8")
    assert main(["validate", str(sweep)]) == 2
    assert capsys.readouterr().err == f"error: {sweep}: a sweep file is a YAML mapping of fields, got list\n"
    _nothing_created(isolated_cwd, sweep)


DUPLICATES = {
    "top level": ("name: a\nmethod: random\nname: b\n", "name", "key 'name' appears twice: lines 1 and 3"),
    "nested": ("name: a\ntrainer:\n  task: digits\n  epochs: 2\n  epochs: 3\n", "trainer.epochs",
               "key 'trainer.epochs' appears twice: lines 4 and 5"),
    "a parameter": ("name: a\nparameters:\n  lr: {values: [0.1]}\n  dropout: 0.1\n  lr: {values: [0.2]}\n",
                    "parameters.lr", "key 'parameters.lr' appears twice: lines 3 and 5"),
    "inside a parameter": ("name: a\nparameters:\n  lr:\n    distribution: uniform\n    min: 0.1\n    max: 0.5\n"
                           "    min: 0.2\n", "parameters.lr.min",
                           "key 'parameters.lr.min' appears twice: lines 5 and 7"),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_duplicate_keys_exit_2_naming_key_and_lines(
    case: str, command: str, isolated_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PyYAML keeps the last of two equal keys without a word; a sweep file must not."""
    text, field, message = DUPLICATES[case]
    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text(text + "trainer: {task: digits}\n" * ("trainer" not in text), encoding="utf-8")
    assert main([command, str(sweep)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {sweep}: {field}: {message}; keep one of them\n"
    _nothing_created(isolated_cwd, sweep)


def test_yaml_merge_keys_are_not_duplicates(isolated_cwd: Path) -> None:
    """``<<: *anchor`` followed by a key of the anchor overrides it on purpose (YAML's merge)."""
    from hpo.loading import load_sweep

    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text(
        "name: m\ntrainer: {task: digits}\nparameters:\n"
        "  lr: &range {distribution: uniform, min: 0.01, max: 0.1}\n"
        "  dropout: {<<: *range, min: 0.0, max: 0.5}\n",
        encoding="utf-8",
    )
    config, _ = load_sweep(sweep)
    assert (config.parameters["dropout"].min, config.parameters["dropout"].max) == (0.0, 0.5)  # type: ignore[union-attr]


def _write_base(folder: Path) -> Path:
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    return sweep


def test_validate_prints_ok_and_creates_nothing(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _write_base(isolated_cwd)
    assert main(["validate", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{sweep}: ok - random (random) sweep 'tiny', 2 trials of up to 2 epochs")
    assert "maximize val_accuracy" in out
    _nothing_created(isolated_cwd, sweep)


def test_set_overrides_the_file(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _write_base(isolated_cwd)
    assert main(["validate", str(sweep), "--set", "budget.trials=3", "--set", "trainer.epochs=4"]) == 0
    assert "3 trials of up to 4 epochs" in capsys.readouterr().out
    _nothing_created(isolated_cwd, sweep)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("budget.trails=3", "budget.trails: unknown key 'trails' (did you mean 'trials'?)"),
        ("budget.trials=0", "budget.trials: Input should be greater than or equal to 1"),
        ("budget", "--set: expected key=value, got 'budget'"),
        ("=3", "--set: expected key=value, got '=3'"),
        ("name.first=x", "cannot set name.first: name holds 'tiny', not a mapping"),
    ],
)
def test_bad_set_exits_2(pair: str, expected: str, isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _write_base(isolated_cwd)
    assert main(["run", str(sweep), "--set", pair]) == 2
    assert expected in capsys.readouterr().err
    _nothing_created(isolated_cwd, sweep)


def test_exponent_floats_are_numbers(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``1e-3`` is a float in YAML 1.2; PyYAML alone reads it as the string '1e-3'."""
    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text(
        "name: e\nmethod: grid\ntrainer: {task: digits, epochs: 1}\n"
        "parameters:\n  lr: {values: [1e-3, 1E-2, 5e+1]}\n  weight_decay: 1e-4\n",
        encoding="utf-8",
    )
    assert main(["validate", str(sweep), "--set", "parameters.dropout=5e-1"]) == 0
    assert "3 trials" in capsys.readouterr().out
    from hpo.loading import load_sweep

    config, _ = load_sweep(sweep, {"parameters.lr.values": "[1e-4, 2e-4]"})
    assert config.parameters["lr"].values == [1e-4, 2e-4]  # type: ignore[union-attr]
    assert config.parameters["weight_decay"].value == 1e-4  # type: ignore[union-attr]


# -- through the console script ---------------------------------------------------------------------
def test_console_script_exit_codes(run_hpo, tmp_path: Path) -> None:
    sweep = _write_base(tmp_path)
    ok = run_hpo(["validate", str(sweep), "--set", "budget.trials=3"], cwd=tmp_path, home=tmp_path / "hpo_home")
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.startswith(f"{sweep}: ok - random (random) sweep 'tiny', 3 trials")

    bad_raw, field, fragments = CASES["metric not reported"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_raw), encoding="utf-8")
    done = run_hpo(["run", str(bad), "--json"], cwd=tmp_path, home=tmp_path / "hpo_home")
    assert done.returncode == 2
    assert done.stdout == ""  # --json prints nothing when there is no result
    assert done.stderr.startswith(f"error: {bad}: {field}: ")
    assert all(f in done.stderr for f in fragments)

    missing = run_hpo(["run", "missing.yaml"], cwd=tmp_path, home=tmp_path / "hpo_home")
    assert (missing.returncode, missing.stderr) == (2, "error: missing.yaml: no such sweep file\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "sweep.yaml"]


def test_no_bad_input_reaches_ray_mlflow_or_torch(tmp_path: Path) -> None:
    """Every bad case in one fresh interpreter: none may import what a sweep needs to start."""
    files = []
    for i, (raw, _, _) in enumerate(CASES.values()):
        path = tmp_path / f"case{i}.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        files.append(str(path))
    script = (
        "import json, sys\n"
        "from hpo.cli import main\n"
        f"codes = [main(['run', f]) for f in {files!r}]\n"
        "heavy = sorted(m for m in ('ray', 'mlflow', 'torch') if m in sys.modules)\n"
        "print(json.dumps({'codes': codes, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**_env_without_store(), "HPO_HOME": str(tmp_path / "hpo_home")})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"codes": [2] * len(CASES), "heavy": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(f).name for f in files)


def _env_without_store() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HPO_HOME", "RAY_ADDRESS")}


@pytest.mark.parametrize("top", ["0", "-1", "many"])
def test_best_top_must_be_positive(top: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["best", "some-sweep", "--top", top])
    assert exit_.value.code == 2
    assert f"argument --top: expected a whole number of 1 or more, got '{top}'" in capsys.readouterr().err


def test_fixed_float_epochs_set_the_longest_trial() -> None:
    from hpo.loading import validate

    raw = copy.deepcopy(BASE)
    raw["parameters"]["epochs"] = 6.0
    assert validate(raw).max_epochs == 6
