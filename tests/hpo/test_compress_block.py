"""The sweep file's ``compress:`` block: checked when the file loads (exit 2, the field named, nothing
created) and run on the winner once a real sweep's search is done, each variant a child run of the sweep."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sweep_reads import client

from hpo.cli import main
from tracker import schema
from tracker.queries import Store

SWEEP = """\
name: shrink
method: grid
metric: {name: val_accuracy, goal: maximize}
budget: {max_concurrent: 1}
seed: 0
trainer: {task: digits, epochs: 2, options: {hidden: 32, train_fraction: 0.3, optimizer: adam}}
parameters:
  lr: {values: [0.003, 0.03]}
"""
BLOCK = """\
compress:
  methods: [dynamic_int8, static_int8]
  repeats: 3
  warmup: 1
  large_batch: 16
"""


@pytest.mark.parametrize(("block", "field", "message"), [
    ("compress: {methods: [dynamic_int8, int4]}", "compress.methods.1", "Input should be 'dynamic_int8'"),
    ("compress: {sparsities: [0.5, 1.2]}", "compress.sparsities[1]", "strictly between 0 and 1, got 1.2"),
    ("compress: {alpha: 1.5}", "compress.alpha", r"must be in \[0, 1\], got 1.5"),
    ("compress: {tempreature: 2}", "compress.tempreature", "unknown key 'tempreature' .did you mean 'temperature'"),
    ("compress: {methods: [onnx], distill_trials: 3}", "compress.distill_trials", "leaves distill out"),
    ("compress: {repeats: 2}", "compress.repeats", "whole number >= 3, got 2"),
])
def test_a_bad_block_exits_2_naming_the_field_and_creates_nothing(
        block: str, field: str, message: str, isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = isolated_cwd / "sweep.yaml"
    sweep.write_text(SWEEP + block + "\n", encoding="utf-8")
    for command in ("validate", "run"):
        assert main([command, str(sweep)]) == 2
        err = capsys.readouterr().err
        assert f"{sweep}: {field}: " in err, err
        assert re.search(message, err), err
    assert sorted(p.name for p in isolated_cwd.iterdir()) == ["sweep.yaml"]  # no store, no journal, no Ray folder


def test_a_block_on_a_custom_trainer_is_refused(isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = isolated_cwd / "sweep.yaml"
    custom = SWEEP.replace("task: digits,", "task: digits, model: 'mymodels:build',")
    sweep.write_text(custom + "compress: {}\n", encoding="utf-8")
    assert main(["validate", str(sweep)]) == 2
    assert "compress: the compression stage rebuilds the built-in tasks' models only" in capsys.readouterr().err


def test_the_block_compresses_the_winner_after_a_real_sweep(sweep_runner: Any, tmp_path: Path) -> None:
    done = sweep_runner(tmp_path, SWEEP + BLOCK)
    result = done.result()
    assert done.returncode == 0, done.stderr[-3000:]
    doc = result["compression"]
    # static_int8 applies to CNNs only: in a block it is skipped for the MLP winner (known only after the search)
    assert [v["name"] for v in doc["variants"]] == ["fp32", "dynamic_int8"]
    assert doc["source_run_id"] == result["best"]["run_id"] and doc["parent_run_id"] == result["parent_run_id"]
    assert doc["variants"][0]["metric"] == pytest.approx(result["best"]["metric"], abs=1e-6)
    assert doc["large_batch"] == 16 and doc["repeats"] == 3
    assert "compress: making the variants of trial run" in done.stderr
    mlflow = client(done.tracking_uri)
    for variant in doc["variants"]:
        tags = mlflow.get_run(variant["run_id"]).data.tags
        assert tags[schema.PARENT_RUN_ID] == result["parent_run_id"] and tags[schema.RUN_KIND] == "compress"
        assert tags[schema.COMPRESS_METHOD] == variant["method"]
    assert len(Store(done.tracking_uri).sweep(result["parent_run_id"]).trials) == 2  # the variants are no trials
