"""A stored trial's per-epoch history, read from the store; a re-run's read together with its killed runs'.

Kept apart from ``hpo.resume`` so ``hpo reproduce`` reads histories the same way without the resume planning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tracker import schema


def epoch_history(client: Any, run: Any, summary: tuple[str, ...]) -> dict[str, list[float | None]]:
    """A trial run's per-epoch metrics: name -> values by epoch (index 0 = epoch 1; None where not logged
    or not finite). Metrics named with a ``summary`` prefix (``best_``, ``final_``, ``epochs_run``: step 0)
    are left out."""
    history: dict[str, list[float | None]] = {}
    for key in run.data.metrics:
        if key.startswith(summary):
            continue
        # by step, then time: a point logged again at a step (a hand correction) is the one that counts
        points = sorted(client.get_metric_history(run.info.run_id, key), key=lambda p: (p.step, p.timestamp))
        last = max((p.step for p in points), default=0)
        values: list[float | None] = [None] * last
        for p in points:
            if 1 <= p.step <= last:
                values[p.step - 1] = p.value if math.isfinite(p.value) else None
        history[key] = values
    return history


def stitch_reruns(trials: Sequence[Any]) -> None:
    """Give each re-run the epochs its killed run(s) logged: a re-run that continued from a saved state
    logs only the epochs they had not, and the sampler, scheduler and diagnosis want the whole curve."""
    by_id = {t.run_id: t for t in trials}
    for trial in trials:
        seen, earlier = {trial.run_id}, by_id.get(trial.tags.get(schema.REPLACES, ""))
        while earlier is not None and earlier.run_id not in seen:
            seen.add(earlier.run_id)
            for key, values in earlier.history.items():
                mine = trial.history.setdefault(key, [])
                mine.extend([None] * (len(values) - len(mine)))
                trial.history[key] = [v if v is not None else values[i] if i < len(values) else None
                                      for i, v in enumerate(mine)]
            earlier = by_id.get(earlier.tags.get(schema.REPLACES, ""))
