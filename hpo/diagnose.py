"""Glue between sweeps and ``tracker.diagnosis``: diagnose trials as they end, and runs read from a store."""

from __future__ import annotations

import json
import re
from typing import Any

from hpo.errors import ConfigError, TrackingError
from hpo.results import TrialRecord
from tracker import schema
from tracker.diagnosis import Diagnosis, diagnose, summarize_sweep

# Histories the diagnosis reads; the rest of a trial's metrics do not describe a learning curve.
CURVE_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr")


# The trainer's own exception, or a non-finite value named as a word (not "nan" inside "maintenance").
_DIVERGED_ERROR = re.compile(r"\bDiverged\b|\b(?:nan|inf)\b", re.IGNORECASE)


def diagnose_record(record: TrialRecord, n_classes: int | None) -> Diagnosis | None:
    """Diagnose a trial that has ended from what the driver saw of it; None when it reported nothing."""
    return _diagnose_curves(record.history, record.status, record.error, record.config, n_classes,
                            record.early_stopped)


def _diagnose_curves(
    history: dict[str, list[float | None]], status: str | None, error: str | None, params: dict[str, Any],
    n_classes: int | None, stopped_early: bool = False,
) -> Diagnosis | None:
    """A trial that failed because its loss became NaN/inf gets a NaN appended to its training loss:
    the epoch that diverged never reached a report (nor the store), but it is the strongest evidence there is.
    """
    curves = {k: list(v) for k, v in history.items() if k in CURVE_KEYS}
    if status == "FAILED" and isinstance(error, str) and _DIVERGED_ERROR.search(error):
        curves.setdefault("train_loss", []).append(float("nan"))
    if not curves:
        return None
    return diagnose(curves, params=params, n_classes=n_classes, stopped_early=stopped_early)


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
        ConfigError: no such run or sweep.
        TrackingError: the store cannot be read.
    """
    from hpo import defaults
    from tracker.queries import RunNotFound, Store, StoreUnavailable, history_dict

    uri = defaults.tracking_uri(tracking_uri)
    try:
        store = Store(uri)
        parent = store.find_sweep(target)
        if parent is None:
            try:
                trial = store.trial(target)
            except RunNotFound:
                raise ConfigError(
                    f"no trial run, sweep run or sweep named {target!r} in {store.display_uri}"
                ) from None
            if trial.tags.get(schema.ROLE) != schema.ROLE_SWEEP:
                # the same inputs the sweep diagnosed at trial end, so the answer matches the run's tags
                result = _diagnose_curves(trial.curves(), trial.status, trial.tags.get(schema.ERROR),
                                          trial.params, _n_classes(trial.tags),
                                          trial.tags.get(schema.EARLY_STOPPED) == "true")
                if result is None:
                    result = diagnose({}, params=trial.params)  # says there is nothing to judge
                return {"kind": "trial", "run_id": trial.run_id, **result.to_dict()}
            parent = target
        data = store.sweep(parent)
    except StoreUnavailable as e:
        raise TrackingError(str(e)) from e
    except RunNotFound as e:
        raise ConfigError(str(e)) from None
    trials = []
    pairs = []
    for _, row in data.trials.iterrows():
        params = {c[2:]: row[c] for c in data.trials.columns if c.startswith("p.") and _present(row[c])}
        error = row["error"] if isinstance(row["error"], str) else None
        result = _diagnose_curves(history_dict(data.histories, row["run_id"]), row["status"], error, params,
                                  _n_classes(data.tags), bool(row["early_stopped"]))
        if result is None:
            continue
        pairs.append((params, result))
        trials.append({"run_id": row["run_id"], "trial_number": _int(row["trial_number"]), "status": row["status"],
                       "verdict": result.verdict, "confidence": result.confidence, "summary": result.summary})
    summary = summarize_sweep(pairs).to_dict() if pairs else None
    return {"kind": "sweep", "sweep": data.name, "parent_run_id": data.run_id, "summary": summary, "trials": trials}


def _n_classes(tags: dict[str, str]) -> int | None:
    from trainers.tasks import TASKS

    task = tags.get(schema.TASK)
    return TASKS[task].n_classes if isinstance(task, str) and task in TASKS else None


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def _int(value: Any) -> int | None:
    return int(value) if _present(value) else None


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
