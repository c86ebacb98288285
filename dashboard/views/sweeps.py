"""Sweeps: every sweep in the store with its method, trials by outcome, best metric and timing."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard import _data  # noqa: E402
from tracker.queries import StoreUnavailable  # noqa: E402

st.title("Sweeps")
store = _data.open_store()
try:
    sweeps = _data.list_sweeps(store.tracking_uri)
except StoreUnavailable as e:
    _data.store_unavailable(e, store.tracking_uri)

if sweeps.empty:
    st.info(
        "**No sweeps in this store yet.** Start one with `hpo run sweep.yaml`; it shows up here as soon "
        "as its first trial starts.",
        icon=":material/info:",
    )
    st.caption(f"Store: `{store.display_uri}`")
    st.stop()

query = st.text_input("Search by name", placeholder="sweep or experiment name", key="search")
shown = sweeps
if query:
    needle = query.strip().lower()
    shown = sweeps[
        sweeps["sweep"].astype(str).str.lower().str.contains(needle, regex=False)
        | sweeps["experiment"].astype(str).str.lower().str.contains(needle, regex=False)
    ]
st.caption(f"{len(shown)} of {len(sweeps)} sweeps · store `{store.display_uri}` · click a row to open it")
if shown.empty:
    st.warning(f"No sweep name contains “{query}”.")
    st.stop()

table = pd.DataFrame(
    {
        "sweep": shown["sweep"],
        "state": shown["state"],
        "method": shown["method"],
        "sampler": shown["sampler"],
        "metric": shown["metric"] + " (" + shown["goal"].fillna("?").str.replace("imize", "") + ")",
        "finished": shown["trials_finished"],
        "failed": shown["trials_failed"],
        "stopped": shown["trials_stopped"],
        "running": shown["trials_running"],
        "best": shown["best_metric"],
        "started": shown["start_time"].dt.tz_convert(None),
        "duration": shown["duration_s"].map(_data.format_duration),
        "open": "/sweep?run=" + shown["run_id"],
        "experiment": shown["experiment"],
    }
).reset_index(drop=True)
event = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="sweeps_table",
    column_config={
        "best": st.column_config.NumberColumn("best", format="%.4f"),
        "started": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm"),
        "open": st.column_config.LinkColumn("open", display_text="open ↗"),
    },
)
rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
if rows:
    _data.go("sweep", run=str(shown.iloc[rows[0]]["run_id"]))
