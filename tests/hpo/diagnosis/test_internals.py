"""Findings from inside training (hpo.diagnosis._internals) on synthetic signal series, through the one path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpo.cli import main
from hpo.diagnosis import diagnose_trial, load_history_file
from hpo.diagnosis._internals import FINDINGS
from trainers import signal_names as names

EPOCHS = 6
LOSS = [2.3, 1.2, 0.8, 0.6, 0.5, 0.45]
VAL = [2.2, 1.3, 0.9, 0.75, 0.7, 0.68]


def _healthy() -> dict[str, list[float | None]]:
    flat = {names.GRAD_NORM: 0.8, names.GRAD_NORM_MAX: 1.6, names.NONFINITE_GRAD_STEPS: 0.0,
            names.NONFINITE_WEIGHTS: 0.0, names.WEIGHT_NORM: 15.0, names.DEAD_RELU: 0.1,
            names.grad_norm_of("input"): 0.4, names.grad_norm_of("hidden"): 0.5, names.grad_norm_of("output"): 0.7,
            names.update_ratio_of("input"): 5e-3, names.update_ratio_of("hidden"): 4e-3,
            names.update_ratio_of("output"): 6e-3}
    series: dict[str, list[float | None]] = {k: [v] * EPOCHS for k, v in flat.items()}
    series[names.INIT_DEAD_RELU] = [0.05]
    series[names.INIT_GRAD_RATIO] = [0.5]
    return {"train_loss": list(LOSS), "val_loss": list(VAL), **series}


def _inside(result: Any) -> list[str]:
    return [f for f in result.findings if f in FINDINGS]


def _with(**changes: list[float | None]) -> dict[str, list[float | None]]:
    series = _healthy()
    series.update({names.PREFIX + k: v for k, v in changes.items()})
    return series


PARAMS = {"lr": 0.5, "optimizer": "sgd", "activation": "sigmoid", "init": "normal", "init_std": 2.0,
          "clip_norm": 0.0}


@pytest.mark.parametrize(("changes", "finding", "advice"), [
    ({"update_ratio_output": [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]}, "update_ratio_too_large", "lr is 0.5 here; try 0.05"),
    ({f"update_ratio_{g}": [2e-7] * EPOCHS for g in names.GROUPS}, "update_ratio_too_small", "try 50"),
    ({"grad_norm_max": [1.6, 1.5, 900.0, 1.2, 1.1, 1.0]}, "exploding_gradients", "clip_norm is 0 here"),
    ({"nonfinite_grad_steps": [0, 0, 3, 0, 0, 0]}, "non_finite_tensors", "lr is 0.5 here"),
    ({"grad_norm_input": [1e-5] * EPOCHS}, "vanishing_gradients", "activation is sigmoid here"),
    ({"dead_relu": [0.2, 0.4, 0.6, 0.7, 0.7, 0.7]}, "dead_units", "lr is 0.5 here"),
    ({"saturated": [0.6] * EPOCHS}, "saturated_units", "activation is sigmoid here"),
    ({"init_grad_input_to_output": [1e-6]}, "poor_initialization", "init is normal (init_std 2.0) here"),
    ({"init_saturated": [0.7]}, "poor_initialization", "try xavier_normal"),
])
def test_each_finding_fires_with_advice_tied_to_the_trial(changes: dict[str, list[float | None]], finding: str,
                                                          advice: str) -> None:
    assert _inside(diagnose_trial(_healthy(), params=PARAMS)) == []
    result = diagnose_trial(_with(**changes), params=PARAMS)
    assert result is not None and finding in _inside(result), result.findings
    assert any(advice in r for r in result.recommendations), result.recommendations
    assert "Inside training:" in result.summary
    assert result.verdict == diagnose_trial(_healthy(), params=PARAMS).verdict  # the curves decide the verdict


def test_a_flat_loss_is_found_and_the_findings_carry_their_evidence() -> None:
    series = _with(**{f"update_ratio_{g}": [2e-7] * EPOCHS for g in names.GROUPS})
    series["train_loss"] = [2.30, 2.30, 2.29, 2.30, 2.29, 2.30]
    series["val_loss"] = [2.31] * EPOCHS
    result = diagnose_trial(series, params={"lr": 1e-6})
    assert result is not None
    assert {"update_ratio_too_small", "loss_not_decreasing"} <= set(result.findings)
    assert result.evidence["inside_update_ratio_max"] == pytest.approx(2e-7)
    assert result.evidence["inside_train_loss_end_vs_first"] == pytest.approx(1.0, abs=0.01)
    assert "Raise the learning rate: lr is 1e-06 here; try 0.0001." in result.recommendations


def test_fp16_skipped_steps_are_not_a_finding_but_nan_weights_are() -> None:
    steps = {"nonfinite_grad_steps": [2, 0, 1, 0, 0, 0]}
    assert "non_finite_tensors" not in _inside(diagnose_trial(_with(**steps), params={"precision": "fp16"}))
    weights = {**steps, "nonfinite_weights": [0, 0, 0, 0, 0, 12]}
    assert "non_finite_tensors" in _inside(diagnose_trial(_with(**weights), params={"precision": "fp16"}))


def test_a_history_file_with_signals_gives_the_same_findings_as_the_stored_series(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    series = _with(dead_relu=[0.6] * EPOCHS)
    path = tmp_path / "history.json"
    path.write_text(json.dumps(series))
    assert load_history_file(path) == series
    assert main(["diagnose", "--history", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(json.dumps(diagnose_trial(series).to_dict()))
    assert "dead_units" in doc["findings"] and doc["evidence"]["inside_dead_end"] == 0.6
