"""Glue between sweeps and ``hpo.diagnosis``: diagnose trials as they end, and runs read from a store."""

from __future__ import annotations

import json
from typing import Any

from hpo.diagnosis import (
    Diagnosis,
    diagnose,
    diagnose_stored_trial,
    diagnose_trial,
    diagnose_trial_row,
    summarize_sweep,
    task_val_size,
)
from hpo.errors import ConfigError, tracking_errors
from hpo.results import TrialRecord
from tracker import schema
from tracker.params import present


def diagnose_record(record: TrialRecord, n_classes: int | None, task: str | None = None) -> Diagnosis | None:
    """Diagnose a trial that has ended from what the driver saw of it; None when it reported nothing."""
    return diagnose_trial(record.history, status=record.status, error=record.error, params=record.config,
                          n_classes=n_classes, stopped_early=record.early_stopped,
                          val_size=task_val_size(task, record.config))


def trial_tags(result: Diagnosis) -> dict[str, str]:
    """The MLflow tags that make a trial filterable by verdict in the MLflow UI."""
    return {schema.DIAGNOSIS: result.verdict, schema.DIAGNOSIS_CONFIDENCE: f"{result.confidence:.2f}"}


def summary_line(summary: Any) -> str:
    """One line for the parent run's tag: shares per verdict and the strongest driver."""
    shares = ", ".join(f"{v} {s:.0%}" for v, s in summary.shares.items() if s > 0)
    driver = summary.drivers[0] if summary.drivers else ""
    return f"{shares}. {driver}".strip().rstrip(".") + "."


def sweep_summary(records: list[TrialRecord]) -> Any | None:
    """The sweep-level summary over the trials that got a diagnosis."""
    pairs = [(r.config, r.diagnosis) for r in records if isinstance(r.diagnosis, Diagnosis)]
    return summarize_sweep(pairs) if pairs else None


# -- reading back from a store (``hpo diagnose RUN_ID``) -------------------------------------------
def diagnose_stored(target: str, tracking_uri: str | None) -> dict[str, Any]:
    """Diagnose a trial run, or summarise a sweep (by parent run id or sweep name), read from the store.

    Returns:
        ``{"kind": "trial", ...diagnosis}`` or ``{"kind": "sweep", "summary": ..., "trials": [...]}``.

    Raises:
        ConfigError: no such run or sweep, or the run is of another kind (``hpo compress``'s).
        TrackingError: the store cannot be read.
    """
    from hpo import defaults
    from tracker.queries import PARAM_PREFIX, RunNotFound, Store, history_dict

    uri = defaults.tracking_uri(tracking_uri)
    with tracking_errors():
        store = Store(uri)
        parent = store.find_sweep(target)
        if parent is None:
            try:
                trial = store.trial(target)
            except RunNotFound:
                raise ConfigError(
                    f"no trial run, sweep run or sweep named {target!r} in {store.display_uri}"
                ) from None
            # a compressed model has no curves to judge
            if trial.kind not in (schema.KIND_TRIAL, schema.KIND_CONFIRM, schema.KIND_SWEEP):
                shown = f"a {trial.kind} run" if trial.kind else f"not a run hpo wrote (no {schema.RUN_KIND} tag)"
                raise ConfigError(f"run {target!r} is {shown}: hpo diagnose takes a trial run, a sweep run or a "
                                  "sweep name", source="hpo diagnose")
            if trial.kind in (schema.KIND_TRIAL, schema.KIND_CONFIRM):  # a confirm run is a trial with a new seed
                # the one path the sweep diagnosed with at trial end, so the answer matches the run's tags
                result = diagnose_stored_trial(trial)
                if result is None:
                    result = diagnose({}, params=trial.params)  # says there is nothing to judge
                return {"kind": "trial", "run_id": trial.run_id, **result.to_dict()}
            parent = target
        try:
            data = store.sweep(parent)
        except RunNotFound as e:
            raise ConfigError(str(e)) from None
    trials = []
    pairs = []
    for row in data.trials.to_dict("records"):
        params = {c[len(PARAM_PREFIX):]: v for c, v in row.items() if c.startswith(PARAM_PREFIX) and present(v)}
        result = diagnose_trial_row(row, history_dict(data.histories, row["run_id"]), params, data.tags)
        if result is None:
            continue
        pairs.append((params, result))
        number = row["trial_number"]
        trials.append({"run_id": row["run_id"], "trial_number": int(number) if present(number) else None,
                       "status": row["status"], "verdict": result.verdict, "confidence": result.confidence,
                       "summary": result.summary})
    summary = summarize_sweep(pairs).to_dict() if pairs else None
    return {"kind": "sweep", "sweep": data.name, "parent_run_id": data.run_id, "summary": summary, "trials": trials}


def render(doc: dict[str, Any]) -> str:
    """Human-readable text of a trial diagnosis or a sweep summary."""
    if doc.get("kind") == "sweep":
        lines = [f"sweep {doc['sweep']} (run {doc['parent_run_id']}): {len(doc['trials'])} trials diagnosed"]
        summary = doc.get("summary") or {}
        for verdict, count in (summary.get("counts") or {}).items():
            lines.append(f"  {verdict:<14} {count}")
        for driver in summary.get("drivers") or []:
            lines.append(f"  - {driver}")
        lines.append("")
        for t in doc["trials"]:
            lines.append(f"  trial {t['trial_number']}: {t['verdict']} ({t['confidence']:.2f}) {t['summary']}")
        return "\n".join(lines)
    lines = [f"verdict: {doc['verdict']} (confidence {doc['confidence']:.2f})", doc.get("summary", "")]
    if doc.get("findings"):
        lines.append("findings: " + ", ".join(doc["findings"]))
    lines.append("evidence:")
    lines += [f"  {k}: {json.dumps(v)}" for k, v in doc.get("evidence", {}).items()]
    lines.append("recommendations:")
    lines += [f"  - {r}" for r in doc.get("recommendations", [])]
    return "\n".join(line for line in lines if line is not None)
