"""Compare: 2-6 trials of one sweep side by side; differing parameters highlighted, curves overlaid.

URL: ``/compare?sweep=<parent run id>&runs=<id>,<id>,...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard import _charts, _data  # noqa: E402
from tracker.queries import PARAM_PREFIX, SweepData  # noqa: E402

MIN_TRIALS, MAX_TRIALS = 2, 6
_DIFF_STYLE = "background-color: rgba(244, 162, 97, 0.35); font-weight: 600"


def pick(uri: str) -> tuple[SweepData, pd.DataFrame, list[str]]:
    data, trials = _data.choose_sweep(uri, "cmp_sweep", st.query_params.get("sweep"))
    labels = _data.trial_choices(trials)
    from_url = [r for r in (st.query_params.get("runs") or "").split(",") if r in labels]
    if not from_url:  # default: the best trials
        ranked = trials.sort_values("best", ascending=not data.maximize, na_position="last")
        from_url = list(ranked["run_id"][:MIN_TRIALS])
    chosen = st.multiselect(
        f"Trials ({MIN_TRIALS}-{MAX_TRIALS})", list(labels), default=from_url[:MAX_TRIALS],
        format_func=labels.__getitem__, max_selections=MAX_TRIALS, key="cmp_trials",
    )  # fmt: skip
    st.query_params.update({"sweep": data.run_id, "runs": ",".join(chosen)})
    return data, trials, chosen


def differences(data: SweepData, trials: pd.DataFrame, chosen: list[str]) -> None:
    rows = trials.set_index("run_id").loc[chosen]
    columns = [_data.trial_label(row | {"run_id": r}) for r, row in zip(chosen, rows.to_dict("records"), strict=True)]
    table = {
        "verdict": rows["verdict"].fillna("no verdict").tolist(),
        "state": rows["state"].tolist(),
        f"best {data.metric}": [_data.format_value(v) for v in rows["best"]],
        "epochs": [_data.format_value(v) for v in rows["epochs_run"]],
    }
    for name in data.param_names:
        table[name] = [_data.format_value(v) for v in rows[f"{PARAM_PREFIX}{name}"]]
    frame = pd.DataFrame(table, index=columns).T
    frame.index.name = "field"
    differs = frame.nunique(axis=1) > 1
    st.subheader("Side by side")
    st.caption(f"Highlighted: the {int(differs[data.param_names].sum())} parameters that differ.")
    styled = frame.style.apply(lambda row: [_DIFF_STYLE if differs[row.name] else "" for _ in row], axis=1)
    st.dataframe(styled, key="cmp_table")


def overlay(uri: str, data: SweepData, trials: pd.DataFrame, chosen: list[str]) -> None:
    st.subheader("Curves")
    rows = trials.set_index("run_id")
    labels = {r: _data.trial_label(rows.loc[r].to_dict() | {"run_id": r}) for r in chosen}
    kind = st.radio("Curves", ["loss", "accuracy"], horizontal=True, key="cmp_kind")
    histories = _data.curves_of(uri, data, chosen)
    if histories.empty:
        st.info("None of these trials logged an epoch.")
        return
    st.plotly_chart(_charts.learning_curves(histories, chosen, labels, kind), key="cmp_curves")


st.title("Compare trials")
store = _data.open_store()
sweep, sweep_trials, picked = pick(store.tracking_uri)
if len(picked) < MIN_TRIALS:
    st.info(f"Pick between {MIN_TRIALS} and {MAX_TRIALS} trials to compare.")
    st.stop()
differences(sweep, sweep_trials, picked)
overlay(store.tracking_uri, sweep, sweep_trials, picked)
for run_id in picked:
    label = _data.trial_label(sweep_trials.set_index("run_id").loc[run_id].to_dict() | {"run_id": run_id})
    _data.page_link("trial", f"Open {label}", icon=":material/monitoring:", run=run_id)
