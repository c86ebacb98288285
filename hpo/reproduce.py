"""``hpo reproduce RUN_ID``: run one stored trial again and compare its per-epoch metrics with the store's.

The trial runs again **in this process**, not as a Ray trial: its trainable is ``fit(config, report)``
(or your ``train(config, report)``) behind a reporter, so nothing Ray adds changes a number, and a
fresh local Ray would cost seconds to start for no gain. What makes the CPU path bit-identical is what
the store records (``tracker.schema``): the trial's full config (seed included: initialisation, batch
order, augmentation all derive from it), the task and the sweep's trainer settings (the sweep run's
``resolved_config.json``), and the torch thread count (``hpo.threads``): the same config on 1 and on 2
threads differs in the 7th digit of the losses, on the same count it is identical to the bit. Wall-clock
metrics (``epoch_seconds``, ``latency_ms``) are left out of the comparison.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hpo.config import Choice, SweepConfig
from hpo.errors import ConfigError
from hpo.provenance import environment_tags, git_commit
from hpo.results import fixed_settings
from tracker import schema
from tracker.params import parse_param

SOURCE = "hpo reproduce"
_SUMMARY = (schema.BEST_PREFIX, schema.FINAL_PREFIX, schema.EPOCHS_RUN)  # step-0 metrics, not per epoch


@dataclass(frozen=True)
class StoredTrial:
    """What the store holds of one trial: enough to run it again and to check the rerun."""

    run_id: str
    sweep: SweepConfig
    config: dict[str, Any]
    history: dict[str, list[float | None]]
    tags: dict[str, str]
    status: str

    @property
    def epochs(self) -> int:
        return max((len(values) for values in self.history.values()), default=0)


@dataclass
class Comparison:
    """Stored per-epoch metrics against a rerun's: the largest absolute difference per metric, and the
    first (epoch, metric) whose difference exceeds the tolerance."""

    tolerance: float
    epochs: int  # epochs compared
    max_diff: dict[str, float] = field(default_factory=dict)
    first: tuple[int, str, float | None, float | None] | None = None  # epoch, metric, stored, rerun

    @property
    def reproduced(self) -> bool:
        return self.first is None


def load_trial(client: Any, run_id: str) -> StoredTrial:
    """The trial run ``run_id`` with its sweep's config, typed params and per-epoch history.

    Raises:
        ConfigError: no such run, or a run that is not a trial (a sweep or compression run).
    """
    from hpo.resume import stored_sweep
    from hpo.stored_history import epoch_history

    run = _get_run(client, run_id)
    if run is None:
        raise ConfigError(f"no run with id {run_id!r} in the store; `hpo best NAME --json` lists a sweep's trials "
                          "with their run ids", source=SOURCE)
    kind = schema.run_kind(run.data.tags)
    if kind not in (schema.KIND_TRIAL, schema.KIND_CONFIRM):  # a confirm run is a trial with a fresh seed
        raise ConfigError(f"run {run_id} is a {kind or 'foreign'} run, not a trial: reproduce runs one trial again; "
                          "give a trial's run id (`hpo best NAME --json` lists them)", source=SOURCE)
    parent = _get_run(client, run.data.tags.get(schema.PARENT_RUN_ID, ""))
    if parent is None:
        raise ConfigError(f"trial {run_id} has no sweep run in the store (its parent run is gone): its task and "
                          "trainer settings are unknown", source=SOURCE)
    sweep, _ = stored_sweep(client, parent, {})
    return StoredTrial(run_id, sweep, typed_config(run.data.params, sweep), epoch_history(client, run, _SUMMARY),
                       dict(run.data.tags), run.info.status)


def _get_run(client: Any, run_id: str) -> Any | None:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises its own error type per store for an unknown id
        return None


def typed_config(params: Mapping[str, str], sweep: SweepConfig) -> dict[str, Any]:
    """A trial's config from its MLflow params (text): fixed settings from the sweep as they were given,
    a choice as the very value it was (``"32"`` stays a string when the choices were strings), lists and
    mappings from their JSON, other values through ``parse_param``."""
    import json

    fixed = fixed_settings(sweep)
    config: dict[str, Any] = {}
    for name, text in params.items():
        param = sweep.parameters.get(name)
        if name in fixed:
            config[name] = fixed[name]
        elif isinstance(param, Choice) and (match := [v for v in param.values if _as_text(v) == text]):
            config[name] = match[0]
        elif text.startswith(("[", "{")):
            try:
                config[name] = json.loads(text)
            except ValueError:
                config[name] = text
        else:
            config[name] = parse_param(text)
    return config


def _as_text(value: Any) -> str:
    """A param value as ``tracker.mlflow_log`` writes it."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def compare(
    stored: Mapping[str, Sequence[float | None]], rerun: Sequence[Mapping[str, float]], tolerance: float,
    ignore: Sequence[str] = schema.TIMING_METRICS,
) -> Comparison:
    """Epoch by epoch, every stored metric (but ``ignore``; a name ending in ``/`` is a prefix) against the
    rerun's report of that epoch.

    An epoch the store has no value for (not logged, or not finite) matches a rerun value that is missing
    or not finite; a stored value the rerun does not report differs (its rerun value is None).
    """
    epochs = min(len(rerun), max((len(v) for v in stored.values()), default=0))
    result = Comparison(tolerance, epochs)
    skipped = (*ignore, *(f"{name}_std" for name in ignore))
    prefixes = tuple(name for name in ignore if name.endswith("/"))  # "signals/": every training signal
    names = sorted(name for name in stored if name not in skipped and not name.startswith(prefixes))
    # a re-run that continued a killed run from its checkpoint holds only the epochs after it
    logged = {i + 1 for name in names for i, v in enumerate(stored[name]) if v is not None}
    for epoch in sorted(e for e in logged if e <= epochs):
        report = rerun[epoch - 1]
        for name in names:
            values = stored[name]
            old = values[epoch - 1] if epoch <= len(values) else None
            new = report.get(name)
            new = new if new is not None and math.isfinite(new) else None
            diff = 0.0 if old is None and new is None else math.inf if old is None or new is None else abs(new - old)
            result.max_diff[name] = max(result.max_diff.get(name, 0.0), diff)
            if diff > tolerance and result.first is None:
                result.first = (epoch, name, old, new)
    return result


class _Enough(BaseException):
    """Raised from the report once the rerun has as many epochs as the store: a BaseException, so a
    trainer's own ``except Exception`` cannot swallow it."""


def rerun(
    trial: StoredTrial, threads: int, epochs: int | None
) -> tuple[list[dict[str, float]], BaseException | None]:
    """Train the trial again in this process on ``threads`` torch threads, stopping after ``epochs``
    reports (None: as long as the trainer runs).

    Returns:
        The reports (one per epoch), and the exception the trainer raised, if any (a diverged trial
        raises again where it did).
    """
    import torch

    from hpo.trainable import trial_config
    from trainers.imports import import_callable

    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    reports: list[dict[str, float]] = []
    wanted = sys.maxsize if epochs is None else epochs

    def report(metrics: Mapping[str, float], checkpoint: Any = None) -> None:
        reports.append({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
        if len(reports) >= wanted:
            raise _Enough

    config = trial_config(fixed_settings(trial.sweep), trial.config)
    trainer = trial.sweep.trainer
    if (trainer.function or trainer.user_parts) and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # your modules beside the sweep file, as the runner's PYTHONPATH has it
    try:
        if trainer.function is not None:
            import_callable(trainer.function)(config, report)
        else:
            from trainers.loop import fit
            from trainers.user_parts import user_model_and_data

            data, build = user_model_and_data(dict(trainer.user_parts or {}), config)
            fit(config, report, task=trainer.task, metric=trial.sweep.metric.name, goal=trial.sweep.metric.goal,
                data=data, build=build)
    except _Enough:
        pass
    except Exception as e:  # noqa: BLE001 - the trainer's own failure is a result to compare, not a crash
        return reports, e
    finally:
        torch.set_num_threads(threads_before)
    return reports, None


def provenance_warnings(tags: Mapping[str, str]) -> list[str]:
    """What differs between the environment the trial ran in and this one: torch, Python, hpo, git commit."""
    now = environment_tags()
    out = []
    for name in ("torch", "python", "hpo"):
        key = schema.VERSION_PREFIX + name
        if tags.get(key) and now.get(key) and tags[key] != now[key]:
            out.append(f"the trial ran with {name} {tags[key]}, this is {name} {now[key]}: numbers may differ")
    recorded, current = tags.get(schema.GIT_COMMIT), git_commit(os.getcwd())
    if recorded and current and recorded != current:
        out.append(f"the trial ran at git commit {recorded}, this folder is at {current}: the code may differ")
    elif recorded and recorded.endswith("+dirty"):
        out.append(f"the trial ran at {recorded}: uncommitted changes then may differ from the files now")
    return out


def thread_count(trial: StoredTrial) -> tuple[int, str | None]:
    """The torch threads to rerun with: the recorded ``hpo.threads``, else the sweep's ``resources.cpu``
    (with a warning: runs from before the tag)."""
    text = trial.tags.get(schema.THREADS, "")
    if text.isdigit() and int(text) >= 1:
        return int(text), None
    threads = max(1, int(trial.sweep.resources.cpu))
    return threads, (f"the trial's thread count was not recorded ({schema.THREADS}); using resources.cpu = "
                     f"{threads}: another count changes the last bits of CPU results")


def reproduce(client: Any, run_id: str, tolerance: float, ignore: Sequence[str]) -> dict[str, Any]:
    """Run trial ``run_id`` again and compare; the result as a JSON-ready document (``reproduced`` says it).

    Raises:
        ConfigError: unknown id, not a trial, a DDP trial, or a negative tolerance.
    """
    if not tolerance >= 0:
        raise ConfigError(f"--tol must be a number >= 0, got {tolerance}", source=SOURCE)
    trial = load_trial(client, run_id)
    if trial.sweep.workers > 1:
        raise ConfigError(f"trial {run_id} trained on {trial.sweep.workers} DDP workers; reproduce runs "
                          "single-process trials only", source=SOURCE)
    threads, note = thread_count(trial)
    warnings = provenance_warnings(trial.tags) + ([note] if note else [])
    # a trial that failed by itself (not by a timeout) runs on until it fails again, or does not
    failed = trial.status == "FAILED" and trial.tags.get(schema.STOPPED_BY) != schema.STOPPED_BY_TIMEOUT
    reports, error = rerun(trial, threads, None if failed else trial.epochs)
    result = compare(trial.history, reports, tolerance, (*schema.TIMING_METRICS, *ignore))
    doc: dict[str, Any] = {
        "run_id": run_id, "sweep": trial.tags.get(schema.SWEEP), "trial_number": trial.tags.get(schema.TRIAL_NUMBER),
        "status": trial.status, "threads": threads, "epochs_stored": trial.epochs, "epochs_rerun": len(reports),
        # a value one side lacks differs without measure: null in JSON (strict JSON has no Infinity)
        "tolerance": tolerance, "warnings": warnings,
        "max_abs_diff": {k: v if math.isfinite(v) else None for k, v in result.max_diff.items()},
        "ignored": sorted({*schema.TIMING_METRICS, *ignore}), "error": None if error is None else repr(error),
    }
    first = result.first
    short = len(reports) < trial.epochs or (failed and len(reports) != trial.epochs)
    if first is not None:
        epoch, name, old, new = first
        doc["first_difference"] = {"epoch": epoch, "metric": name, "stored": old, "rerun": new}
    elif short:
        doc["first_difference"] = {"epoch": min(len(reports), trial.epochs) + 1, "metric": None, "stored": None,
                                   "rerun": None}
    else:
        doc["first_difference"] = None
    # a stored failure is reproduced when the rerun fails too, after the same epochs
    doc["reproduced"] = doc["first_difference"] is None and (error is not None) == failed
    doc["stored_error"] = trial.tags.get(schema.ERROR) if failed else None
    return doc


def render(doc: Mapping[str, Any]) -> str:
    """The comparison as text: one row per metric with its largest absolute difference, then the verdict."""
    lines = [f"trial {doc['trial_number']} of sweep {doc['sweep']} (run {doc['run_id']}, {doc['status']}): "
             f"rerun in this process on {doc['threads']} thread(s), {doc['epochs_rerun']} of "
             f"{doc['epochs_stored']} stored epoch(s)"]
    width = max((len(name) for name in doc["max_abs_diff"]), default=6)
    lines.append(f"  {'metric':<{width}}  max |diff|")
    lines += [f"  {name:<{width}}  {'one side has no value' if diff is None else f'{diff:.3g}'}"
              for name, diff in sorted(doc["max_abs_diff"].items())]
    lines.append(f"  (not compared: {', '.join(doc['ignored'])})")
    tol = "exact" if doc["tolerance"] == 0 else f"within {doc['tolerance']:g}"
    first = doc["first_difference"]
    if doc["reproduced"]:
        failed = f"; it failed again as stored: {doc['error']}" if doc["error"] else ""
        lines.append(f"reproduced ({tol}): every compared metric of {doc['epochs_rerun']} epoch(s){failed}")
    elif first is not None and first["metric"] is None:
        why = f": the rerun raised {doc['error']}" if doc["error"] else ""
        lines.append(f"not reproduced: the rerun reported {doc['epochs_rerun']} epoch(s), the store holds "
                     f"{doc['epochs_stored']}{why}")
    elif first is not None:
        lines.append(f"not reproduced ({tol}): {first['metric']} differs first at epoch {first['epoch']}: "
                     f"stored {first['stored']}, rerun {first['rerun']}")
        differ = [n for n, d in doc["max_abs_diff"].items() if d is None or d > doc["tolerance"]]
        signals = schema.SIGNALS_PREFIX
        if differ and all(n.startswith(signals) for n in differ):
            lines.append(f"  only the training signals ({signals}*) differ: they measure training, they do not "
                         "change it, and their sampling changed on 2026-12-01 (4 steps per epoch, units counted "
                         f"on the evaluation); --ignore {signals} compares the training alone")
    elif doc["error"]:
        lines.append(f"not reproduced: the stored trial {doc['status']}, the rerun raised {doc['error']}")
    else:
        lines.append(f"not reproduced: the stored trial FAILED ({doc['stored_error']}), the rerun did not fail")
    return "\n".join(lines)
