"""`hpo compress`: variants of a real stored sweep's winner logged as child runs; bad input exits 2 creating nothing."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sweep_reads import client

from hpo.cli import main
from tracker import schema
from tracker.queries import Store

FAST = ["--finetune-epochs", "1", "--repeats", "3", "--threads", "1"]


def _copy_store(uri: str, folder: Path) -> str:
    """A private copy of the shared sweep's database (its artifact folder stays where it is)."""
    source = uri.removeprefix("sqlite:///")
    target = folder / "mlflow.db"
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def _run_count(uri: str) -> int:
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
        return int(db.execute("select count(*) from runs").fetchone()[0])


@pytest.fixture(scope="module")
def compressed(small_sweep_store: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Any]:
    """One `hpo compress PARENT --json` on a copy of the small digits sweep; (uri, JSON document, sweep)."""
    uri = _copy_store(small_sweep_store.tracking_uri, tmp_path_factory.mktemp("compress_store"))
    capture = tmp_path_factory.mktemp("compress_out") / "stdout.json"
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        code = main(["compress", small_sweep_store.parent_run_id, "--tracking-uri", uri, "--json", "--methods",
                     "dynamic_int8", "prune_global", "prune_structured", "distill", "onnx", "--sparsities", "0.5",
                     "--distill-epochs", "2", "--distill-trials", "2", "--max-drop", "0.05", *FAST])
    assert code == 0
    return uri, json.loads(capture.read_text()), small_sweep_store


def test_every_variant_is_measured_against_fp32_on_the_validation_split(compressed: Any) -> None:
    _, doc, sweep = compressed
    names = [v["name"] for v in doc["variants"]]
    assert names[:5] == ["fp32", "dynamic_int8", "prune_global_0.5", "prune_structured_0.5", "distill"]
    assert names[5] == "onnx_fp32" and len(names) == 7 and names[6].startswith("onnx_")
    assert doc["metric"] == "val_accuracy" and doc["split"] == "validation"
    assert doc["test_split"] == "test split scored once per variant"
    assert doc["source_run_id"] == sweep.result_json["best"]["run_id"]
    fp32 = doc["variants"][0]
    # the fp32 baseline is the winner's checkpoint: its test figures are the ones the sweep scored once
    winner_test = sweep.result_json["best"]["test"]
    assert fp32["metrics"]["test_accuracy"] == pytest.approx(winner_test["test_accuracy"], abs=1e-6)
    assert fp32["metrics"]["test_loss"] == pytest.approx(winner_test["test_loss"], rel=1e-4)
    assert fp32["delta_vs_fp32"] == 0 and fp32["size_ratio"] == 1
    assert fp32["metric"] == pytest.approx(sweep.result_json["best"]["metric"], abs=1e-6)
    for v in doc["variants"]:
        assert v["params"] > 0 and v["size_bytes"] > 0 and v["threads"] == 1 and v["run_id"]
        assert set(v["latency"]) == {"batch_1", "batch_256"}
        assert 0 <= v["metrics"]["test_accuracy"] <= 1 and "val_accuracy" in v["metrics"]
        assert v["delta_vs_fp32"] == pytest.approx(v["metric"] - fp32["metric"])
    assert doc["variants"][1]["size_ratio"] < 0.7  # int8 weights of a 32-wide MLP (biases stay fp32)
    assert doc["variants"][3]["params"] < fp32["params"]  # structured pruning really shrank the layers
    assert doc["variants"][5]["onnx_max_abs_diff"] < 1e-4
    assert set(doc["pareto"]) == {"latency_batch_1", "latency_large_batch", "size"}
    for front in doc["pareto"].values():
        assert front and set(front) <= set(names)


def test_variants_are_child_runs_with_their_files_and_trial_listings_skip_them(compressed: Any) -> None:
    uri, doc, sweep = compressed
    mlflow = client(uri)
    for v in doc["variants"]:
        run = mlflow.get_run(v["run_id"])
        tags = run.data.tags
        assert tags[schema.PARENT_RUN_ID] == sweep.parent_run_id
        assert tags[schema.RUN_KIND] == "compress" and tags[schema.COMPRESS_METHOD] == v["method"]
        assert tags[schema.COMPRESS_SOURCE_RUN] == doc["source_run_id"]
        assert run.data.metrics["size_bytes"] == v["size_bytes"]
        assert run.data.metrics[doc["metric"]] == pytest.approx(v["metric"])
        files = {a.path for a in mlflow.list_artifacts(v["run_id"], "variant")}
        assert files == {"variant/model.onnx" if v["runtime"] == "onnxruntime" else "variant/model.pt"}
        assert (schema.COMPRESS_PARETO in tags) == bool(v["pareto"])
    trials = Store(uri).sweep(sweep.parent_run_id).trials
    assert len(trials) == 6 and set(trials["run_id"]).isdisjoint(v["run_id"] for v in doc["variants"])


def test_the_distillation_sweep_keeps_its_best_student_and_logs_each_under_the_distill_run(compressed: Any) -> None:
    uri, doc, sweep = compressed
    distill = next(v for v in doc["variants"] if v["name"] == "distill")
    trials = distill["distill_trials"]
    assert [t["number"] for t in trials] == [0, 1]
    assert (trials[0]["temperature"], trials[0]["alpha"]) == (4.0, 0.7)  # the given settings come first
    assert (trials[1]["temperature"], trials[1]["alpha"]) != (4.0, 0.7)  # then the sampler's proposal
    best = max(trials, key=lambda t: t["metric"])  # ties keep the earlier trial, as max does
    assert [t["selected"] for t in trials] == [t is best for t in trials]
    assert distill["settings"]["selected_trial"] == best["number"]
    assert (distill["settings"]["temperature"], distill["settings"]["alpha"]) == (best["temperature"], best["alpha"])
    assert distill["metric"] == pytest.approx(best["metric"])  # the kept student is the variant measured
    mlflow = client(uri)
    runs = mlflow.search_runs([mlflow.get_run(sweep.parent_run_id).info.experiment_id],
                              filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{distill['run_id']}'")
    assert sorted(r.data.tags[schema.COMPRESS_DISTILL_TRIAL] for r in runs) == ["0", "1"]
    for run in runs:
        trial = trials[int(run.data.tags[schema.COMPRESS_DISTILL_TRIAL])]
        assert run.data.tags[schema.RUN_KIND] == "compress" and run.data.tags[schema.COMPRESS_METHOD] == "distill"
        assert run.data.tags[schema.COMPRESS_SELECTED] == ("true" if trial["selected"] else "false")
        assert float(run.data.params["temperature"]) == pytest.approx(trial["temperature"])
        assert run.data.metrics[doc["metric"]] == pytest.approx(trial["metric"])


def test_stored_variants_load_without_pickle_trust_and_the_fp32_model_serves(compressed: Any, tmp_path: Path) -> None:
    uri, doc, _ = compressed
    import torch

    from trainers.compression.artifact import load_variant
    from trainers.tasks import load_task

    mlflow = client(uri)
    x = load_task("digits", {}).x_val[:16]
    outputs = {}
    for v in doc["variants"]:
        if v["runtime"] == "torch":
            path = mlflow.download_artifacts(v["run_id"], "variant/model.pt", str(tmp_path / v["name"]))
            with torch.inference_mode():
                outputs[v["name"]] = load_variant(path)(x)
    assert (outputs["dynamic_int8"].argmax(1) == outputs["fp32"].argmax(1)).float().mean() >= 0.9
    fp32_run = doc["variants"][0]["run_id"]
    assert doc["mlflow_model"] == f"runs:/{fp32_run}/mlflow_model"
    local = mlflow.download_artifacts(fp32_run, "mlflow_model", str(tmp_path / "served"))
    served = mlflow_pyfunc_predict(local, x.numpy())
    np.testing.assert_allclose(served, outputs["fp32"].numpy(), atol=1e-5)
    summary = json.loads(Path(mlflow.download_artifacts(doc["parent_run_id"], schema.COMPRESS_SUMMARY_ARTIFACT,
                                                        str(tmp_path / "summary"))).read_text())
    assert [v["name"] for v in summary["variants"]] == [v["name"] for v in doc["variants"]]


def mlflow_pyfunc_predict(model_dir: str, x: np.ndarray) -> np.ndarray:
    """What `mlflow models serve` runs: the pyfunc flavour of the logged model."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_dir)
    assert model.metadata.get_input_schema() is not None  # a signature was logged
    return np.asarray(model.predict(x))


# -- bad input: exit 2, the field named, nothing created -----------------------------------------------
@pytest.mark.parametrize(("args", "field", "message"), [
    (["--methods", "dynamic_int8", "int4"], "--methods (methods)", "unknown method 'int4'"),
    (["--sparsities", "0.5", "1.5"], "--sparsities (sparsities[1])", "strictly between 0 and 1, got 1.5"),
    (["--sparsities", "0"], "--sparsities (sparsities[0])", "strictly between 0 and 1, got 0.0"),
    (["--alpha", "2"], "--alpha (alpha)", r"\[0, 1\]"),
])
def test_bad_settings_exit_2_before_the_store_is_touched(
        args: list[str], field: str, message: str, isolated_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", "anything", *args]) == 2
    err = capsys.readouterr().err
    assert f"hpo compress: {field}:" in err
    assert re.search(message, err)
    assert not (isolated_cwd / "hpo_home").exists()


def test_unknown_sweep_or_run_and_a_trial_without_checkpoint_exit_2_creating_no_run(
        small_sweep_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = _copy_store(small_sweep_store.tracking_uri, tmp_path)
    before = _run_count(uri)
    assert main(["compress", "no-such-sweep", "--tracking-uri", uri]) == 2
    assert "NAME|RUN_ID: no sweep named 'no-such-sweep' and no run with that id" in capsys.readouterr().err
    other = next(t["run_id"] for t in small_sweep_store.result_json["trials"]
                 if t["run_id"] != small_sweep_store.result_json["best"]["run_id"])
    assert main(["compress", other, "--tracking-uri", uri]) == 2
    assert "without a checkpoint: only the sweep's best trial" in capsys.readouterr().err
    assert main(["compress", small_sweep_store.parent_run_id, "--tracking-uri", uri, "--methods", "static_int8"]) == 2
    assert "--methods: method static_int8 applies to models cnn; the winner is a mlp" in capsys.readouterr().err
    assert _run_count(uri) == before


def test_a_store_that_does_not_exist_is_an_input_error_and_is_not_created(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none" / "mlflow.db"
    assert main(["compress", "small", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()
