"""What a sweep leaves, as plain data: each trial's record, the sweep's result, and their ranking.

No Ray, no torch: the driver's callbacks fill these records, and the report, the diagnosis and the
light commands read them without importing what produced them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hpo.config import Fixed, SweepConfig
from hpo.objectives import front_of


@dataclass
class TrialRecord:
    """What the driver knows of one trial; the leaderboard and the JSON summary read these."""

    trial_id: str
    number: int
    run_id: str
    config: dict[str, Any]  # the trial's configuration: fixed settings and sampled values (its MLflow params)
    status: str = "RUNNING"  # RUNNING | FINISHED | FAILED | KILLED
    early_stopped: bool = False
    best: float | None = None
    final: float | None = None
    epochs: int = 0
    error: str | None = None
    history: dict[str, list[float | None]] = field(default_factory=dict)
    checkpoint: Any = None  # the trial's latest Ray checkpoint: its best epoch
    diagnosis: Any = None  # hpo.diagnosis.Diagnosis once the trial has ended
    test_metrics: dict[str, float] = field(default_factory=dict)  # test_<name>: the winner's, after the search


@dataclass
class SweepResult:
    """What a finished (or interrupted) sweep leaves: where it is stored and every trial's outcome."""

    sweep: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    metric: str
    goal: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    interrupted: bool = False
    elapsed_s: float = 0.0
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (name, goal) each; 2+: a Pareto front
    test_note: str | None = None  # why the winner has no test estimate (None: see best.test_metrics)
    task: str | None = None  # the built-in task, when the sweep trained one
    confirmation: dict[str, Any] | None = None  # confirmation.json (hpo.confirm) when the top trials were confirmed
    compression: dict[str, Any] | None = None  # the compress: block's table (hpo compress --json), or its error

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def fixed_settings(config: SweepConfig) -> dict[str, Any]:
    """Settings every trial shares: trainer epochs and options, unconditional fixed parameters, and (built-in
    loop) ``split_seed``, the sweep's seed."""
    fixed: dict[str, Any] = {"epochs": config.trainer.epochs, **config.trainer.options}
    for name, param in config.parameters.items():
        if isinstance(param, Fixed) and not param.when:
            fixed[name] = param.value
    if "seed" not in fixed and "seed" not in config.parameters:
        fixed["seed"] = config.seed
    if config.trainer.function is None:  # the sweep's seed fixes the split: the same rows for every trial
        fixed["split_seed"] = config.seed
    return fixed


def best_trial(
    records: list[TrialRecord], goal: str, objectives: Sequence[tuple[str, str]] = ()
) -> TrialRecord | None:
    """The trial with the best value of the sweep metric among those that did not fail.

    With several ``objectives``: the Pareto front's best member on the first objective (ties broken by
    the next objectives), the one member commands that need a single trial take.
    """
    if len(objectives) > 1:
        front = pareto_front(records, objectives)
        return front[0][0] if front else None
    scored = [r for r in records if r.best is not None and r.status != "FAILED"]
    if not scored:
        return None
    return max(scored, key=lambda r: r.best) if goal == "maximize" else min(scored, key=lambda r: r.best)  # type: ignore[arg-type,return-value]


def scored_objectives(
    records: list[TrialRecord], objectives: Sequence[tuple[str, str]]
) -> list[tuple[TrialRecord, dict[str, float]]]:
    """Each trial that did not fail with its objective values (at its best epoch by the first objective)."""
    scored, _ = front_of(_histories(records), objectives)
    return [(r, scored[r.trial_id]) for r in records if r.trial_id in scored]


def pareto_front(
    records: list[TrialRecord], objectives: Sequence[tuple[str, str]]
) -> list[tuple[TrialRecord, dict[str, float]]]:
    """The non-dominated trials among those that did not fail, best first on the first objective."""
    scored, front = front_of(_histories(records), objectives)
    by_id = {r.trial_id: r for r in records}
    return [(by_id[key], scored[key]) for key in front]


def _histories(records: list[TrialRecord]) -> dict[str, dict[str, list[float | None]]]:
    return {r.trial_id: r.history for r in records if r.status != "FAILED"}


def leaderboard(records: list[TrialRecord], goal: str) -> list[TrialRecord]:
    """Trials best first; failed and unscored ones last, in start order."""
    scored = [r for r in records if r.best is not None and r.status != "FAILED"]
    rest = [r for r in records if r not in scored]
    scored.sort(key=lambda r: r.best, reverse=goal == "maximize")  # type: ignore[arg-type,return-value]
    return scored + rest


def error_summary(text: str | None) -> str:
    """The one line of a traceback that says what went wrong."""
    if not text:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or "Diverged" in line:
            return line
    return lines[-1]
