"""The Compression page, run by AppTest against a real MLflow store holding a sweep and its variants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from hpo.compress import Source, summary
from tracker import schema
from tracker.mlflow_log import SweepLogger, log_compress_variant, log_json_artifact, open_client
from trainers.compression.settings import CompressSettings

PAGE = Path(__file__).resolve().parents[2] / "dashboard" / "views" / "compress.py"


def _variant(name: str, method: str, metric: float, size: int, b1: float, b256: float,
             runtime: str = "torch") -> dict[str, Any]:
    timing = {"batch_1": {"batch": 1, "median_ms": b1, "p90_ms": b1 * 1.2, "throughput": 1e3 / b1},
              "batch_256": {"batch": 256, "median_ms": b256, "p90_ms": b256 * 1.1, "throughput": 256e3 / b256}}
    return {"name": name, "method": method, "runtime": runtime, "settings": {}, "metrics": {"val_accuracy": metric},
            "metric": metric, "params": 1000, "nonzero_params": 1000, "size_bytes": size, "latency": timing,
            "threads": 1, "files": ["model.pt"], "onnx_max_abs_diff": None, "note": ""}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(uri, compressed sweep run id, sweep run id without compression) in a real SQLite store."""
    root = tmp_path_factory.mktemp("compress-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = open_client(uri)
    ids = []
    for name in ("shrunk", "plain"):
        logger = SweepLogger.start(client, experiment=name, run_name=name, params={},
                                   artifact_location=str(root / "artifacts" / name),
                                   tags={schema.SWEEP: name, schema.METRIC: "val_accuracy", schema.GOAL: "maximize"})
        logger.finish_sweep("FINISHED", {schema.SWEEP_STATE: "finished"}, {})
        ids.append(logger.parent_run_id)
    variants = [_variant("fp32", "fp32", 0.97, 100_000, 0.08, 0.30),
                _variant("dynamic_int8", "dynamic_int8", 0.968, 30_000, 0.20, 0.40),
                _variant("prune_structured_0.5", "prune_structured", 0.965, 40_000, 0.06, 0.12),
                _variant("distill", "distill", 0.90, 10_000, 0.05, 0.08)]
    source = Source(ids[0], "trial-run", "shrunk", "digits", "val_accuracy", "maximize")
    doc = summary(source, "mlp", "val_accuracy", "maximize", CompressSettings(repeats=30), variants)
    for v in variants:
        log_compress_variant(client, ids[0], run_name=v["name"], tags={schema.COMPRESS_METHOD: v["method"]},
                             params={}, metrics={"val_accuracy": v["metric"]}, files=[])
    log_json_artifact(client, ids[0], doc, schema.COMPRESS_SUMMARY_ARTIFACT)
    return uri, ids[0], ids[1]


def _run(monkeypatch: pytest.MonkeyPatch, uri: str, sweep: str) -> AppTest:
    for name in ("MLFLOW_TRACKING_URI", "HPO_MLFLOW_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HPO_TRACKING_URI", uri)
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.query_params["sweep"] = sweep
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_shows_the_variants_table_pareto_scatters_and_batch_1_slowdowns(store: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    uri, shrunk, _ = store
    at = _run(monkeypatch, uri, shrunk)
    frame = next(f.value for f in at.dataframe if "variant" in f.value.columns)
    assert frame["variant"].tolist() == ["fp32", "dynamic_int8", "prune_structured_0.5", "distill"]
    row = frame.set_index("variant").loc["dynamic_int8"]
    assert row["size ×"] == pytest.approx(0.3) and row["Δ vs fp32"] == pytest.approx(-0.002)
    assert row["speed-up b1"] == pytest.approx(0.4)
    assert frame.set_index("variant").loc["dynamic_int8", "Pareto"] == "size"
    assert "Slower than fp32 at batch 1: **dynamic_int8**" in "\n".join(m.value for m in at.markdown)
    assert "no test split" in "\n".join(c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 2
    # the trial listing of the sweep does not count the variant runs as trials
    picker = at.selectbox(key="compress_sweep")
    assert picker.format_func(shrunk).startswith("shrunk")


def test_a_sweep_never_compressed_says_how_to_compress_it(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, _, plain = store
    at = _run(monkeypatch, uri, plain)
    assert "No compression results for sweep plain yet" in at.info[0].value
    assert "hpo compress plain" in at.info[0].value
    assert not at.dataframe
