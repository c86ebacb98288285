"""What the CLI prints: the end-of-run leaderboard, the ``--json`` document, ``hpo best``."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from hpo.confirm_report import confirmation_table, confirmed
from hpo.errors import ConfigError, tracking_errors
from hpo.objectives import front_of, hypervolume, parse_objectives
from hpo.results import SweepResult, TrialRecord, error_summary, leaderboard, pareto_front, scored_objectives
from tracker import schema
from tracker.mlflow_log import redact, sqlite_path
from tracker.params import present
from trainers.tasks import TASKS

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
    doc = {
        "sweep": result.sweep,
        "parent_run_id": result.parent_run_id,
        "experiment_id": result.experiment_id,
        "tracking_uri": redact(result.tracking_uri),
        "metric": {"name": result.metric, "goal": result.goal},
        "best": None if best is None else {"run_id": best.run_id, "params": best.config, "metric": _finite(best.best),
                                           **test_fields(result)},
        "trials": [trial(r) for r in result.trials],
        "interrupted": result.interrupted,
        "elapsed_s": round(result.elapsed_s, 2),
    }
    if result.multi_objective:
        add_front(doc, result)
        for member in doc["best"]:
            if best is not None and member["run_id"] == best.run_id:
                member.update(test_fields(result))
    if result.confirmation is not None:  # the confirm runs apart from the search's trials
        doc["confirm"] = result.confirmation["runs"]
        doc["confirmation"] = {k: v for k, v in result.confirmation.items() if k != "runs"}
        if best is not None:
            doc["best"]["confirmed"] = confirmed(result.confirmation, best.run_id)
    if result.compression is not None:  # the sweep file's compress: block ran (hpo compress --json's document)
        doc["compression"] = result.compression
    return doc


def test_fields(result: SweepResult) -> dict[str, Any]:
    """What ``best`` says of the test split: ``test`` (``{"test_accuracy": ..., ...}`` of the winner's
    checkpoint, scored once after the search; None without an estimate) and ``test_note`` (why not)."""
    metrics = result.best.test_metrics if result.best is not None else {}
    return {"test": dict(metrics) or None, "test_note": None if metrics else result.test_note}


def test_line(result: SweepResult) -> str | None:
    """One line on the winner's test figures, saying how it was selected; or why there are none."""
    metrics = result.best.test_metrics if result.best is not None else {}
    if not metrics:
        return f"test: {result.test_note}" if result.test_note else None
    headline = schema.TEST_PREFIX + result.metric.removeprefix("val_")
    if headline not in metrics:
        headline = next(n for n in ("test_accuracy", "test_loss", *metrics) if n in metrics)
    rest = ", ".join(f"{name} {_fmt(value)}" for name, value in metrics.items() if name != headline)
    line = f"{headline.replace('_', ' ')} of the selected trial (selected on validation): {_fmt(metrics[headline])}"
    line += f"  ({rest})" if rest else ""
    if result.task in TASKS and result.best is not None:  # how many rows the figure rests on
        train, val, test = TASKS[result.task].split_sizes(result.best.config)
        line += f"\n  trained on {train:,} rows, selected on {val:,} validation rows, tested once on {test:,} rows"
    return line


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
    text = title + "\n" + table(header, rows)
    if result.confirmation is not None:
        text += "\n\n" + confirmation_text(result.confirmation)
    return text + "\n\n" + front_text(result, params) if result.multi_objective else text


def confirmation_text(doc: Mapping[str, Any]) -> str:
    """The confirmation table and its verdict, as ``hpo run`` and ``hpo best`` print them."""
    title, header, rows, notes = confirmation_table(doc)
    return "\n".join([title, table(header, rows), *notes])


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
    if best is not None and result.multi_objective:
        lines.append(f"chosen front member (best {result.metric} on the front): trial {best.number}, run {best.run_id}")
    elif best is not None and result.confirmation is not None:
        stats = (confirmed(result.confirmation, best.run_id) or {}).get("val") or {}
        lines.append(f"best (confirmed: mean {result.metric} {_fmt(stats.get('mean'))} over {stats.get('n', 0)} "
                     f"fresh seeds): trial {best.number}, run {best.run_id}")
    elif best is not None:
        lines.append(f"best: trial {best.number} ({result.metric} {_fmt(best.best)}), run {best.run_id}")
    if (test := test_line(result)) is not None:
        lines.append(test)
    lines.append(f"sweep run: {result.parent_run_id} in {redact(uri)}")
    if uri.startswith(("http://", "https://")):
        from tracker.mlflow_log import ui_run_url  # opens the run in the UI's model-training view

        lines.append(f"MLflow UI:  {ui_run_url(redact(uri), result.experiment_id, result.parent_run_id)}")
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
    from tracker.queries import PARAM_PREFIX, RunNotFound, Store, history_dict

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
    columns = [c for c in trials.columns if c.startswith(PARAM_PREFIX)]
    varying = [c[len(PARAM_PREFIX):] for c in columns if trials[c].astype(str).nunique() > 1][:MAX_PARAM_COLUMNS]
    if parse_objectives(data.tags.get(schema.OBJECTIVES)):
        ok = trials[trials["state"] != "failed"]["run_id"].tolist()
        front = stored_front(data, {run_id: history_dict(data.histories, run_id) for run_id in ok}, varying,
                             PARAM_PREFIX)
        if front is not None:
            return front
    scored = trials[trials["best"].notna() & (trials["state"] != "failed")]
    scored = scored.sort_values("best", ascending=not data.maximize).head(top)
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
    confirmation = _stored_confirmation(store, data)
    if confirmation is not None:
        doc["confirmation"] = {k: v for k, v in confirmation.items() if k != "runs"}
        doc["best"] = {"run_id": confirmation["winner"], "confirmed": confirmed(confirmation, confirmation["winner"])}
    body = [
        leaderboard_row(i, r["trial_number"], r["status"], r["metric"], r["epochs"], r["params"], varying,
                        r["diagnosis"] or "")
        for i, r in enumerate(rows, 1)
    ]
    title = f"sweep {data.name} ({data.state}), run {data.run_id}: top {len(rows)} by {data.goal} {data.metric}"
    if data.state == "crashed":  # the driver died: say how to continue, the results so far are kept
        title += f"\nthe driver of this sweep is gone; continue it with: hpo resume {data.name}"
    text = title + "\n" + table(leaderboard_header(data.metric, varying), body)
    return doc, text + ("\n\n" + confirmation_text(confirmation) if confirmation is not None else "")


def _stored_confirmation(store: Any, data: Any) -> dict[str, Any] | None:
    """The sweep's ``confirmation.json`` when its confirmation finished (``hpo.confirm.state: done``)."""
    if data.tags.get(schema.CONFIRM_STATE) != "done":
        return None
    with tracking_errors():
        return store.read_json_artifact(data.run_id, schema.CONFIRM_ARTIFACT, data.artifact_uri)


# -- several objectives: the Pareto front -----------------------------------------------------------
# The "best" of a multi-objective sweep is the front, not one trial: ``--json``'s ``best`` is the list
# of front members (best first on the first objective), each with its objective values; the member that
# commands needing one trial take (the sweep run's ``hpo.best_run_id`` and best checkpoint) is the first.
def add_front(doc: dict[str, Any], result: SweepResult) -> None:
    """Turn ``hpo run --json``'s document into a multi-objective one (in place).

    Adds ``objectives``, ``pareto_front`` (run ids), ``hypervolume``, ``chosen`` (the member taken where
    one trial is needed); ``best`` becomes the list of front members; each trial gets ``objectives`` and
    ``pareto``.
    """
    objectives = result.objectives
    front = pareto_front(result.trials, objectives)
    scored = dict((r.run_id, v) for r, v in scored_objectives(result.trials, objectives))
    on_front = {r.run_id for r, _ in front}
    doc["objectives"] = [{"name": n, "goal": g} for n, g in objectives]
    doc["best"] = [_member(r.run_id, r.number, r.config, values) for r, values in front]
    doc["pareto_front"] = [r.run_id for r, _ in front]
    doc["chosen"] = front[0][0].run_id if front else None
    doc["hypervolume"] = _volume(list(scored.values()), objectives)
    for trial in doc["trials"]:
        trial["objectives"] = scored.get(trial["run_id"])
        trial["pareto"] = trial["run_id"] in on_front


def front_text(result: SweepResult, params: list[str]) -> str:
    """The front as a table under the leaderboard, with its hypervolume."""
    objectives = result.objectives
    front = pareto_front(result.trials, objectives)
    scored = [v for _, v in scored_objectives(result.trials, objectives)]
    rows = [(r.number, values, r.config) for r, values in front]
    return _table(rows, objectives, params, len(scored), _volume(scored, objectives))


def stored_front(data: Any, histories: Mapping[str, Mapping[str, Sequence[float | None]]],
                 params: list[str], param_prefix: str) -> tuple[dict[str, Any], str] | None:
    """``hpo best`` of a multi-objective sweep read back from the store, or None for one objective.

    Args:
        data: the sweep (``tracker.queries.SweepData``): its ``hpo.objectives`` tag and trials frame.
        histories: per run id of a trial that did not fail, its per-epoch metrics.
        params: varying parameter names to show as columns.
        param_prefix: the trials frame's column prefix of parameters.
    """
    objectives = parse_objectives(data.tags.get(schema.OBJECTIVES))
    if len(objectives) < 2:
        return None
    scored, front = front_of(histories, objectives)
    rows_by_id = {row["run_id"]: row for row in data.trials.to_dict("records")}
    members, table_rows = [], []
    for run_id in front:
        row = rows_by_id[run_id]
        number = int(row["trial_number"]) if present(row["trial_number"]) else None
        config = {c[len(param_prefix):]: _plain(row[c]) for c in row if c.startswith(param_prefix) and present(row[c])}
        members.append(_member(run_id, number, config, scored[run_id]))
        table_rows.append((number, scored[run_id], config))
    volume = _volume(list(scored.values()), objectives)
    doc = {
        "sweep": data.name, "parent_run_id": data.run_id, "state": data.state,
        "metric": {"name": objectives[0][0], "goal": objectives[0][1]},
        "objectives": [{"name": n, "goal": g} for n, g in objectives],
        "best": members, "top": members, "pareto_front": front, "hypervolume": volume,
        "chosen": front[0] if front else None,
    }
    title = f"sweep {data.name} ({data.state}), run {data.run_id}"
    return doc, title + "\n" + _table(table_rows, objectives, params, len(scored), volume)


def _member(run_id: str, number: int | None, config: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, Any]:
    return {"run_id": run_id, "trial_number": number, "params": dict(config), "objectives": dict(values)}


def _volume(points: Sequence[Mapping[str, float]], objectives: Sequence[tuple[str, str]]) -> float | None:
    if not points:
        return None
    value = hypervolume([[p[n] for n, _ in objectives] for p in points], [g for _, g in objectives])
    return value if math.isfinite(value) else None


def _table(rows: Sequence[tuple[int | None, Mapping[str, float], Mapping[str, Any]]],
           objectives: Sequence[tuple[str, str]], params: list[str], scored: int, volume: float | None) -> str:
    names = [n for n, _ in objectives]
    header = ["trial", *(f"{n} ({'max' if g == 'maximize' else 'min'})" for n, g in objectives), *params]
    body = [[_fmt(number), *(_objective_cell(values[n]) for n in names), *(_fmt(config.get(p)) for p in params)]
            for number, values, config in rows]
    title = (f"Pareto front: {len(rows)} of {scored} scored trials, best first on {names[0]}; "
             f"hypervolume {_fmt(volume)} (reference: worst observed + 10% of the range)")
    if not body:
        return title + "\nno trial reported every objective"
    return title + "\n" + table(header, body)


def _objective_cell(value: float) -> str:
    """A count (params, flops) in full, anything else as any cell: 34112, not 3.411e+04."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else _fmt(value)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


__all__ = ["result_json", "leaderboard_text", "where_to_look", "best_from_store", "table", "schema", "stored_front"]
