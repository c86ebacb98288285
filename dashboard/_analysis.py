"""Analyses the sweep page runs over a sweep's trials: Optuna importance and contour, diagnosis fallbacks.

Pure functions (no Streamlit); ``dashboard/_data.py`` caches them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tracker import schema
from tracker.queries import PARAM_PREFIX, SweepData, history_dict

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
        present = [v for v in scored[col] if not _missing(v)]
        if not present:
            continue
        name = col[len(PARAM_PREFIX) :]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            distributions[name] = IntDistribution(int(min(present)), int(max(present)))
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            low, high = float(min(present)), float(max(present))
            distributions[name] = FloatDistribution(low, high, log=low > 0 and high / low >= 100)
        else:
            distributions[name] = CategoricalDistribution(sorted({str(v) for v in present}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    for _, row in scored.iterrows():
        params, dists = {}, {}
        for name, dist in distributions.items():
            value = row[f"{PARAM_PREFIX}{name}"]
            if _missing(value):
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


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# -- diagnosis fallbacks ------------------------------------------------------------------------------
def _diagnosis_module() -> Any:
    from tracker import diagnosis  # on first use: pages that only read logged verdicts never load it

    return diagnosis


def diagnose_curves(curves: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """``tracker.diagnosis.diagnose`` on one run's curves as a dict; ``None`` without curves or when it raises."""
    if not curves:
        return None
    module = _diagnosis_module()
    try:
        return dict(module.diagnose(curves, params=dict(params or {})).to_dict())
    except Exception as e:  # a diagnosis bug must not take the page down; the curves still show
        logger.warning("diagnose() failed: %s", e)
        return None


def fill_verdicts(sweep: SweepData) -> pd.DataFrame:
    """The trials frame with ``verdict``/``confidence`` computed for trials that have curves but no tag."""
    trials = sweep.trials.copy()
    missing = trials["verdict"].isna() & (trials["state"] != "failed") & (trials["epochs_run"].fillna(0) > 0)
    for idx in trials.index[missing]:
        params = {c[len(PARAM_PREFIX) :]: v for c, v in trials.loc[idx].items() if c.startswith(PARAM_PREFIX)}
        found = diagnose_curves(history_dict(sweep.histories, trials.at[idx, "run_id"]), params)
        if found:
            trials.at[idx, "verdict"] = found.get("verdict")
            trials.at[idx, "confidence"] = found.get("confidence")
    return trials


def sweep_summary(sweep: SweepData, trials: pd.DataFrame, logged: Mapping[str, Any] | None) -> dict[str, Any]:
    """The sweep-level diagnosis: the logged ``diagnosis_summary.json``, else ``summarize_sweep`` now.

    Always has ``counts`` (verdict -> trials) and ``drivers`` (list of sentences); ``line`` is the
    one-line summary tag when logged.
    """
    summary: dict[str, Any] = dict(logged or {})
    module = _diagnosis_module()
    judged = trials[trials["verdict"].notna()]
    if not logged and not judged.empty:
        # summarize_sweep reads only each trial's verdict and params: rebuild light Diagnosis objects
        # from the verdicts we already have instead of re-diagnosing every curve.
        pairs = [
            (
                {c[len(PARAM_PREFIX) :]: v for c, v in row.items() if c.startswith(PARAM_PREFIX) and not _missing(v)},
                module.Diagnosis(verdict=str(row["verdict"]), confidence=0.0, evidence={}, recommendations=[]),
            )
            for _, row in judged.iterrows()
        ]
        try:
            summary = dict(module.summarize_sweep(pairs).to_dict())
        except Exception as e:  # the summary is an extra: never take the page down for it
            logger.warning("summarize_sweep() failed: %s", e)
    counts = trials["verdict"].dropna().value_counts()
    summary.setdefault("counts", {str(k): int(v) for k, v in counts.items()})
    summary["drivers"] = [str(d) for d in summary.get("drivers") or []]
    summary["line"] = sweep.tags.get(schema.DIAGNOSIS_SUMMARY) or summary.get("summary")
    return summary
