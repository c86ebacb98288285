"""What the CLI prints: the end-of-run leaderboard, the ``--json`` document, ``hpo best``."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from typing import Any

from hpo.errors import ConfigError, tracking_errors
from hpo.results import SweepResult, TrialRecord, error_summary, leaderboard
from tracker import schema
from tracker.mlflow_log import redact, sqlite_path
from tracker.params import present

MAX_PARAM_COLUMNS = 8


def result_json(result: SweepResult) -> dict[str, Any]:
    """The one JSON document ``hpo run --json`` prints."""

    def trial(r: TrialRecord) -> dict[str, Any]:
        return {
            "run_id": r.run_id,
            "trial_number": r.number,
            "status": r.status,
            "early_stopped": r.early_stopped,
            "params": r.config,
            "metric": _finite(r.best),
            "final_metric": _finite(r.final),
            "epochs": r.epochs,
            "error": error_summary(r.error) or None,
            "diagnosis": _verdict(r),
        }

    best = result.best
    return {
        "sweep": result.sweep,
        "parent_run_id": result.parent_run_id,
        "experiment_id": result.experiment_id,
        "tracking_uri": redact(result.tracking_uri),
        "metric": {"name": result.metric, "goal": result.goal},
        "best": None if best is None else {"run_id": best.run_id, "params": best.config, "metric": _finite(best.best)},
        "trials": [trial(r) for r in result.trials],
        "interrupted": result.interrupted,
        "elapsed_s": round(result.elapsed_s, 2),
    }


def _verdict(record: TrialRecord) -> str | None:
    return getattr(record.diagnosis, "verdict", None)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def varying_params(records: list[TrialRecord]) -> list[str]:
    """Parameter names whose value differs between trials (the ones worth a column)."""
    names: list[str] = []
    for record in records:
        for name in record.config:
            if name not in names:
                names.append(name)
    return [n for n in names if len({repr(r.config.get(n)) for r in records}) > 1]


def leaderboard_text(result: SweepResult, top: int | None = None) -> str:
    """The leaderboard as a plain-text table, best first."""
    ordered = leaderboard(result.trials, result.goal)
    if top is not None:
        ordered = ordered[:top]
    params = varying_params(result.trials)[:MAX_PARAM_COLUMNS]
    header = leaderboard_header(result.metric, params)
    rows = []
    for rank, r in enumerate(ordered, 1):
        failed = f"{_verdict(r) or 'failed'}: {error_summary(r.error)[:60]}"
        verdict = _verdict(r) or "" if r.status != "FAILED" else failed
        rows.append(leaderboard_row(rank if r.best is not None and r.status != "FAILED" else None, r.number,
                                    "STOPPED" if r.early_stopped else r.status, r.best, r.epochs, r.config, params,
                                    verdict))
    counts = _counts(result.trials)
    title = f"sweep {result.sweep}: {counts} in {result.elapsed_s:.1f}s"
    title += " (interrupted)" if result.interrupted else ""
    if not rows:
        return title + "\nno trial started"
    return title + "\n" + table(header, rows)


def _counts(records: list[TrialRecord]) -> str:
    finished = sum(r.status == "FINISHED" for r in records)
    stopped = sum(r.early_stopped for r in records)
    failed = sum(r.status == "FAILED" for r in records)
    killed = sum(r.status == "KILLED" and not r.early_stopped for r in records)
    parts = [f"{finished} finished", f"{stopped} stopped early", f"{failed} failed"]
    if killed:
        parts.append(f"{killed} interrupted")
    return ", ".join(parts)


def leaderboard_header(metric: str | None, params: list[str]) -> list[str]:
    """The columns of every leaderboard we print (``hpo run``'s and ``hpo best``'s)."""
    return ["rank", "trial", "status", str(metric), "epochs", *params, "diagnosis"]


def leaderboard_row(
    rank: int | None, number: int | None, status: str, metric: float | None, epochs: int | None,
    values: Mapping[str, Any], params: list[str], verdict: str,
) -> list[str]:  # fmt: skip
    """One leaderboard line as text, in the columns of :func:`leaderboard_header` (``-`` for no rank)."""
    return [_fmt(rank), _fmt(number), status, _fmt(metric), _fmt(epochs), *(_fmt(values.get(p)) for p in params),
            verdict]


def table(header: list[str], rows: list[list[str]]) -> str:
    """A left-aligned plain-text table."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: Any) -> str:
    """A cell: ``-`` for None, 4 significant digits for floats (a NaN metric shows as nan)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def where_to_look(result: SweepResult, uri: str) -> str:
    """Commands that open this sweep in the MLflow UI and the dashboard."""
    best = result.best
    lines = []
    if best is not None:
        lines.append(f"best: trial {best.number} ({result.metric} {_fmt(best.best)}), run {best.run_id}")
    lines.append(f"sweep run: {result.parent_run_id} in {redact(uri)}")
    if uri.startswith(("http://", "https://")):
        lines.append(f"MLflow UI:  {redact(uri)}/#/experiments/{result.experiment_id}/runs/{result.parent_run_id}")
    elif "@" in uri:  # a database URI that may carry a password: never print it
        lines.append("MLflow UI:  mlflow ui --backend-store-uri \"$MLFLOW_TRACKING_URI\" --host 127.0.0.1 --port 5000")
    else:
        db = sqlite_path(uri)
        store = shlex.quote(uri) if db is None else shlex.quote(f"sqlite:///{db}")
        lines.append(f"MLflow UI:  mlflow ui --backend-store-uri {store} --host 127.0.0.1 --port 5000")
    lines.append(f"dashboard:  hpo dashboard --tracking-uri {shlex.quote(redact(uri))}" if "@" not in uri
                 else "dashboard:  hpo dashboard  (with MLFLOW_TRACKING_URI set)")
    lines.append(f"top trials: hpo best {result.sweep}")
    return "\n".join(lines)


def best_from_store(name: str, tracking_uri: str | None, top: int) -> tuple[dict[str, Any], str]:
    """The top trials of sweep ``name`` (or of the parent run with that id) read back from the store.

    Raises:
        TrackingError: the store cannot be read.
        ConfigError: no sweep of that name exists there.
    """
    from hpo import defaults
    from tracker.queries import PARAM_PREFIX, RunNotFound, Store

    uri = defaults.tracking_uri(tracking_uri)
    with tracking_errors():
        store = Store(uri)
        run_id = store.find_sweep(name)
        if run_id is None:
            try:
                data = store.sweep(name)
            except RunNotFound:
                known = sorted(set(store.list_sweeps()["sweep"].dropna()))
                raise ConfigError(
                    f"no sweep named {name!r} in {redact(uri)}; sweeps there: {', '.join(known) or 'none'}"
                ) from None
        else:
            data = store.sweep(run_id)
    trials = data.trials  # the sweep's trial runs only: other kinds of child run are not trials
    scored = trials[trials["best"].notna() & (trials["state"] != "failed")]
    scored = scored.sort_values("best", ascending=not data.maximize).head(top)
    columns = [c for c in trials.columns if c.startswith(PARAM_PREFIX)]
    varying = [c[len(PARAM_PREFIX):] for c in columns if trials[c].astype(str).nunique() > 1][:MAX_PARAM_COLUMNS]
    rows = []
    for row in scored.to_dict("records"):
        rows.append({
            "run_id": row["run_id"],
            "trial_number": int(row["trial_number"]) if present(row["trial_number"]) else None,
            "status": row["status"],
            "metric": float(row["best"]),
            "epochs": int(row["epochs_run"]) if present(row["epochs_run"]) else None,
            "diagnosis": row.get("verdict") if isinstance(row.get("verdict"), str) else None,
            "params": {c[len(PARAM_PREFIX):]: _plain(row[c]) for c in columns if present(row[c])},
        })
    doc = {"sweep": data.name, "parent_run_id": data.run_id, "metric": {"name": data.metric, "goal": data.goal},
           "state": data.state, "top": rows}
    body = [
        leaderboard_row(i, r["trial_number"], r["status"], r["metric"], r["epochs"], r["params"], varying,
                        r["diagnosis"] or "")
        for i, r in enumerate(rows, 1)
    ]
    title = f"sweep {data.name} ({data.state}), run {data.run_id}: top {len(rows)} by {data.goal} {data.metric}"
    if data.state == "crashed":  # the driver died: say how to continue, the results so far are kept
        title += f"\nthe driver of this sweep is gone; continue it with: hpo resume {data.name}"
    return doc, title + "\n" + table(leaderboard_header(data.metric, varying), body)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


__all__ = ["result_json", "leaderboard_text", "where_to_look", "best_from_store", "table", "schema"]
