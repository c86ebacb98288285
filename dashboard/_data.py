"""Cached loaders shared by the pages: one :class:`Store` per URI, sweeps keyed by a cheap fingerprint.

Every loader takes the tracking URI so two dashboards on two stores never share cache entries.
Heavy results use ``st.cache_resource`` (no copy per read: a 600k-row history frame would cost a
pickle round trip on every rerun with ``st.cache_data``); pages treat them as read-only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn
from urllib.parse import urlencode

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from dashboard import _analysis
from tracker import schema
from tracker.errors import StoreUnavailable
from tracker.queries import RunNotFound, Store, SweepData, TrialData
from tracker.uri import resolve_tracking_uri

LIVE_REFRESH_S = 5.0
FINGERPRINT_TTL_S = 2.0  # < LIVE_REFRESH_S: a live page's refresh always reads the store again
_MAX_SWEEPS_CACHED = 4


def tracking_uri() -> str:
    """``--tracking-uri`` after ``--`` on the ``streamlit run`` line, else ``HPO_TRACKING_URI``, else
    what every command resolves (``tracker.uri``: ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in
    ``$HPO_HOME`` or ``./.hpo``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tracking-uri")
    known, _ = parser.parse_known_args(sys.argv[1:])
    return resolve_tracking_uri(known.tracking_uri or os.environ.get("HPO_TRACKING_URI") or None)


def mlflow_run_url(experiment_id: str, run_id: str) -> str:
    """The run's page in MLflow's UI (``HPO_MLFLOW_UI_URL``, default http://127.0.0.1:5000), model-training view."""
    from tracker.mlflow_log import ui_run_url

    return ui_run_url(os.environ.get("HPO_MLFLOW_UI_URL", "http://127.0.0.1:5000"), experiment_id, run_id)


@st.cache_resource(show_spinner=False)
def _open_store(uri: str) -> Store:
    return Store(uri)  # a StoreUnavailable is not cached: the next rerun tries again


def open_store() -> Store:
    """The page's store; renders a helpful error and stops the page when it cannot be opened."""
    uri = tracking_uri()
    try:
        return _open_store(uri)
    except StoreUnavailable as e:
        store_unavailable(e, uri)


def store_unavailable(error: Exception, uri: str | None = None) -> NoReturn:
    st.error(f"**Cannot read the tracking store.** {error}", icon=":material/cloud_off:")
    st.caption(
        f"Store: `{uri or tracking_uri()}`. Start the dashboard with `hpo dashboard --tracking-uri URI` "
        "or set `MLFLOW_TRACKING_URI`; this page retries on every reload."
    )
    st.stop()


@contextlib.contextmanager
def reading(uri: str) -> Iterator[None]:
    """Reads inside render a store that went away, or a run deleted meanwhile, as a message and stop the page."""
    try:
        yield
    except RunNotFound as e:
        run_not_found(e)
    except StoreUnavailable as e:
        store_unavailable(e, uri)


def choose_sweep(uri: str, key: str, wanted: str | None = None) -> tuple[SweepData, pd.DataFrame]:
    """A picker over every sweep in the store (``wanted``, a parent run id, preselected) and the chosen
    sweep read; says how to start one and stops the page when the store holds none."""
    with reading(uri):
        sweeps = list_sweeps(uri)
    if sweeps.empty:
        st.info("**No sweeps in this store yet.** Start one with `hpo run sweep.yaml`.", icon=":material/info:")
        st.stop()
    names = dict(zip(sweeps["run_id"], sweeps["sweep"] + " · " + sweeps["state"], strict=True))
    index = list(names).index(wanted) if wanted in names else 0
    parent = st.selectbox("Sweep", list(names), index=index, format_func=names.__getitem__, key=key)
    with reading(uri):
        return load_sweep(uri, parent, fingerprint(open_store(), parent))


def trial_choices(trials: pd.DataFrame) -> dict[str, str]:
    """Run id -> picker label ("trial 3 · stopped") for every trial of a sweep."""
    return {r: f"{trial_label(row)} · {row['state']}" for r, row in zip(
        trials["run_id"], trials.to_dict("records"), strict=True)}  # fmt: skip


def run_not_found(error: RunNotFound) -> NoReturn:
    st.warning(f"{error}", icon=":material/search_off:")
    page_link("sweeps", "Back to all sweeps", icon=":material/arrow_back:")
    st.stop()


@st.cache_data(ttl=3, show_spinner=False)
def list_sweeps(uri: str) -> pd.DataFrame:
    return _open_store(uri).list_sweeps()


def fingerprint(store: Store, run_id: str) -> str:
    """Changes when the sweep gains trials or epochs, or loses runs. Asked again at most every
    ``FINGERPRINT_TTL_S``: reruns from widgets come seconds apart, and on a 1,000-trial sweep the query
    is most of a cached rerun; a running sweep's page refreshes every ``LIVE_REFRESH_S``, so it still
    sees every change."""
    return _fingerprint(store.tracking_uri, run_id)


@st.cache_data(ttl=FINGERPRINT_TTL_S, show_spinner=False, max_entries=64)
def _fingerprint(uri: str, run_id: str) -> str:
    return _open_store(uri).sweep_fingerprint(run_id)


@st.cache_resource(show_spinner="Loading the sweep…", max_entries=_MAX_SWEEPS_CACHED)
def load_sweep(uri: str, run_id: str, fingerprint: str) -> tuple[SweepData, pd.DataFrame]:
    """The sweep, and its trials with verdicts filled in where no diagnosis was logged.

    With the curves of the trials the page draws first only (``Store.sweep(first_curves=True)``: running
    trials, those without a logged verdict, the best few); :func:`curves_of` reads the others when a page
    asks. Without the training signals' histories: the sweep's pages never draw them (the trial page reads
    its own), and they decide no verdict (``hpo.diagnosis``: the curves decide, the signals add findings).
    """
    data = _open_store(uri).sweep(run_id, skip=_NOT_DRAWN, first_curves=True)
    return data, _analysis.fill_verdicts(data)


_NOT_DRAWN = (schema.SIGNALS_PREFIX,)


def curves_of(uri: str, data: SweepData, run_ids: list[str]) -> pd.DataFrame:
    """The histories of ``run_ids``: those the loaded sweep holds, the others read now (and cached per sweep
    state and set of trials)."""
    held = data.histories[data.histories["run_id"].isin(run_ids)]
    missing = [] if data.curves_of is None else sorted(set(run_ids) - data.curves_of)
    if not missing:
        return held
    more = _more_curves(uri, data.run_id, fingerprint(open_store(), data.run_id), tuple(missing))
    return pd.concat([held.astype({"run_id": object, "key": object}), more.astype({"run_id": object, "key": object})],
                     ignore_index=True)


@st.cache_resource(show_spinner="Loading curves…", max_entries=32)
def _more_curves(uri: str, run_id: str, fingerprint: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return _open_store(uri).histories(list(run_ids), skip=_NOT_DRAWN)


@st.cache_resource(show_spinner=False, max_entries=64)
def figure(uri: str, run_id: str, fingerprint: str, name: str, args: tuple[Any, ...], _build: Callable[[], Any]) -> Any:
    """A sweep page's figure, built by ``_build`` once per sweep state and ``args`` (what it depends on besides
    the sweep's data): a plotly figure over 1,000 trials takes tens of milliseconds to build, on every rerun
    otherwise. Shared between sessions: pages must not change it."""
    return _build()


@st.cache_resource(show_spinner="Fitting parameter importance…", max_entries=_MAX_SWEEPS_CACHED)
def study(uri: str, run_id: str, fingerprint: str) -> tuple[Any, list[str]]:
    data, trials = load_sweep(uri, run_id, fingerprint)
    return _analysis.build_study(trials, data.maximize)


@st.cache_data(show_spinner=False, max_entries=32)
def importances(uri: str, run_id: str, fingerprint: str) -> dict[str, float]:
    return _analysis.importances(study(uri, run_id, fingerprint)[0])


@st.cache_resource(show_spinner=False, max_entries=8)
def contour(uri: str, run_id: str, fingerprint: str, x: str, y: str, metric: str) -> Any:
    """Optuna's contour over two parameters; built once per sweep state and pair (a second or more on a
    large sweep), not on every rerun of the page."""
    return _analysis.contour(study(uri, run_id, fingerprint)[0], x, y, metric)


@st.cache_data(show_spinner=False, max_entries=32)
def sweep_summary(uri: str, run_id: str, fingerprint: str) -> dict[str, Any]:
    data, trials = load_sweep(uri, run_id, fingerprint)
    logged = _open_store(uri).read_json_artifact(run_id, schema.DIAGNOSIS_SUMMARY_ARTIFACT, data.artifact_uri)
    return _analysis.sweep_summary(data, trials, logged)


@st.cache_resource(show_spinner=False, max_entries=64, ttl=LIVE_REFRESH_S)
def load_trial(uri: str, run_id: str) -> TrialData:
    return _open_store(uri).trial(run_id)


def trial_diagnosis(trial: TrialData) -> tuple[dict[str, Any] | None, str]:
    """The trial's diagnosis and where it came from: the logged diagnosis.json, or computed now by the
    path the sweep and ``hpo diagnose RUN_ID`` use."""
    if trial.diagnosis:
        return trial.diagnosis, "logged by the sweep"
    computed = _analysis.diagnose_stored(trial)
    if computed:
        return computed, "computed now from the curves"
    verdict = trial.tags.get(schema.DIAGNOSIS)
    if verdict:
        confidence = trial.tags.get(schema.DIAGNOSIS_CONFIDENCE)
        return {"verdict": verdict, "confidence": confidence}, "logged verdict tag"
    return None, ""


def trial_label(row: pd.Series | dict[str, Any]) -> str:
    number = row.get("trial_number")
    if number is None or pd.isna(number):
        return str(row.get("name") or str(row["run_id"])[:8])
    return f"trial {int(number)}"


def format_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float | None) -> str:
    """``0.42 s``, ``3.1 s``, ``42 s``, ``1 min 05 s``, ``2 h 03 min``: two significant places below ten
    seconds, where sub-second trials all read ``0 s`` before."""
    if seconds is None or pd.isna(seconds):
        return "—"
    seconds = max(float(seconds), 0.0)
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


# -- navigation between pages (shareable: everything is in the query string) ------------------------------
_PAGES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "views")


def page_link(page: str, label: str, icon: str | None = None, **query: str) -> None:
    """A link to ``views/<page>.py`` with ``query`` params; plain markdown when the page runs alone
    (``AppTest.from_file`` on one page has no navigation to link through)."""
    try:
        st.page_link(os.path.join(_PAGES_DIR, f"{page}.py"), label=label, icon=icon, query_params=query or None)
    except StreamlitAPIException:
        st.markdown(f"[{label}](/{page}?{urlencode(query)})")


def go(page: str, **query: str) -> None:
    """Switch to ``views/<page>.py`` with ``query`` params (no-op when the page runs alone)."""
    try:
        st.switch_page(os.path.join(_PAGES_DIR, f"{page}.py"), query_params=query)
    except StreamlitAPIException:
        st.query_params.update(query)
