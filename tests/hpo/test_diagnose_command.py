"""`hpo diagnose --history FILE [--json]`: output shape, verdicts on clear curves, exit codes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main

OVERFIT = {
    "train_loss": [2.0 * 0.7**i for i in range(20)],
    "val_loss": [2.0, 1.5, 1.1, 0.9, 0.8, 0.78, 0.8, 0.85, 0.9, 0.97, 1.05, 1.12, 1.2, 1.3, 1.38, 1.45, 1.55,
                 1.62, 1.7, 1.8],
    "train_accuracy": [min(1.0, 0.3 + 0.05 * i) for i in range(20)],
    "val_accuracy": [0.3, 0.45, 0.55, 0.6, 0.63, 0.64, 0.64, 0.63, 0.63, 0.62, 0.62, 0.61, 0.61, 0.6, 0.6, 0.6,
                     0.59, 0.59, 0.58, 0.58],
}


def write(tmp_path: Path, payload: object, name: str = "h.json") -> Path:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


def test_json_has_the_documented_shape_and_finds_overfitting(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["diagnose", "--history", str(write(tmp_path, OVERFIT)), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"verdict", "confidence", "evidence", "recommendations"} <= set(doc)
    assert doc["verdict"] == "overfitting"
    assert 0.0 <= doc["confidence"] <= 1.0
    assert doc["recommendations"] and all(isinstance(r, str) for r in doc["recommendations"])


def test_nan_and_infinity_in_the_file_mean_divergence(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    text = '{"train_loss": [2.3, 2.1, 5.0, NaN, null], "val_loss": [2.3, 2.2, 9.0, Infinity, null]}'
    code = main(["diagnose", "--history", str(write(tmp_path, text)), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "diverged"


def test_text_output_lists_verdict_evidence_and_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["diagnose", "--history", str(write(tmp_path, OVERFIT))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: overfitting")
    assert "evidence:" in out and "recommendations:" in out


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "JSON object"),
        ({"train_los": [1.0, 0.5]}, "unknown key"),
        ({"train_loss": "fast"}, "must be a list"),
        ({"train_loss": [1.0, "x"]}, r"train_loss\[1\]"),
    ],
)
def test_malformed_file_is_exit_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: object, message: str
):
    path = write(tmp_path, payload)
    assert main(["diagnose", "--history", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(path) in captured.err
    assert re.search(message, captured.err)


def test_missing_file_and_missing_argument_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["diagnose", "--history", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert main(["diagnose"]) == 2
    assert "--history" in capsys.readouterr().err


def test_console_script_prints_one_json_document(tmp_path: Path):
    path = write(tmp_path, OVERFIT)
    done = subprocess.run([sys.executable, "-m", "hpo.cli", "diagnose", "--history", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["verdict"] == "overfitting"
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in doc["evidence"].values())


def test_a_compress_run_id_is_refused_naming_its_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``hpo diagnose`` judges trials and sweeps; a compressed variant's run is neither (it has no curves)."""
    from tracker import schema
    from tracker.mlflow_log import SweepLogger, log_compress_variant, open_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = SweepLogger.start(open_client(uri), experiment="e", run_name="s", tags={schema.SWEEP: "s"}, params={},
                               artifact_location=(tmp_path / "artifacts").as_uri())
    logger.close()
    variant = log_compress_variant(logger.client, logger.parent_run_id, run_name="s-int8", tags={}, params={},
                                   metrics={"val_accuracy": 0.9}, files=[])
    assert main(["diagnose", variant, "--tracking-uri", uri, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"run {variant!r} is a compress run" in captured.err and "takes a trial run, a sweep run" in captured.err
