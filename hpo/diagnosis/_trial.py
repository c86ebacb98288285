"""The one diagnosis path for a trial: the runner (trial end), ``hpo diagnose`` and the dashboard call it.

``diagnose_trial`` takes the curves and what is known of how the trial ended (status, error, early
stop, number of classes); the two adapters read those from a stored trial (its tags) or from a row of
a sweep's trials frame, so the same run gets the same verdict wherever it is looked at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from hpo.diagnosis._internals import add_internal_findings
from hpo.diagnosis._verdict import Diagnosis, diagnose
from tracker import schema

# The learning curves the diagnosis reads; a trial's other metrics do not describe one.
CURVE_KEYS = schema.CURVE_METRICS

# The trainer's own exception, or a non-finite value named as a word (not "nan" inside "maintenance").
_DIVERGED_ERROR = re.compile(r"\bDiverged\b|\b(?:nan|inf)\b", re.IGNORECASE)


def diagnose_trial(
    curves: Mapping[str, Sequence[float | None]],
    *,
    status: str | None = None,
    error: str | None = None,
    params: Mapping[str, Any] | None = None,
    n_classes: int | None = None,
    stopped_early: bool = False,
    val_size: int | None = None,
) -> Diagnosis | None:
    """Diagnose one trial from its curves and how it ended.

    A trial that failed because its loss became NaN/inf gets a NaN appended to its training loss: the
    epoch that diverged never reached a report (nor the store), but it is the strongest evidence there is.

    Args:
        curves: per-epoch series by metric name (index i = epoch i+1): ``CURVE_KEYS`` for the verdict,
            ``signals/*`` (trainers.signal_names) for the findings from inside training; others are ignored.
        status: MLflow's run status (``FINISHED``, ``FAILED``, ``KILLED``, ``RUNNING``).
        error: the error text of a failed trial.
        params: the trial's flat hyperparameters, named in the advice.
        n_classes: the task's number of classes (chance-level loss and accuracy); 0 or None for regression
            or unknown.
        stopped_early: the sweep's scheduler stopped the trial before its last epoch.
        val_size: validation examples behind each val_loss value (``task_val_size``); None when unknown.

    Returns:
        The diagnosis, or ``None`` when the trial reported no curve at all.
    """
    series = {k: list(v) for k, v in curves.items() if k in CURVE_KEYS}
    if status == "FAILED" and isinstance(error, str) and _DIVERGED_ERROR.search(error):
        series.setdefault("train_loss", []).append(float("nan"))
    if not series:
        return None
    result = diagnose(series, params=dict(params or {}), n_classes=n_classes, stopped_early=stopped_early,
                      val_size=val_size)
    return add_internal_findings(result, curves, params)  # the signals/* series, when the trainer logged them


class StoredTrial(Protocol):
    """What :func:`diagnose_stored_trial` reads of a stored trial (``tracker.queries.TrialData`` has it)."""

    @property
    def status(self) -> str: ...

    @property
    def tags(self) -> Mapping[str, str]: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    def curves(self) -> dict[str, list[float | None]]: ...


def diagnose_stored_trial(trial: StoredTrial) -> Diagnosis | None:
    """:func:`diagnose_trial` on a trial read from the store: error, early stop and task from its tags."""
    tags = trial.tags
    return diagnose_trial(
        trial.curves(),
        status=trial.status,
        error=tags.get(schema.ERROR),
        params=trial.params,
        n_classes=task_classes(tags.get(schema.TASK)),
        stopped_early=tags.get(schema.EARLY_STOPPED) == "true",
        val_size=task_val_size(tags.get(schema.TASK), trial.params),
    )


def diagnose_trial_row(
    row: Mapping[str, Any],
    curves: Mapping[str, Sequence[float | None]],
    params: Mapping[str, Any],
    sweep_tags: Mapping[str, str],
) -> Diagnosis | None:
    """:func:`diagnose_trial` on one row of a sweep's trials frame (columns status, error, early_stopped).

    Args:
        row: the trial's row.
        curves: its per-epoch series.
        params: its hyperparameters (the row's ``p.<name>`` values that are present).
        sweep_tags: the sweep run's tags (the task, for the number of classes).
    """
    error = row.get("error")
    return diagnose_trial(
        curves,
        status=row.get("status"),
        error=error if isinstance(error, str) else None,
        params=params,
        n_classes=task_classes(sweep_tags.get(schema.TASK)),
        stopped_early=bool(row.get("early_stopped")),
        val_size=task_val_size(sweep_tags.get(schema.TASK), params),
    )


def task_classes(task: str | None) -> int | None:
    """The number of classes of a built-in task (0 for regression); ``None`` for a custom trainer."""
    from trainers.tasks import TASKS  # torch-free: the task table only

    return TASKS[task].n_classes if isinstance(task, str) and task in TASKS else None


def task_val_size(task: str | None, params: Mapping[str, Any]) -> int | None:
    """Validation examples of a built-in task's trial under its ``params`` (the validation part of
    ``TaskInfo.split_sizes``: hold-out, one fold, or an official split's); ``None`` for a custom trainer,
    whose split the store does not know."""
    from trainers.tasks import TASKS  # torch-free: the task table only

    if not isinstance(task, str) or task not in TASKS:
        return None
    try:
        return TASKS[task].split_sizes(params)[1]
    except (TypeError, ValueError):  # a stored param that does not parse as a number: size unknown
        return None
