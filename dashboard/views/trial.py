"""Trial: params, learning curves with the diagnosis drawn on, signals from inside training, verdict,
evidence, advice, artifacts.

URL: ``/trial?run=<trial run id>``. Refreshes itself while the trial runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard import _charts, _confirm, _data  # noqa: E402
from hpo.diagnosis import INTERNAL_FINDINGS  # noqa: E402
from tracker import schema  # noqa: E402
from tracker.queries import RunNotFound, StoreUnavailable, TrialData  # noqa: E402
from trainers import signal_names as signal  # noqa: E402  (names only: torch-free)

_MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024


def pick_trial(uri: str) -> str:
    """The run id from the URL, or pickers (sweep, then trial) when the URL names none."""
    run_id = st.query_params.get("run")
    if run_id:
        return run_id
    st.title("Trial")
    _, trials = _data.choose_sweep(uri, "trial_sweep")
    if trials.empty:
        st.info("This sweep has no trials yet.")
        st.stop()
    labels = _data.trial_choices(trials)
    run_id = st.selectbox("Trial", list(labels), format_func=labels.__getitem__, key="trial_pick")
    st.query_params["run"] = run_id
    return str(run_id)


def header(trial: TrialData, diagnosis: dict[str, Any] | None, source: str) -> None:
    label = _data.trial_label({"trial_number": trial.trial_number, "name": trial.name, "run_id": trial.run_id})
    st.title(f"{label.capitalize()} · {trial.state}")
    st.caption(f"run `{trial.run_id}` · experiment {trial.experiment} · MLflow status {trial.status}")
    links = st.columns([1, 1, 3])
    with links[0]:
        if trial.parent_run_id:
            _data.page_link("sweep", "Back to the sweep", icon=":material/leaderboard:", run=trial.parent_run_id)
    links[1].link_button("Open in MLflow", _data.mlflow_run_url(trial.experiment_id, trial.run_id))
    if trial.state == "failed":
        st.error(f"**This trial failed.**\n\n```\n{trial.tags.get(schema.ERROR, 'no error text logged')}\n```")
    elif trial.state == "stopped":
        by = trial.tags.get(schema.STOPPED_BY, "the scheduler")
        epochs = trial.metrics.get(schema.EPOCHS_RUN) or _last_epoch(trial)
        st.warning(f"Stopped early by **{by}** after {_data.format_value(epochs)} epochs: it was not promising.")
    elif trial.state == "running":
        st.info(f"Running: the page refreshes every {_data.LIVE_REFRESH_S:.0f} s.", icon=":material/autorenew:")
    if diagnosis:
        verdict = diagnosis.get("verdict") or "—"
        confidence = diagnosis.get("confidence")
        conf = f" (confidence {float(confidence):.0%})" if confidence is not None and _is_number(confidence) else ""
        st.markdown(f"### Verdict: {verdict}{conf}")
        if diagnosis.get("summary"):
            st.markdown(str(diagnosis["summary"]))
        st.caption(f"Diagnosis {source}.")


def curves(trial: TrialData, diagnosis: dict[str, Any] | None) -> None:
    if trial.histories.empty:
        st.info("This trial logged no per-epoch metrics.")
        return
    evidence = (diagnosis or {}).get("evidence") or {}
    keys = set(trial.histories["key"])
    left, right = st.columns(2)
    with left:
        st.plotly_chart(_charts.diagnosed_curve(trial.histories, "loss", evidence), key="loss_curve")
    with right:
        if {"train_accuracy", "val_accuracy"} & keys:
            st.plotly_chart(_charts.diagnosed_curve(trial.histories, "accuracy", evidence), key="acc_curve")
        elif "lr" in keys:
            lr = trial.histories[trial.histories["key"] == "lr"]
            st.line_chart(lr.set_index("step")["value"].rename("learning rate"))


def inside_training(trial: TrialData, diagnosis: dict[str, Any] | None) -> None:
    """The training signals beside the curves: gradients and updates, units, the findings they led to."""
    if trial.histories.empty:
        return
    signals = trial.histories[trial.histories["key"].astype(str).str.startswith(signal.PREFIX)]
    if signals.empty:
        return
    st.subheader("Inside training")
    found = [f for f in (diagnosis or {}).get("findings") or [] if f in INTERNAL_FINDINGS]
    if found:
        st.warning("Found inside training: " + ", ".join(f"**{f}**" for f in found), icon=":material/troubleshoot:")
    else:
        st.caption("Nothing wrong inside training: gradients, update sizes and units are in their usual ranges.")
    left, right = st.columns(2)
    steps = [signal.GRAD_NORM, *(signal.update_ratio_of(g) for g in signal.GROUPS)]
    with left:
        st.plotly_chart(_charts.signal_lines(signals, steps, "Gradient norm and update / weight ratio", log_y=True),
                        key="signals_steps")
    with right:
        units = [signal.DEAD_RELU, signal.SATURATED]
        if set(units) & set(signals["key"]):
            st.plotly_chart(_charts.signal_lines(signals, units, "Dead ReLU / saturated units (share)", log_y=False),
                            key="signals_units")
    table = signals.sort_values("step").groupby("key")["value"].agg(["first", "last"])
    rows = [{"signal": k.split("/", 1)[1], "first epoch": _data.format_value(r["first"]),
             "last epoch": _data.format_value(r["last"])} for k, r in table.iterrows()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="signals_table")


def explanation(diagnosis: dict[str, Any] | None) -> None:
    if not diagnosis:
        st.caption("No diagnosis: the trial logged no curves to judge.")
        return
    left, right = st.columns(2)
    with left:
        st.subheader("Recommendations")
        recs = diagnosis.get("recommendations") or []
        st.markdown("\n".join(f"- {r}" for r in recs) if recs else "None: nothing to change.")
        findings = diagnosis.get("findings") or []
        if findings:
            st.subheader("Findings")
            st.markdown("\n".join(f"- {f}" for f in findings))
    with right:
        st.subheader("Evidence")
        evidence = diagnosis.get("evidence") or {}
        if evidence:
            rows = [{"measure": k, "value": _data.format_value(v)} for k, v in evidence.items()]
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="evidence")
        else:
            st.caption("No evidence recorded.")


def params_and_metrics(trial: TrialData) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Parameters")
        rows = [{"parameter": k, "value": _data.format_value(v)} for k, v in sorted(trial.params.items())]
        st.dataframe(pd.DataFrame(rows, columns=["parameter", "value"]), hide_index=True, key="params")
    with right:
        st.subheader("Summary metrics")
        rows = [{"metric": k, "value": _data.format_value(v)} for k, v in sorted(trial.metrics.items())]
        st.dataframe(pd.DataFrame(rows, columns=["metric", "value"]), hide_index=True, key="metrics")


def artifacts(store_uri: str, trial: TrialData) -> None:
    st.subheader("Artifacts")
    if not trial.artifacts:
        st.caption("No artifacts (or the artifact store cannot be read from here).")
        return
    store = _data.open_store()
    for i, path in enumerate(trial.artifacts[:50]):
        local = store.local_artifact_path(path, trial.artifact_uri)
        if local is not None and local.is_file() and local.stat().st_size <= _MAX_DOWNLOAD_BYTES:
            st.download_button(
                path, local.read_bytes(), file_name=Path(path).name, icon=":material/download:", key=f"artifact_{i}"
            )
        else:
            st.markdown(f"- `{path}`")


def _last_epoch(trial: TrialData) -> int | None:
    return None if trial.histories.empty else int(trial.histories["step"].max())


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def body(uri: str, run_id: str, was_running: bool) -> None:
    try:
        trial = _data.load_trial(uri, run_id)
    except RunNotFound as e:
        _data.run_not_found(e)
    except StoreUnavailable as e:
        _data.store_unavailable(e, uri)
    if was_running and trial.state != "running":
        st.rerun()
    diagnosis, source = _data.trial_diagnosis(trial)
    header(trial, diagnosis, source)
    _confirm.trial_links(uri, trial)
    curves(trial, diagnosis)
    inside_training(trial, diagnosis)
    explanation(diagnosis)
    params_and_metrics(trial)
    artifacts(uri, trial)


store = _data.open_store()
trial_id = pick_trial(store.tracking_uri)
try:
    running = _data.load_trial(store.tracking_uri, trial_id).state == "running"
except RunNotFound as e:
    _data.run_not_found(e)
except StoreUnavailable as e:
    _data.store_unavailable(e, store.tracking_uri)
st.fragment(run_every=_data.LIVE_REFRESH_S if running else None)(body)(store.tracking_uri, trial_id, running)
