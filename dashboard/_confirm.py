"""Seed confirmation on the dashboard (``hpo.confirm``): the sweep page's section and the trial page's links.

For each confirmed configuration: mean, std and 95% interval over its fresh seeds (``confirmation.json``
on the sweep run), the verdict of Welch's test, and the mean learning curves with a +-1 std band, train
against validation, with the diagnosis of the mean curve (the one path, ``hpo.diagnosis``) drawn on.
Aggregation and figures are pure functions; ``section`` and ``trial_links`` render them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import _charts, _data
from hpo.diagnosis import diagnose_trial, task_classes, task_val_size
from tracker import schema
from tracker.queries import SweepData, TrialData

CURVE_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
_BAND = {"train": "rgba(69,123,157,0.18)", "val": "rgba(231,111,81,0.18)"}


# -- pure -------------------------------------------------------------------------------------------------
def mean_curves(histories: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """Per key and epoch: mean and std (n - 1) over ``run_ids`` and how many runs reached that epoch.

    Returns a long frame key, step, value (the mean), std, n; std is NaN where one run reached the epoch.
    """
    rows = histories[histories["run_id"].isin(list(run_ids)) & histories["key"].isin(CURVE_KEYS)]
    rows = rows.dropna(subset=["value"])
    if rows.empty:
        return pd.DataFrame(columns=["key", "step", "value", "std", "n"])
    grouped = rows.groupby(["key", "step"])["value"]
    out = pd.DataFrame({"value": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}).reset_index()
    return out.sort_values(["key", "step"], ignore_index=True)


def mean_diagnosis(mean: pd.DataFrame, params: Mapping[str, Any], task: str | None) -> dict[str, Any] | None:
    """The diagnosis of the mean curves, by the path every trial is diagnosed with."""
    curves: dict[str, list[float | None]] = {}
    for key, group in mean.groupby("key"):
        last = int(group["step"].max())
        values: list[float | None] = [None] * last
        for step, value in zip(group["step"], group["value"], strict=True):
            values[int(step) - 1] = float(value)
        curves[str(key)] = values
    # the validation size of one run: each mean point averages several runs' noise, so the confidence errs low
    found = diagnose_trial(curves, status="FINISHED", params=dict(params), n_classes=task_classes(task),
                           val_size=task_val_size(task, params))
    return None if found is None else found.to_dict()


def band_curve(mean: pd.DataFrame, kind: str, evidence: Mapping[str, Any], title: str) -> go.Figure:
    """Mean train/val ``kind`` curves with the diagnosis drawn on (``_charts.diagnosed_curve``) and a +-1 std band."""
    as_history = mean.assign(run_id="mean")[["run_id", "key", "step", "value"]]
    fig = _charts.diagnosed_curve(as_history, kind, evidence)
    for split in ("train", "val"):
        curve = mean[mean["key"] == f"{split}_{kind}"].dropna(subset=["std"])
        if curve.empty:
            continue
        upper, lower = curve["value"] + curve["std"], curve["value"] - curve["std"]
        fig.add_trace(go.Scatter(
            x=[*curve["step"], *curve["step"][::-1]], y=[*upper, *lower[::-1]], fill="toself",
            fillcolor=_BAND[split], line={"width": 0}, name=f"{split} {kind} ±1 std", hoverinfo="skip",
        ))  # fmt: skip
    fig.update_layout(title=title)
    return fig


def stats_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """One row per confirmed configuration, ranked by mean: search value, mean ± std, 95% interval (val, test)."""
    rows = []
    for c in doc["configs"]:
        row = {"rank": c["rank"], "trial": c["trial_number"], "search": c["search_value"],
               **_cells(c["val"], doc["metric"])}
        if doc.get("test_metric"):
            row.update(_cells(c["test"], doc["test_metric"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _cells(stats: Mapping[str, Any] | None, name: str) -> dict[str, str]:
    if stats is None:
        return {f"{name} mean ± std": "—", f"{name} 95% interval": "—", "seeds": "0"}
    std = "" if stats["std"] is None else f" ± {stats['std']:.4g}"
    interval = "—" if stats["low"] is None else f"[{stats['low']:.4g}, {stats['high']:.4g}]"
    return {f"{name} mean ± std": f"{stats['mean']:.4g}{std}", f"{name} 95% interval": interval,
            "seeds": str(stats["n"])}


# -- reads ------------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=16, ttl=_data.LIVE_REFRESH_S)
def load(uri: str, parent_run_id: str) -> tuple[dict[str, Any] | None, pd.DataFrame, pd.DataFrame]:
    """(confirmation.json or None, confirm runs, their histories) of a sweep."""
    store = _data.open_store()
    runs, histories = store.confirm_runs(parent_run_id)
    doc = None
    if not runs.empty:
        parent = store.trial(parent_run_id)  # the sweep run's tags and artifact location
        if parent.tags.get(schema.CONFIRM_STATE) == "done":
            doc = store.read_json_artifact(parent_run_id, schema.CONFIRM_ARTIFACT, parent.artifact_uri)
    return doc, runs, histories


# -- rendering --------------------------------------------------------------------------------------------
def section(uri: str, data: SweepData) -> None:
    """The sweep page's "Seed confirmation" section; nothing when the sweep has no confirm run."""
    with _data.reading(uri):
        doc, runs, histories = load(uri, data.run_id)
    if runs.empty:
        return
    st.subheader("Seed confirmation")
    if doc is None:
        st.info(f"{len(runs)} confirmation runs so far; the summary appears when they have all ended.")
        return
    st.markdown(f"**{doc['verdict']}**")
    st.caption(f"Top {len(doc['configs'])} configurations of the search, each trained again with "
               f"{doc['seeds_per_config']} fresh seeds; ranked by the mean {doc['metric']} over those seeds "
               "(the search's own run is left out: it was selected for being high).")
    if not doc.get("test_metric"):
        st.caption(f"Test: {doc.get('test_note') or 'the confirm runs hold no test metric'}.")
    st.dataframe(stats_table(doc), hide_index=True, key="confirm_table")
    labels = {c["run_id"]: f"trial {c['trial_number']} (rank {c['rank']})" for c in doc["configs"]}
    chosen = st.selectbox("Configuration", list(labels), format_func=labels.__getitem__, key="confirm_config")
    config = next(c for c in doc["configs"] if c["run_id"] == chosen)
    _mean_curves(histories, config, data.tags.get(schema.TASK))
    _data.page_link("trial", f"Open {labels[chosen]}", icon=":material/verified:", run=str(chosen))


def _mean_curves(histories: pd.DataFrame, config: Mapping[str, Any], task: str | None) -> None:
    mean = mean_curves(histories, config["runs"])
    if mean.empty:
        st.caption("Its confirmation runs logged no learning curves.")
        return
    diagnosis = mean_diagnosis(mean, config["params"], task)
    evidence = (diagnosis or {}).get("evidence") or {}
    if diagnosis:
        st.markdown(f"Diagnosis of the mean curve: **{diagnosis.get('verdict')}**. {diagnosis.get('summary') or ''}")
    n = len(config["runs"])
    left, right = st.columns(2)
    left.plotly_chart(band_curve(mean, "loss", evidence, f"Mean loss over {n} seeds (±1 std)"), key="confirm_loss")
    if mean["key"].isin(["train_accuracy", "val_accuracy"]).any():
        right.plotly_chart(band_curve(mean, "accuracy", evidence, f"Mean accuracy over {n} seeds (±1 std)"),
                           key="confirm_accuracy")


def trial_links(uri: str, trial: TrialData) -> None:
    """On a trial's page: its confirmation runs (with the statistics of its configuration), or, on a
    confirm run's page, the trial it confirms."""
    if trial.parent_run_id is None:
        return
    if trial.kind == schema.KIND_CONFIRM:
        confirms = trial.tags.get(schema.CONFIRMS)
        if confirms:
            st.caption(f"A confirmation run (seed {trial.tags.get(schema.CONFIRM_SEED, '?')}) of another trial's "
                       "configuration.")
            _data.page_link("trial", "Open the trial it confirms", icon=":material/arrow_back:", run=confirms)
        return
    with _data.reading(uri):
        doc, runs, _ = load(uri, trial.parent_run_id)
    mine = runs[runs["confirms"] == trial.run_id]
    if mine.empty:
        return
    st.subheader("Confirmation runs")
    config = next((c for c in (doc or {}).get("configs", []) if c["run_id"] == trial.run_id), None)
    if config is not None and config["val"] is not None:
        cells = _cells(config["val"], doc["metric"])  # type: ignore[index]
        st.markdown(f"Rank **{config['rank']}** of the confirmed configurations: {doc['metric']} "  # type: ignore[index]
                    f"{cells[doc['metric'] + ' mean ± std']} over {config['val']['n']} fresh seeds, "  # type: ignore[index]
                    f"95% interval {cells[doc['metric'] + ' 95% interval']}.")  # type: ignore[index]
    for row in mine.sort_values("seed").to_dict("records"):
        seed = "?" if pd.isna(row["seed"]) else int(row["seed"])
        _data.page_link("trial", f"seed {seed} · {str(row['status']).lower()}", icon=":material/replay:",
                        run=str(row["run_id"]))
