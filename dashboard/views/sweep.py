"""Sweep: which trials won, which parameters mattered, how the search progressed, why trials misfit.

URL: ``/sweep?run=<parent run id>`` (or ``?sweep=<name>`` for the latest sweep of that name).
While the sweep's state tag is ``running`` the body refreshes itself every few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402
from streamlit.delta_generator import DeltaGenerator  # noqa: E402

from dashboard import _analysis, _charts, _confirm, _data, _pareto  # noqa: E402
from tracker.queries import PARAM_PREFIX, RunNotFound, StoreUnavailable, SweepData  # noqa: E402

NO_VERDICT = "no verdict"
ANALYSIS_AUTO_TRIALS = 300  # above this many scored trials, importance and the contour wait to be asked


def pick_sweep(store_uri: str) -> str:
    """The parent run id from the URL, or from a picker of every sweep when the URL names none."""
    run_id = st.query_params.get("run")
    name = st.query_params.get("sweep")
    if run_id:
        return run_id
    with _data.reading(store_uri):
        sweeps = _data.list_sweeps(store_uri)
    if name:
        match = sweeps[sweeps["sweep"] == name]
        if match.empty:
            st.warning(f"No sweep named “{name}” in this store.", icon=":material/search_off:")
            _data.page_link("sweeps", "All sweeps", icon=":material/view_list:")
            st.stop()
        return str(match.iloc[0]["run_id"])
    if sweeps.empty:
        st.info("**No sweeps in this store yet.** Start one with `hpo run sweep.yaml`.", icon=":material/info:")
        st.stop()
    labels = {
        r.run_id: f"{r.sweep} · {r.state} · {r.start_time:%Y-%m-%d %H:%M}" for r in sweeps.itertuples(index=False)
    }
    run_id = st.selectbox("Sweep", list(labels), format_func=labels.__getitem__, key="sweep_pick")
    st.query_params["run"] = run_id
    return str(run_id)


def load(store_uri: str, run_id: str) -> tuple[SweepData, pd.DataFrame, str]:
    store = _data.open_store()
    try:
        fingerprint = _data.fingerprint(store, run_id)
        data, trials = _data.load_sweep(store_uri, run_id, fingerprint)
    except RunNotFound as e:
        _data.run_not_found(e)
    except StoreUnavailable as e:
        _data.store_unavailable(e, store_uri)
    return data, trials, fingerprint


def header(data: SweepData, trials: pd.DataFrame) -> None:
    st.title(f"Sweep {data.name}")
    started = f"{data.start_time:%Y-%m-%d %H:%M} UTC" if data.start_time is not None else "—"
    st.caption(
        f"**{data.state}** · method {data.method or '—'} · sampler {data.sampler or '—'} · "
        f"{data.goal or '?'} {data.metric or '?'} · experiment {data.experiment} · started {started}"
    )
    if data.state == "crashed":  # tracker.liveness: tagged running, but its driver is gone
        st.warning(f"The driver of this sweep is gone. Continue it with `hpo resume {data.name}`: "
                   "trials that ended are kept, the ones in flight run again.")
    counts = _charts.status_counts(trials)
    best = data.best_trial
    cols = st.columns(5)
    cols[0].metric(f"Best {data.metric}", _data.format_value(None if best is None else float(best["best"])))
    for col, state in zip(cols[1:], ("finished", "failed", "stopped", "running"), strict=True):
        col.metric(state.capitalize(), counts[state])
    if best is not None:
        st.markdown(
            f"Best **{data.metric} = {best['best']:.4f}** in **{_data.trial_label(best)}** "
            f"({best['verdict'] if isinstance(best['verdict'], str) else NO_VERDICT})."
        )
        _data.page_link("trial", f"Open {_data.trial_label(best)}", icon=":material/trophy:", run=str(best["run_id"]))
    total = len(trials)
    if total == 0:
        st.info(
            "This sweep has no trials yet. They appear here as soon as they start.", icon=":material/hourglass_empty:"
        )
        return
    if counts["failed"] == total:
        first_error = next((e for e in trials["error"] if isinstance(e, str) and e), "no error text was logged")
        st.error(
            f"**All {total} trials failed**, so there is nothing to rank or plot yet. First error: "
            f"`{first_error}`. Fix it and rerun the sweep; each trial's full error is in the table below.",
            icon=":material/error:",
        )


def leaderboard(data: SweepData, trials: pd.DataFrame) -> None:
    st.subheader("Leaderboard")
    verdicts = trials["verdict"].fillna(NO_VERDICT)
    left, right = st.columns(2)
    states = sorted(trials["state"].unique())
    chosen_states = left.multiselect("Status", states, default=states, key="lb_status")
    options = sorted(verdicts.unique())
    chosen_verdicts = right.multiselect("Verdict", options, default=options, key="lb_verdict")
    shown = trials[trials["state"].isin(chosen_states) & verdicts.isin(chosen_verdicts)]
    shown = shown.sort_values("best", ascending=not data.maximize, na_position="last")
    metric = data.metric or "metric"
    columns = {
        "trial": shown["trial_number"].astype("Int64"),
        "state": shown["state"],
        "verdict": shown["verdict"].fillna(NO_VERDICT),
        "confidence": shown["confidence"],
        metric: shown["best"],
        "final": final_texts(shown, latest_values(data.histories, metric, shown)),
        "epochs": epochs_texts(shown),
        "duration": shown["duration_s"].map(_data.format_duration),
    }
    for name in data.param_names:
        if name == "epochs":  # the configured epochs: shown in the epochs column where they differ
            continue
        # a parameter named like one of our columns must not replace it (it did: "epochs" showed 15)
        columns[f"{name} (param)" if name in columns else name] = shown[f"{PARAM_PREFIX}{name}"]
    columns["error"] = shown["error"].fillna("")
    columns["open"] = "/trial?run=" + shown["run_id"]
    table = pd.DataFrame(columns).reset_index(drop=True)
    config = {
        metric: st.column_config.NumberColumn(f"best {metric}", format="%.4f"),
        "final": st.column_config.TextColumn(
            "final", help=f"{metric} at the last epoch; “(latest)”: the trial has not finished, its value so far"
        ),
        "epochs": st.column_config.TextColumn(
            "epochs", help="epochs run; “4 of 15”: stopped (or still running) before the configured 15"
        ),
        "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.2f"),
        "open": st.column_config.LinkColumn("open", display_text="trial ↗"),
    }
    st.caption(f"{len(table)} of {len(trials)} trials · sorted by {metric} ({data.goal}) · click a row to open it")
    event = st.dataframe(
        table, hide_index=True, column_config=config, on_select="rerun", selection_mode="single-row",
        key="leaderboard",
    )  # fmt: skip
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if rows:
        _data.go("trial", run=str(shown.iloc[rows[0]]["run_id"]))


def latest_values(histories: pd.DataFrame, metric: str, trials: pd.DataFrame) -> pd.Series:
    """Each trial's last finite value of ``metric`` (by epoch) where its curve was read, else the store's latest
    value (the sweep page reads the curves of a few trials only), indexed by run id."""
    stored = pd.Series(trials["latest"].to_numpy(), index=trials["run_id"].to_numpy())
    points = histories[histories["key"] == metric].dropna(subset=["value"])
    if points.empty:
        return stored
    read = points.sort_values("step").groupby("run_id", observed=True)["value"].last()
    return read.reindex(stored.index).fillna(stored)


def final_texts(trials: pd.DataFrame, latest: pd.Series) -> pd.Series:
    """The final value of the metric; a trial without one (still running) shows its latest value, marked
    “(latest)”, or a dash when it has logged none (an empty cell read ``None``)."""

    def text(run_id: str, final: float) -> str:
        if pd.notna(final):
            return f"{final:.4f}"
        so_far = latest.get(run_id)
        return "—" if so_far is None or pd.isna(so_far) else f"{so_far:.4f} (latest)"

    return pd.Series([text(r, f) for r, f in zip(trials["run_id"], trials["final"], strict=True)], index=trials.index)


def epochs_texts(trials: pd.DataFrame) -> pd.Series:
    """Epochs run, with the configured count where the trial ran fewer (“4 of 15”: stopped early)."""
    configured = trials.get(f"{PARAM_PREFIX}epochs", pd.Series(None, index=trials.index, dtype=object))

    def text(ran: float, planned: object) -> str:
        if pd.isna(ran):
            return "—"
        planned_n = pd.to_numeric(planned, errors="coerce")
        if pd.notna(planned_n) and int(planned_n) != int(ran):
            return f"{int(ran)} of {int(planned_n)}"
        return str(int(ran))

    return pd.Series([text(r, p) for r, p in zip(trials["epochs_run"], configured, strict=True)], index=trials.index)


def progress(uri: str, data: SweepData, trials: pd.DataFrame, fingerprint: str) -> None:
    scored = trials["best"].notna().any()
    left, right = st.columns([3, 2])
    with left:
        if scored:
            best = _data.figure(uri, data.run_id, fingerprint, "best_so_far", (),
                                lambda: _charts.best_so_far(trials, data.metric or "metric", data.maximize))
            st.plotly_chart(best, key="best_so_far")
        else:
            st.info("No trial has reported the metric yet.")
    with right:
        verdicts = _data.figure(uri, data.run_id, fingerprint, "verdicts", (),
                                lambda: _charts.verdict_distribution(trials["verdict"]))
        st.plotly_chart(verdicts, key="verdicts")


def parameters(uri: str, data: SweepData, trials: pd.DataFrame, fingerprint: str) -> None:
    st.subheader("Parameters")
    names = data.param_names
    if not names or trials["best"].notna().sum() < 2:
        st.info("Parameter plots need at least two trials with a value of the metric.")
        return
    metric = data.metric or "metric"
    tabs = st.tabs(["Parallel coordinates", "Importance", "Slice", "Contour"])
    with tabs[0]:
        coordinates = _data.figure(uri, data.run_id, fingerprint, "parcoords", (),
                                   lambda: _charts.parallel_coordinates(trials, names, metric, data.maximize))
        st.plotly_chart(coordinates, key="parcoords")
    try:
        ranked = _data.importances(uri, data.run_id, fingerprint) if asked(data, trials, tabs[1], "importance") else {}
    except _analysis.AnalysisUnavailable as e:
        tabs[1].info(str(e))
        ranked = {}
    if ranked:
        tabs[1].plotly_chart(_charts.importance_bar(ranked), key="importance")
        unrated = [n for n in names if n not in ranked]
        if unrated:
            tabs[1].caption(
                "Not rated (inactive in some trials, or constant): " + ", ".join(unrated) + ". Optuna rates "
                "the parameters every scored trial has."
            )
    order = list(ranked) + [n for n in names if n not in ranked]
    with tabs[2]:
        param = st.selectbox("Parameter", order, key="slice_param")
        st.plotly_chart(_data.figure(uri, data.run_id, fingerprint, "slice", (param,),
                                     lambda: _charts.slice_plot(trials, param, metric)), key="slice")
    with tabs[3]:
        if asked(data, trials, tabs[3], "contour"):
            contour(uri, data, fingerprint, order, metric)


def contour(uri: str, data: SweepData, fingerprint: str, order: list[str], metric: str) -> None:
    try:
        _, in_study = _data.study(uri, data.run_id, fingerprint)
    except _analysis.AnalysisUnavailable:
        in_study = []
    numeric = [n for n in order if n in in_study]
    if len(numeric) < 2:
        st.info("A contour needs two parameters present in every scored trial.")
        return
    c1, c2 = st.columns(2)
    x = c1.selectbox("x", numeric, index=0, key="contour_x")
    y = c2.selectbox("y", [n for n in numeric if n != x], index=0, key="contour_y")
    st.plotly_chart(_data.contour(uri, data.run_id, fingerprint, x, y, metric), key="contour")


_ON_REQUEST = {
    "importance": ("Parameter importance (fANOVA over {n} trials) takes a few seconds at this size, so it is "
                   "computed when asked; the page does not wait for it.", "Compute parameter importance",
                   ":material/insights:"),
    "contour": ("Optuna's contour over {n} trials takes a few seconds at this size, so it is drawn when asked; "
                "the page does not wait for it.", "Draw the contour", ":material/layers:"),
}  # fmt: skip


def asked(data: SweepData, trials: pd.DataFrame, where: DeltaGenerator, analysis: str) -> bool:
    """Whether to run ``analysis`` (importance or contour) on this run of the page: at once for a sweep of up
    to ``ANALYSIS_AUTO_TRIALS`` scored trials; for a larger one (they take seconds there, Optuna's plotting
    imports included) once asked, then on every rerun (the results are cached per sweep state)."""
    scored = int(trials["best"].notna().sum())
    key = f"{analysis}_asked_{data.run_id}"
    if scored <= ANALYSIS_AUTO_TRIALS or st.session_state.get(key):
        return True
    caption, label, icon = _ON_REQUEST[analysis]
    where.caption(caption.format(n=scored))
    if where.button(label, key=f"{analysis}_compute", icon=icon):
        st.session_state[key] = True
        return True
    return False


def curves(uri: str, data: SweepData, trials: pd.DataFrame, fingerprint: str) -> None:
    st.subheader("Learning curves")
    logged = trials["epochs_run"].fillna(0).gt(0) | trials["run_id"].isin(data.histories["run_id"].unique())
    with_curves = trials[logged]
    if with_curves.empty:
        st.info("No trial has logged an epoch yet.")
        return
    ranked = with_curves.sort_values("best", ascending=not data.maximize, na_position="last")
    rows = ranked[["run_id", "trial_number", "name"]].to_dict("records")  # what a label needs, not 30 columns
    labels = {row["run_id"]: _data.trial_label(row) for row in rows}
    default = list(ranked["run_id"][:3]) + list(with_curves.loc[with_curves["state"] == "running", "run_id"])
    left, right = st.columns([4, 1])
    chosen = left.multiselect(
        "Trials", list(labels), default=list(dict.fromkeys(default))[:6], format_func=labels.__getitem__,
        key="curve_trials",
    )  # fmt: skip
    kind = right.radio("Curves", ["loss", "accuracy"], horizontal=True, key="curve_kind")
    if not chosen:
        st.caption("Pick trials to overlay their curves.")
        return

    def draw() -> Any:  # on a cache miss only: the curves read (or looked up) and the best epochs found then
        histories = _data.curves_of(uri, data, chosen)
        return _charts.learning_curves(histories, chosen, labels, kind, best_epoch=_best_val_epochs(histories, chosen))

    st.plotly_chart(_data.figure(uri, data.run_id, fingerprint, "curves", (tuple(chosen), kind), draw), key="curves")
    if 2 <= len(chosen) <= 6:
        _data.page_link("compare", "Compare these trials side by side", icon=":material/compare:", sweep=data.run_id,
                        runs=",".join(chosen))  # fmt: skip


def _best_val_epochs(histories: pd.DataFrame, run_ids: list[str]) -> dict[str, int]:
    val = histories[(histories["key"] == "val_loss") & histories["run_id"].isin(run_ids)].dropna(subset=["value"])
    if val.empty:
        return {}
    rows = val.loc[val.groupby("run_id")["value"].idxmin()]
    return dict(zip(rows["run_id"], rows["step"].astype(int), strict=True))


def diagnosis(uri: str, data: SweepData, fingerprint: str) -> None:
    st.subheader("Diagnosis")
    summary = _data.sweep_summary(uri, data.run_id, fingerprint)
    if summary.get("line"):
        st.markdown(f"**{summary['line']}**")
    counts = summary.get("counts") or {}
    if counts:
        st.markdown(" · ".join(f"{k}: **{v}**" for k, v in sorted(counts.items(), key=lambda kv: -int(kv[1]))))
    drivers = summary.get("drivers") or []
    if drivers:
        st.markdown("**What drives the verdicts**\n" + "\n".join(f"- {d}" for d in drivers))
    if not (counts or drivers or summary.get("line")):
        st.caption("No diagnosis yet: verdicts appear when trials finish.")


def body(uri: str, run_id: str, was_live: bool) -> None:
    data, trials, fingerprint = load(uri, run_id)
    if was_live and data.state != "running":
        st.rerun()  # the sweep ended: a full rerun drops the refresh timer
    header(data, trials)
    if data.state == "running":
        st.info(
            f"Live: this sweep is running; the page refreshes every {_data.LIVE_REFRESH_S:.0f} s.",
            icon=":material/autorenew:",
        )
    if trials.empty:
        return
    leaderboard(data, trials)
    if trials["state"].eq("failed").all():
        return
    if objectives := _analysis.sweep_objectives(data):  # a multi-objective sweep: its best is a front
        _pareto.section(uri, data, trials, objectives, fingerprint)
    progress(uri, data, trials, fingerprint)
    parameters(uri, data, trials, fingerprint)
    curves(uri, data, trials, fingerprint)
    _confirm.section(uri, data)
    diagnosis(uri, data, fingerprint)
    _data.page_link(
        "compare", "Compare trials", icon=":material/compare:", sweep=data.run_id,
    )  # fmt: skip
    st.link_button("Open the sweep in MLflow", _data.mlflow_run_url(data.experiment_id, data.run_id))


store = _data.open_store()
try:
    parent_id = pick_sweep(store.tracking_uri)
    first, _, _ = load(store.tracking_uri, parent_id)
except StoreUnavailable as e:
    _data.store_unavailable(e, store.tracking_uri)
live = first.state == "running"
st.fragment(run_every=_data.LIVE_REFRESH_S if live else None)(body)(store.tracking_uri, parent_id, live)
