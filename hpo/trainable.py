"""The function each Ray Tune trial runs: the one adapter between Ray and ``trainers``.

It builds the trial's full config, calls the trainer (the built-in loop or the user's
``train(config, report)``), and turns each report into ``ray.tune.report`` with the running best of
the sweep metric; a best epoch's weights travel as a Ray checkpoint into Ray Tune's storage, which
every node of a multi-node cluster must share (the compose file mounts one volume on all of them).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hpo.checkpoints import save_checkpoint
from hpo.objectives import objective_key
from hpo.trial_keys import BEST_KEY, DEVICE_KEY, GRID_INDEX, NODE_KEY, RESUMED_KEY, TIME_KEY
from trainers.imports import import_callable


def trial_config(fixed: Mapping[str, Any], sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The config the trainer sees: fixed settings overlaid by the sampled ones, grid index dropped."""
    return {**fixed, **{k: v for k, v in sampled.items() if k != GRID_INDEX}}


def pinned_user_parts(user_parts: Mapping[str, str]) -> dict[str, str]:
    """``Trainer.user_parts`` with its data files made absolute: trials (and the test scoring) may run
    elsewhere, so the paths are pinned to the folder hpo runs in."""
    pinned = dict(user_parts)
    for name in ("data_file", "test_file"):
        if name in pinned:
            pinned[name] = os.path.abspath(pinned[name])
    return pinned


def make_trainable(
    *,
    task: str | None,
    function: str | None,
    fixed: Mapping[str, Any],
    metric: str,
    goal: str,
    threads: int,
    user_parts: Mapping[str, str] | None = None,
    workers: int = 1,
    resources: Mapping[str, float] | None = None,
    objectives: Sequence[tuple[str, str]] = (),
    states: str | None = None,
    resume_keys: frozenset[str] = frozenset(),
) -> Callable[[dict[str, Any]], None]:
    """Build the Tune function trainable (closed over plain data only, so it pickles to any node).

    ``user_parts``: your own ``model`` / ``data`` / ``data_file`` (+ ``target``) for the built-in loop.
    ``workers`` > 1: the built-in loop on that many DDP workers (``hpo.distributed``), each with
    ``resources`` (``{"cpu": ..., "gpu": ...}``).
    ``objectives``: (name, goal) of every objective of a multi-objective sweep, the first being ``metric``;
    each report must hold them all, and carries their values at the first objective's best epoch.
    ``states``: the folder where the built-in single-process loop keeps each trial's resumable state
    (``hpo.trial_state``; None: none kept); ``resume_keys``: the state keys of re-runs of killed trials,
    which continue from their state instead of starting over.
    """
    fixed = dict(fixed)
    user_parts = pinned_user_parts(user_parts or {})

    def trainable(sampled: dict[str, Any]) -> None:
        import ray
        import torch
        from ray import tune

        torch.set_num_threads(max(1, threads))  # several trials share the cores
        config = trial_config(fixed, sampled)
        reporter = _TuneReporter(tune, metric, goal, ray.get_runtime_context().get_node_id(), objectives)
        if workers > 1:
            from hpo.distributed import run_ddp_trial

            run_ddp_trial(config, reporter, workers=workers, cpu=float((resources or {}).get("cpu", 1.0)),
                          gpu=float((resources or {}).get("gpu", 0.0)), user_parts=user_parts, threads=threads,
                          fit_kwargs={"task": task, "metric": metric, "goal": goal})
        elif function is not None:
            import_callable(function)(config, reporter)
        else:
            from trainers.loop import NoState, TrainState, fit
            from trainers.user_parts import user_model_and_data

            data, build = user_model_and_data(user_parts, config)
            state: TrainState = NoState()
            if states is not None:
                from hpo.trial_state import FileState, state_key

                key = state_key(config)
                state = file_state = FileState(states, key, resume=key in resume_keys)
                reporter.first_extra = lambda: {RESUMED_KEY: float(file_state.resumed_epoch)}
            fit(config, reporter, task=task, metric=metric, goal=goal, data=data, build=build, state=state)

    return trainable


class MetricNotReported(RuntimeError):
    """A trainer's report lacks the sweep metric (or an objective), or holds NaN/inf for it: the trial fails."""


class _TuneReporter:
    """``report(metrics, checkpoint=None)`` for trainers, backed by ``ray.tune.report``.

    ``checkpoint`` may be a dict (saved with ``torch.save``) or a directory path to copy.
    """

    def __init__(
        self, tune: Any, metric: str, goal: str, node_id: str | None = None, objectives: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._tune = tune
        self._node_id = node_id
        self._metric = metric
        self._maximize = goal == "maximize"
        self._best: float | None = None
        self._reports = 0
        self._others = [name for name, _ in objectives[1:]]  # objectives after the first (== metric)
        self._at_best: dict[str, float] = {}
        self.first_extra: Callable[[], dict[str, Any]] = dict  # more to send with the first report

    def __call__(self, metrics: Mapping[str, float], checkpoint: Any = None) -> None:
        self._reports += 1
        values = {k: float(v) for k, v in metrics.items()}
        value = values.get(self._metric)
        # Tune checks every result for the metric its searcher and scheduler use, and a miss there ends the
        # whole sweep: fail this trial instead, saying what it reported.
        if value is None:
            raise MetricNotReported(
                f"report {self._reports} holds {sorted(values) or 'no metrics'} but not the sweep metric "
                f"{self._metric!r}; report it every time, or change metric.name"
            )
        if not math.isfinite(value):
            raise MetricNotReported(f"the sweep metric {self._metric} is {value} at report {self._reports}")
        self._check_objectives(values)
        if self._best is None or (value > self._best if self._maximize else value < self._best):
            self._best = value
            self._at_best = {name: values[name] for name in self._others}
        values[BEST_KEY] = self._best
        # what Optuna is told for the other objectives: their values at the first objective's best epoch
        values.update({objective_key(i, name): self._at_best[name] for i, name in enumerate(self._others, 1)})
        values.setdefault("epoch", float(self._reports))
        # Ray overwrites "timestamp" with whole seconds; the driver logs this one as the points' MLflow time.
        values[TIME_KEY] = time.time()
        report: dict[str, Any] = values
        if self._reports == 1 and self._node_id:  # where the trial runs, once: the driver tags its run with it
            import torch

            report = {**values, NODE_KEY: self._node_id, DEVICE_KEY: "cuda" if torch.cuda.is_available() else "cpu",
                      **self.first_extra()}
        if checkpoint is None:
            self._tune.report(report)
            return
        from ray.tune import Checkpoint

        with tempfile.TemporaryDirectory() as folder:
            if isinstance(checkpoint, str | os.PathLike):
                folder = os.fspath(checkpoint)
            else:
                save_checkpoint(checkpoint, folder)
            self._tune.report(report, checkpoint=Checkpoint.from_directory(folder))

    def _check_objectives(self, values: Mapping[str, float]) -> None:
        """Every objective in every report, finite: Ray's OptunaSearch would swallow Optuna's refusal."""
        missing = [name for name in self._others if name not in values]
        if missing:
            raise MetricNotReported(
                f"report {self._reports} holds {sorted(values)} but not the objective(s) {', '.join(missing)} "
                "of this multi-objective sweep; report every objective every time, or remove it from metric"
            )
        for name in self._others:
            if not math.isfinite(values[name]):
                raise MetricNotReported(f"the objective {name} is {values[name]} at report {self._reports}")

