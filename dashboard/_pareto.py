"""The sweep page's section for a multi-objective sweep: Pareto scatter with the front drawn, the front
as a table, hypervolume against trial number, and parameter importance per objective.

Figures are pure functions of the frame ``_analysis.pareto_frame`` builds; ``section`` renders them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import _analysis, _charts, _data
from tracker.queries import PARAM_PREFIX, SweepData

_LAYOUT: dict[str, Any] = {"margin": {"l": 50, "r": 20, "t": 40, "b": 40}, "height": 400}


def pareto_scatter(frame: pd.DataFrame, x: tuple[str, str], y: tuple[str, str], step: bool) -> go.Figure:
    """Every scored trial as a point (front members highlighted); with ``step`` (two objectives) the
    front joined as a staircase, the boundary of what the sweep found."""
    fig = go.Figure()
    for on_front, group in frame.groupby("pareto", sort=False):
        fig.add_trace(go.Scatter(
            x=group[x[0]], y=group[y[0]], mode="markers", name="Pareto front" if on_front else "dominated",
            marker={"size": 10 if on_front else 7, "color": "#e76f51" if on_front else "#8d99ae"},
            text=[f"trial {n}" for n in group["trial_number"]],
            hovertemplate="%{text}<br>" + x[0] + " %{x:.4g}<br>" + y[0] + " %{y:.4g}<extra></extra>",
        ))  # fmt: skip
    front = frame[frame["pareto"]].sort_values(x[0], ascending=x[1] == "minimize")
    if step and len(front) > 1:
        fig.add_trace(go.Scatter(x=front[x[0]], y=front[y[0]], mode="lines", name="front",
                                 line={"shape": "hv", "color": "#e76f51", "width": 2}))
    fig.update_layout(title="Pareto front", xaxis_title=f"{x[0]} ({x[1]})", yaxis_title=f"{y[0]} ({y[1]})",
                      **_LAYOUT)
    return fig


def hypervolume_chart(frame: pd.DataFrame) -> go.Figure:
    """Hypervolume of the trials up to each trial number: how fast the search pushed the front out."""
    fig = go.Figure(go.Scatter(x=frame["trial_number"], y=frame["hypervolume"], mode="lines+markers",
                               line={"shape": "hv", "color": "#264653"}, name="hypervolume"))
    fig.update_layout(title="Hypervolume", xaxis_title="trial number", yaxis_title="hypervolume", **_LAYOUT)
    return fig


def section(uri: str, data: SweepData, trials: pd.DataFrame, objectives: list[tuple[str, str]],
            fingerprint: str) -> None:
    """The Pareto section of the sweep page (objectives from the sweep's ``hpo.objectives`` tag)."""
    st.subheader("Pareto front")
    names = [n for n, _ in objectives]
    st.caption(
        "Objectives: " + ", ".join(f"{g} {n}" for n, g in objectives) + ". Each trial's values are those of "
        f"its best epoch by {names[0]} (what the searcher was told); the front is the trials no other trial "
        "beats on every objective. Hypervolume is measured against the worst value observed per objective "
        "plus 10% of its range."
    )
    frame = _analysis.pareto_frame(_data.curves_of(uri, data, unfailed(trials)), trials, objectives)
    if frame.empty:
        st.info("No trial has reported every objective yet.")
        return
    goals = dict(objectives)
    left, right = st.columns([3, 2])
    with left:
        y_name, x_name = names[0], names[1]
        if len(names) > 2:
            c1, c2 = st.columns(2)
            y_name = c1.selectbox("y", names, index=0, key="pareto_y")
            x_name = c2.selectbox("x", [n for n in names if n != y_name], index=0, key="pareto_x")
        st.plotly_chart(pareto_scatter(frame, (x_name, goals[x_name]), (y_name, goals[y_name]), len(names) == 2),
                        key="pareto_scatter")
    with right:
        st.plotly_chart(hypervolume_chart(frame), key="hypervolume")
    members = frame[frame["pareto"]]
    params = [c for c in trials.columns if c.startswith(PARAM_PREFIX)]
    table = members[["trial_number", *names]].merge(trials[["trial_number", *params]], on="trial_number")
    table = table.rename(columns={c: c[len(PARAM_PREFIX):] for c in params})
    table = table.sort_values(names[0], ascending=goals[names[0]] == "minimize")
    st.markdown(f"**{len(members)} of {len(frame)} trials on the front**")
    st.dataframe(table, hide_index=True, key="pareto_table")
    _importance(uri, data.run_id, fingerprint, objectives)


@st.cache_data(show_spinner="Fitting parameter importance per objective…", max_entries=16)
def _ranked(uri: str, run_id: str, fingerprint: str, objectives: tuple[tuple[str, str], ...]
            ) -> dict[str, dict[str, float] | str]:
    """fANOVA per objective, once per state of the sweep (a live page reruns every few seconds)."""
    data, trials = _data.load_sweep(uri, run_id, fingerprint)
    frame = _analysis.pareto_frame(_data.curves_of(uri, data, unfailed(trials)), trials, list(objectives))
    return _analysis.objective_importances(trials, frame, list(objectives))


def unfailed(trials: pd.DataFrame) -> list[str]:
    """The trials a front is drawn from: all but the failed ones."""
    return trials.loc[trials["state"] != "failed", "run_id"].tolist()


def _importance(uri: str, run_id: str, fingerprint: str, objectives: list[tuple[str, str]]) -> None:
    st.markdown("**Parameter importance per objective**")
    ranked = _ranked(uri, run_id, fingerprint, tuple(objectives))
    tabs = st.tabs([n for n, _ in objectives])
    for tab, (name, result) in zip(tabs, ranked.items(), strict=True):
        if isinstance(result, str):
            tab.info(result)
        else:
            tab.plotly_chart(_charts.importance_bar(result), key=f"importance_{name}")
