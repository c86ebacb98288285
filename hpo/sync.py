"""``hpo sync`` and the sweep's journal hooks: write journals left by earlier drivers, say what waits.

The journal's files (``tracker.journal``) and their replay to the store (``tracker.replay``) know no user;
this module decides what a user sees: one line per journal written, what was left and why, and the error
a full disk gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from hpo.errors import ConfigError, TrackingError, tracking_errors
from tracker.journal import JournalWriteError, journal_folder
from tracker.replay import SyncReport, sync_journals

__all__ = ["after_sweep", "check_sync_args", "journal_error", "report_lines", "sync_command", "sync_leftovers"]


def sync_leftovers(name: str, tracking_uri: str, client: Any, stream: TextIO) -> None:
    """Before a sweep runs: write what earlier drivers of sweep ``name`` left in their journals.

    Their writes come first (in their order), so a resumed sweep starts from a store that has them all.

    Raises:
        TrackingError: the store failed while being written (the journals keep what it did not take).
    """
    reports = sync_journals(lambda _uri: client, name=name, tracking_uri=tracking_uri)
    for report in reports:
        if report.status == "written" and report.counts.entries:
            print(f"journal of an earlier run of {name}: {_summary(report)}", file=stream)
        elif report.status == "failed":
            raise TrackingError(f"could not write the journal {report.path} to the store: {report.message}; "
                                "run `hpo sync` when the store answers")


def sync_command(name: str | None, tracking_uri: str | None, open_client: Any) -> tuple[int, list[str]]:
    """``hpo sync [NAME]``: write journals to their stores; returns the exit code and the lines to print.

    Exit code 0 when every journal that could be written was, 1 when a store failed midway.

    Raises:
        TrackingError: a journal's store does not answer.
    """
    folder = journal_folder()
    with tracking_errors():
        reports = sync_journals(open_client, name=name, tracking_uri=tracking_uri, folder=folder)
    if not reports:
        what = f"of sweep {name} " if name else ""
        return 0, [f"nothing to sync: no journal {what}under {folder}"]
    return (1 if any(r.status == "failed" for r in reports) else 0), list(report_lines(reports))


def report_lines(reports: Iterable[SyncReport]) -> Iterable[str]:
    """One line per journal: what was written, or why it was not."""
    for r in reports:
        label = f"{r.sweep or '?'} ({Path(r.path).name})"
        if r.status == "written":
            yield f"{label}: {_summary(r)}" if r.counts.entries else f"{label}: already in the store"
        elif r.status == "in_use":
            yield f"{label}: skipped, {r.message} (its driver writes it)"
        elif r.status == "other_store":
            yield f"{label}: skipped, {r.message}"
        else:
            yield f"{label}: stopped after {r.counts.entries} writes, {r.left} left in {r.path}: {r.message}"


def _summary(r: SyncReport) -> str:
    c = r.counts
    parts = [f"{c.entries} writes", f"{c.runs_created} runs created", f"{c.points} metric points"]
    if c.runs_found or c.points_skipped:
        parts.append(f"{c.runs_found} runs and {c.points_skipped} points were already stored")
    return ", ".join(parts)


def journal_error(error: BaseException) -> JournalWriteError | None:
    """The journal write failure behind ``error`` (Ray Tune wraps a callback's exception), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, JournalWriteError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def check_sync_args(name: str | None, every: bool) -> None:
    """``hpo sync NAME`` or ``hpo sync --all`` (or neither: all), not both.

    Raises:
        ConfigError: both were given.
    """
    if name is not None and every:
        raise ConfigError(f"give a sweep name or --all, not both (got {name!r} and --all)", source="hpo sync")


def after_sweep(logger: Any, records: Iterable[Any], stream: TextIO) -> None:
    """At a sweep's end: give each record MLflow's run id (a trial started during an outage held its run
    key), and say where the writes wait when the store did not take them all."""
    for record in records:
        record.run_id = logger.run_id(record.run_id)
    if logger.unsynced:
        print(f"warning: {logger.unsynced}", file=stream)
