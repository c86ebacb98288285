"""Compression: the variants ``hpo compress`` made of a sweep's winner, against accuracy, latency and size.

URL: ``/compress?sweep=<parent run id>``. Reads the sweep run's ``compression/summary.json`` (the
document ``hpo compress --json`` prints); the variants' own runs hold the same figures as metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard import _data  # noqa: E402
from tracker import schema  # noqa: E402

FP32 = "fp32"
_COLORS = {"front": "#e76f51", "other": "#8d99ae", "fp32": "#1d3557"}


@st.cache_data(ttl=10, show_spinner=False, max_entries=32)
def load_summary(uri: str, run_id: str, artifact_uri: str | None) -> dict[str, Any] | None:
    """The sweep's compression summary, or None when ``hpo compress`` never ran on it."""
    return _data.open_store().read_json_artifact(run_id, schema.COMPRESS_SUMMARY_ARTIFACT, artifact_uri)


def table(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per variant: metric, change, size and latency against the fp32 winner, Pareto fronts."""
    large = f"batch_{doc['large_batch']}"
    test = schema.test_metric(doc["metric"])  # scored once per variant when the data has a test split
    rows = []
    for v in doc["variants"]:
        rows.append({
            "variant": v["name"], "method": v["method"], "runtime": v["runtime"], doc["metric"]: v["metric"],
            "Δ vs fp32": v["delta_vs_fp32"], test: v["metrics"].get(test),
            "size kB": v["size_bytes"] / 1e3, "size ×": v["size_ratio"],
            "batch 1 ms": v["latency"]["batch_1"]["median_ms"], "speed-up b1": v["speedup_batch_1"],
            f"batch {doc['large_batch']} ms": v["latency"][large]["median_ms"],
            f"speed-up b{doc['large_batch']}": v[f"speedup_{large}"],
            "params": v["params"], "Pareto": ", ".join(v.get("pareto") or []),
        })  # fmt: skip
    return pd.DataFrame(rows)


def scatter(doc: dict[str, Any], cost: str) -> go.Figure:
    """Metric against ``cost`` (a Pareto front's key), the front joined by a line, fp32 drawn apart."""
    large = f"batch_{doc['large_batch']}"
    values = {
        "latency_batch_1": (lambda v: v["latency"]["batch_1"]["median_ms"], "latency at batch 1 (ms, median)"),
        "latency_large_batch": (lambda v: v["latency"][large]["median_ms"],
                                f"latency at batch {doc['large_batch']} (ms, median)"),
        "size": (lambda v: v["size_bytes"] / 1e3, "size on disk (kB)"),
    }
    x_of, title = values[cost]
    front = set(doc["pareto"][cost])
    fig = go.Figure()
    for group, members in (("other", [v for v in doc["variants"] if v["name"] not in front and v["name"] != FP32]),
                           ("front", [v for v in doc["variants"] if v["name"] in front and v["name"] != FP32])):
        fig.add_scatter(x=[x_of(v) for v in members], y=[v["metric"] for v in members], mode="markers+text",
                        text=[v["name"] for v in members], textposition="top center",
                        marker={"size": 11, "color": _COLORS[group]},
                        name="Pareto set" if group == "front" else "dominated")
    line = sorted((v for v in doc["variants"] if v["name"] in front), key=x_of)
    fig.add_scatter(x=[x_of(v) for v in line], y=[v["metric"] for v in line], mode="lines", showlegend=False,
                    line={"color": _COLORS["front"], "dash": "dot"})
    base = next(v for v in doc["variants"] if v["name"] == FP32)
    fig.add_scatter(x=[x_of(base)], y=[base["metric"]], mode="markers+text", text=["fp32 winner"],
                    textposition="bottom center", name="fp32 winner",
                    marker={"size": 16, "symbol": "star", "color": _COLORS["fp32"]})
    fig.update_layout(xaxis_title=title, yaxis_title=doc["metric"], margin={"l": 50, "r": 20, "t": 30, "b": 40},
                      height=420, legend={"orientation": "h"})
    if cost != "size":
        fig.update_xaxes(type="log")  # ONNX Runtime and PyTorch differ by an order of magnitude at batch 1
    return fig


def render(doc: dict[str, Any]) -> None:
    st.caption(
        f"{doc['model']} of trial run `{doc['source_run_id']}` · {doc['metric']} on the {doc['split']} split "
        f"({doc['test_split']}) · CPU, {doc['threads']} thread(s), median of {doc['repeats']} timed calls after "
        f"{doc['warmup']} warm-up"
    )
    slower = [v["name"] for v in doc["variants"][1:] if v["speedup_batch_1"] < 1]
    if slower:
        st.markdown(f"Slower than fp32 at batch 1: **{', '.join(slower)}**.")
    left, right = st.columns(2)
    with left:
        st.subheader(f"{doc['metric']} vs latency")
        batch = st.radio("Batch", ["batch 1", f"batch {doc['large_batch']}"], horizontal=True, key="compress_batch")
        cost = "latency_batch_1" if batch == "batch 1" else "latency_large_batch"
        st.plotly_chart(scatter(doc, cost), key="compress_latency")
    with right:
        st.subheader(f"{doc['metric']} vs size")
        st.plotly_chart(scatter(doc, "size"), key="compress_size")
    st.subheader("Variants")
    st.dataframe(table(doc), hide_index=True, key="compress_table")
    if doc.get("mlflow_model"):
        st.markdown(f"fp32 winner as an MLflow Model: `{doc['mlflow_model']}` "
                    f"(`mlflow models serve -m {doc['mlflow_model']} --env-manager local`)")


st.title("Compression")
store = _data.open_store()
sweep, _ = _data.choose_sweep(store.tracking_uri, "compress_sweep", st.query_params.get("sweep"))
st.query_params["sweep"] = sweep.run_id
summary = load_summary(store.tracking_uri, sweep.run_id, sweep.artifact_uri)
if summary is None:
    st.info(f"**No compression results for sweep {sweep.name} yet.** Make them with `hpo compress {sweep.name}`.",
            icon=":material/info:")
    st.stop()
render(summary)
