"""What a multi-objective sweep writes about its Pareto front when it ends.

The front itself is computed from the trial records (``hpo.results.pareto_front``); this module only
marks its members (tag ``hpo.pareto = true`` on their trial runs) and returns the sweep run's summary
(``hypervolume``, ``pareto_size``), so the runner's hook stays one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpo.objectives import hypervolume
from hpo.results import TrialRecord, pareto_front, scored_objectives
from tracker import schema


def log_front(logger: Any, records: list[TrialRecord], objectives: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Tag the front's trial runs and return the sweep run's front metrics (empty for one objective).

    Args:
        logger: the sweep's ``tracker.mlflow_log.SweepLogger``.
        records: every trial of the sweep.
        objectives: (name, goal) pairs; fewer than two: nothing to do.
    """
    if len(objectives) < 2:
        return {}
    front = pareto_front(records, objectives)
    for record, _ in front:
        logger.set_tags(record.run_id, {schema.PARETO: "true"})
    names, goals = [n for n, _ in objectives], [g for _, g in objectives]
    points = [[values[n] for n in names] for _, values in scored_objectives(records, objectives)]
    return {schema.HYPERVOLUME: hypervolume(points, goals), schema.PARETO_SIZE: float(len(front))}
