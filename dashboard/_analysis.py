"""Analyses the sweep page runs over a sweep's trials: Optuna importance and contour, diagnosis fallbacks
(through ``hpo.diagnosis``, the path ``hpo diagnose`` takes), and a multi-objective sweep's Pareto front
(through ``hpo.objectives``, the numbers ``hpo best`` prints).

Pure functions (no Streamlit); ``dashboard/_data.py`` caches them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from hpo.diagnosis import Diagnosis, diagnose_stored_trial, diagnose_trial_row, summarize_sweep
from hpo.objectives import front_of, hypervolume_curve, parse_objectives
from tracker import schema
from tracker.queries import PARAM_PREFIX, SweepData, TrialData, history_dict, present

logger = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 3
# Optuna's default forest (64 trees, depth 64) takes ~30 s on 1,000 trials here; 32 trees of depth 8
# take ~2 s and rank the parameters the same way on the scale bench.
FANOVA = {"n_trees": 32, "max_depth": 8, "seed": 0}


class AnalysisUnavailable(Exception):
    """Not enough data for an analysis; the message says what is missing."""


def build_study(trials: pd.DataFrame, maximize: bool) -> tuple[Any, list[str]]:
    """An in-memory Optuna study holding every scored trial with its parameters and best value.

    Distributions are inferred from the values seen: ints -> IntDistribution, floats -> FloatDistribution
    (log when positive and spanning two decades or more), anything else -> CategoricalDistribution.

    Returns:
        the study, and the parameter names in it.

    Raises:
        AnalysisUnavailable: fewer than ``MIN_TRIALS_FOR_IMPORTANCE`` trials have a value.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    scored = trials[trials["best"].notna() & trials["state"].isin(["finished", "stopped"])]
    if len(scored) < MIN_TRIALS_FOR_IMPORTANCE:
        raise AnalysisUnavailable(
            f"parameter analysis needs at least {MIN_TRIALS_FOR_IMPORTANCE} finished or stopped trials "
            f"with a value of the metric; this sweep has {len(scored)}."
        )
    distributions: dict[str, Any] = {}
    for col in (c for c in scored.columns if c.startswith(PARAM_PREFIX)):
        seen = [v for v in scored[col] if present(v)]
        if not seen:
            continue
        name = col[len(PARAM_PREFIX) :]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
            distributions[name] = IntDistribution(int(min(seen)), int(max(seen)))
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
            low, high = float(min(seen)), float(max(seen))
            distributions[name] = FloatDistribution(low, high, log=low > 0 and high / low >= 100)
        else:
            distributions[name] = CategoricalDistribution(sorted({str(v) for v in seen}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    for _, row in scored.iterrows():
        params, dists = {}, {}
        for name, dist in distributions.items():
            value = row[f"{PARAM_PREFIX}{name}"]
            if not present(value):
                continue  # a conditional parameter that was inactive in this trial
            params[name] = str(value) if isinstance(dist, CategoricalDistribution) else value
            if isinstance(dist, IntDistribution):
                params[name] = int(value)
            dists[name] = dist
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(row["best"])))
    return study, list(distributions)


def importances(study: Any) -> dict[str, float]:
    """Optuna's fANOVA importances (seeded, a smaller forest) over the parameters every scored trial has.

    Raises:
        AnalysisUnavailable: no parameter varies across the trials.
    """
    import optuna

    try:
        result = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(**FANOVA)
        )
    except (ValueError, RuntimeError) as e:
        raise AnalysisUnavailable(f"Optuna could not compute importances: {e}") from e
    if not result:
        raise AnalysisUnavailable("no parameter varies across the scored trials, so none can matter.")
    return {k: float(v) for k, v in result.items()}


def contour(study: Any, x: str, y: str, metric: str) -> Any:
    """Optuna's contour plot of the metric over two parameters (a plotly figure)."""
    import optuna.visualization as vis

    fig = vis.plot_contour(study, params=[x, y], target_name=metric)
    fig.update_layout(height=420, margin={"l": 50, "r": 20, "t": 40, "b": 40})
    return fig


# -- diagnosis fallbacks: the one path (hpo.diagnosis) for trials that logged none -------------------------
def diagnose_stored(trial: TrialData) -> dict[str, Any] | None:
    """``hpo.diagnosis.diagnose_stored_trial`` as a dict (what ``hpo diagnose RUN_ID`` prints), or ``None``."""
    try:
        found = diagnose_stored_trial(trial)
    except Exception as e:  # a diagnosis bug must not take the page down; the curves still show
        logger.warning("diagnosis of run %s failed: %s", trial.run_id, e)
        return None
    return None if found is None else found.to_dict()


def fill_verdicts(sweep: SweepData) -> pd.DataFrame:
    """The trials frame with ``verdict``/``confidence`` computed for trials that logged none."""
    trials = sweep.trials.copy()
    for idx in trials.index[trials["verdict"].isna()]:
        row = trials.loc[idx].to_dict()
        params = {c[len(PARAM_PREFIX) :]: v for c, v in row.items() if c.startswith(PARAM_PREFIX) and present(v)}
        try:
            found = diagnose_trial_row(row, history_dict(sweep.histories, row["run_id"]), params, sweep.tags)
        except Exception as e:  # as above: the table still shows without this verdict
            logger.warning("diagnosis of run %s failed: %s", row["run_id"], e)
            continue
        if found is not None:
            trials.at[idx, "verdict"] = found.verdict
            trials.at[idx, "confidence"] = found.confidence
    return trials


def sweep_summary(sweep: SweepData, trials: pd.DataFrame, logged: Mapping[str, Any] | None) -> dict[str, Any]:
    """The sweep-level diagnosis: the logged ``diagnosis_summary.json``, else ``summarize_sweep`` now.

    Always has ``counts`` (verdict -> trials) and ``drivers`` (list of sentences); ``line`` is the
    one-line summary tag when logged.
    """
    summary: dict[str, Any] = dict(logged or {})
    judged = trials[trials["verdict"].notna()]
    if not logged and not judged.empty:
        # summarize_sweep reads only each trial's verdict and params: rebuild light Diagnosis objects
        # from the verdicts we already have instead of re-diagnosing every curve.
        columns = [c for c in judged.columns if c.startswith(PARAM_PREFIX)]
        pairs = [
            (
                {c[len(PARAM_PREFIX) :]: v for c, v in row.items() if c != "verdict" and present(v)},
                Diagnosis(verdict=str(row["verdict"]), confidence=0.0, evidence={}, recommendations=[]),
            )
            for row in judged[[*columns, "verdict"]].to_dict("records")  # iterrows: 0.2 s on 1,000 trials
        ]
        try:
            summary = dict(summarize_sweep(pairs).to_dict())
        except Exception as e:  # the summary is an extra: never take the page down for it
            logger.warning("summarize_sweep() failed: %s", e)
    counts = trials["verdict"].dropna().value_counts()
    summary.setdefault("counts", {str(k): int(v) for k, v in counts.items()})
    summary["drivers"] = [str(d) for d in summary.get("drivers") or []]
    summary["line"] = sweep.tags.get(schema.DIAGNOSIS_SUMMARY) or summary.get("summary")
    return summary


# -- several objectives ------------------------------------------------------------------------------
def sweep_objectives(sweep: SweepData) -> list[tuple[str, str]]:
    """The (name, goal) objectives of a multi-objective sweep from its ``hpo.objectives`` tag; [] for one."""
    objectives = parse_objectives(sweep.tags.get(schema.OBJECTIVES))
    return objectives if len(objectives) > 1 else []


def pareto_frame(histories: pd.DataFrame, trials: pd.DataFrame, objectives: list[tuple[str, str]]) -> pd.DataFrame:
    """One row per trial that did not fail and has every objective: run_id, trial_number, each objective's
    value (at the first objective's best epoch, as Optuna was told), ``pareto`` (on the front), and
    ``hypervolume`` (of the trials up to this one, by trial number), sorted by trial number.

    ``histories``: the per-epoch rows of (at least) the trials that did not fail."""
    ok = trials[trials["state"] != "failed"]
    curves = {run_id: history_dict(histories, run_id) for run_id in ok["run_id"]}
    scored, front = front_of(curves, objectives)
    columns = ["run_id", "trial_number", *(n for n, _ in objectives), "pareto", "hypervolume"]
    if not scored:
        return pd.DataFrame(columns=columns)
    rows = ok[ok["run_id"].isin(scored)][["run_id", "trial_number"]].sort_values("trial_number")
    for name, _ in objectives:
        rows[name] = [scored[r][name] for r in rows["run_id"]]
    rows["pareto"] = rows["run_id"].isin(front)
    points = rows[[n for n, _ in objectives]].to_numpy().tolist()
    rows["hypervolume"] = hypervolume_curve(points, [g for _, g in objectives])
    return rows.reset_index(drop=True)[columns]


def objective_importances(trials: pd.DataFrame, frame: pd.DataFrame, objectives: list[tuple[str, str]]
                          ) -> dict[str, dict[str, float] | str]:
    """Per objective, fANOVA importances over the trials of ``frame`` (or why there are none)."""
    out: dict[str, dict[str, float] | str] = {}
    for name, goal in objectives:
        values = dict(zip(frame["run_id"], frame[name], strict=True))
        scored = trials[trials["run_id"].isin(values)].copy()
        scored["best"] = scored["run_id"].map(values)  # build_study ranks by "best": that objective here
        try:
            out[name] = importances(build_study(scored, goal == "maximize")[0])
        except AnalysisUnavailable as e:
            out[name] = str(e)
    return out
