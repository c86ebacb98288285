"""Plotly figures of the dashboard; pure functions of frames from :mod:`tracker.queries`, no Streamlit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from tracker.queries import PARAM_PREFIX

STATE_COLORS = {"finished": "#2a9d8f", "stopped": "#e9c46a", "failed": "#e76f51", "running": "#457b9d"}
VERDICT_COLORS = {
    "good_fit": "#2a9d8f",
    "overfitting": "#e76f51",
    "underfitting": "#f4a261",
    "diverged": "#9d0208",
    "unstable": "#8338ec",
    "plateau": "#6c757d",
}
TRACE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_LAYOUT: dict[str, Any] = {"margin": {"l": 50, "r": 20, "t": 40, "b": 40}, "height": 380}


def best_so_far(trials: pd.DataFrame, metric: str, maximize: bool) -> go.Figure:
    """Each trial's best value by trial number, coloured by state, and the running best as a step line."""
    scored = trials[trials["best"].notna()].sort_values("trial_number")
    fig = go.Figure()
    for state, group in scored.groupby("state", sort=False):
        fig.add_trace(
            go.Scatter(
                x=group["trial_number"],
                y=group["best"],
                mode="markers",
                name=str(state),
                marker={"color": STATE_COLORS.get(str(state), "#888"), "size": 7},
                customdata=group[["run_id", "verdict"]].astype(str).to_numpy(),
                hovertemplate="trial %{x}<br>%{y:.4g}<br>%{customdata[1]}<extra></extra>",
            )
        )
    running = scored["best"].cummax() if maximize else scored["best"].cummin()
    fig.add_trace(
        go.Scatter(
            x=scored["trial_number"],
            y=running,
            mode="lines",
            line={"shape": "hv", "color": "#264653", "width": 2},
            name="best so far",
        )
    )
    fig.update_layout(title="Best so far", xaxis_title="trial number", yaxis_title=metric, **_LAYOUT)
    return fig


def parallel_coordinates(trials: pd.DataFrame, params: Sequence[str], metric: str, maximize: bool) -> go.Figure:
    """One line per scored trial across every parameter axis, ending at the metric, coloured by it."""
    scored = trials[trials["best"].notna()]
    dims = []
    for name in params:
        col = scored[f"{PARAM_PREFIX}{name}"]
        numeric = pd.to_numeric(col, errors="coerce")
        if numeric.notna().sum() == col.notna().sum() and col.notna().any():
            values = numeric
            if (values > 0).all() and values.max() / values.min() >= 100:  # log-spaced, e.g. lr
                dims.append({"label": f"log10 {name}", "values": np.log10(values)})
                continue
            dims.append({"label": name, "values": values.fillna(values.min())})
        else:  # categorical: one tick per value, "—" where the parameter was inactive
            labels = col.map(lambda v: "—" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
            cats = sorted(labels.unique())
            codes = labels.map({c: i for i, c in enumerate(cats)})
            dims.append({"label": name, "values": codes, "tickvals": list(range(len(cats))), "ticktext": cats})
    dims.append({"label": metric, "values": scored["best"]})
    line = {
        "color": scored["best"],
        "colorscale": "Viridis",
        "reversescale": not maximize,
        "showscale": True,
        "colorbar": {"title": metric},
    }
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    layout = {**_LAYOUT, "height": 440, "margin": {"l": 60, "r": 60, "t": 110, "b": 30}}
    fig.update_layout(title={"text": "Parameters against the metric", "y": 0.98}, **layout)
    return fig


def importance_bar(importances: Mapping[str, float]) -> go.Figure:
    """Horizontal bars of normalised parameter importances, most important on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            marker_color="#2a9d8f",
            text=[f"{v:.2f}" for _, v in items],
            textposition="auto",
        )
    )
    height = max(220, 40 * len(items) + 80)
    fig.update_layout(title="Parameter importance (fANOVA)", xaxis_title="importance", **{**_LAYOUT, "height": height})
    return fig


def learning_curves(
    histories: pd.DataFrame,
    run_ids: Sequence[str],
    labels: Mapping[str, str],
    kind: str = "loss",
    *,
    best_epoch: Mapping[str, int] | None = None,
) -> go.Figure:
    """Train (dashed) against validation (solid) ``kind`` curves of several runs, one colour per run.

    Args:
        histories: long frame run_id, key, step, value.
        run_ids: the runs to draw, in legend order.
        labels: run id -> legend label.
        kind: ``loss`` or ``accuracy`` (keys ``train_<kind>`` / ``val_<kind>``).
        best_epoch: run id -> epoch to mark (the validation optimum).
    """
    fig = go.Figure()
    wanted = histories[histories["run_id"].isin(list(run_ids))]
    for i, run_id in enumerate(run_ids):
        color = TRACE_COLORS[i % len(TRACE_COLORS)]
        rows = wanted[wanted["run_id"] == run_id]
        for split, dash in (("train", "dash"), ("val", "solid")):
            curve = rows[rows["key"] == f"{split}_{kind}"].sort_values("step")
            if curve.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=curve["step"],
                    y=curve["value"],
                    mode="lines+markers" if len(curve) < 30 else "lines",
                    name=f"{labels.get(run_id, run_id[:8])} {split}",
                    legendgroup=run_id,
                    line={"color": color, "dash": dash},
                    marker={"size": 5},
                )
            )
        epoch = (best_epoch or {}).get(run_id)
        if epoch is not None:
            fig.add_vline(x=epoch, line={"color": color, "dash": "dot", "width": 1})
    fig.update_layout(
        title=f"Learning curves ({kind}): train dashed, validation solid",
        xaxis_title="epoch",
        yaxis_title=kind,
        **_LAYOUT,
    )
    return fig


def diagnosed_curve(histories: pd.DataFrame, kind: str, evidence: Mapping[str, Any]) -> go.Figure:
    """One trial's train/val ``kind`` curves with the diagnosis drawn on: validation optimum and gap."""
    fig = go.Figure()
    curves = {}
    for split, color, dash in (("train", "#457b9d", "dash"), ("val", "#e76f51", "solid")):
        curve = histories[histories["key"] == f"{split}_{kind}"].sort_values("step")
        curves[split] = curve.set_index("step")["value"]
        if not curve.empty:
            fig.add_trace(
                go.Scatter(
                    x=curve["step"],
                    y=curve["value"],
                    mode="lines+markers",
                    name=f"{split} {kind}",
                    line={"color": color, "dash": dash},
                )  # fmt: skip
            )
    val = curves.get("val", pd.Series(dtype=float)).dropna()
    if not val.empty:
        # The diagnosis's own epoch when logged (it smooths the curve), else the raw optimum.
        logged = evidence.get("val_loss_min_epoch" if kind == "loss" else "val_accuracy_best_epoch")
        epoch = int(logged) if logged else int(val.idxmin() if kind == "loss" else val.idxmax())
        fig.add_vline(x=epoch, line={"color": "#264653", "dash": "dot"})
        fig.add_annotation(
            x=epoch, y=float(val.get(epoch, val.iloc[-1])), text=f"best val @ epoch {epoch}", showarrow=True,
            arrowhead=2, ay=-40,
        )  # fmt: skip
        train = curves.get("train", pd.Series(dtype=float)).dropna()
        last = int(val.index.max())
        if last in train.index:
            gap = float(val[last] - train[last])
            fig.add_shape(
                type="line", x0=last, x1=last, y0=float(train[last]), y1=float(val[last]),
                line={"color": "#9d0208", "width": 3},
            )  # fmt: skip
            fig.add_annotation(
                x=last, y=(float(train[last]) + float(val[last])) / 2, text=f"gap {gap:+.3g}",
                showarrow=False, xanchor="right", xshift=-6, font={"color": "#9d0208"},
            )  # fmt: skip
    fig.update_layout(title=f"{kind.capitalize()} per epoch", xaxis_title="epoch", yaxis_title=kind, **_LAYOUT)
    return fig


def signal_lines(histories: pd.DataFrame, keys: Sequence[str], title: str, *, log_y: bool) -> go.Figure:
    """One trial's training signals (``signals/*`` keys) per epoch, one line each, named without the prefix."""
    fig = go.Figure()
    for i, key in enumerate(keys):
        curve = histories[histories["key"] == key].sort_values("step")
        if curve.empty:
            continue
        fig.add_trace(go.Scatter(x=curve["step"], y=curve["value"], mode="lines+markers", name=key.split("/", 1)[-1],
                                 line={"color": TRACE_COLORS[i % len(TRACE_COLORS)]}))
    fig.update_layout(title=title, xaxis_title="epoch", **_LAYOUT)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def verdict_distribution(verdicts: pd.Series) -> go.Figure:
    """Bar chart of how many trials got each verdict (``no verdict`` where none is known)."""
    counts = verdicts.fillna("no verdict").value_counts()
    fig = go.Figure(
        go.Bar(
            x=counts.index.tolist(),
            y=counts.to_numpy(),
            marker_color=[VERDICT_COLORS.get(v, "#adb5bd") for v in counts.index],
            text=counts.to_numpy(),
            textposition="auto",
        )
    )
    fig.update_layout(title="Verdicts", yaxis_title="trials", **{**_LAYOUT, "height": 320})
    return fig


def slice_plot(trials: pd.DataFrame, param: str, metric: str) -> go.Figure:
    """The metric against one parameter; categorical parameters get a categorical axis."""
    scored = trials[trials["best"].notna() & trials[f"{PARAM_PREFIX}{param}"].notna()]
    x = scored[f"{PARAM_PREFIX}{param}"]
    numeric = pd.to_numeric(x, errors="coerce")
    fig = go.Figure(
        go.Scatter(
            x=numeric if numeric.notna().all() else x.astype(str),
            y=scored["best"],
            mode="markers",
            marker={
                "color": scored["trial_number"],
                "colorscale": "Blues",
                "showscale": True,
                "colorbar": {"title": "trial"},
                "size": 8,
            },  # fmt: skip
            text=scored["trial_number"].map(lambda n: f"trial {n}"),
        )
    )
    log = numeric.notna().all() and (numeric > 0).all() and numeric.max() / numeric.min() >= 100
    fig.update_layout(title=f"Slice: {metric} against {param}", xaxis_title=param, yaxis_title=metric, **_LAYOUT)
    if log:
        fig.update_xaxes(type="log")
    return fig


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials per state, every state present (zero where none)."""
    counts = trials["state"].value_counts()
    return {state: int(counts.get(state, 0)) for state in STATE_COLORS}
