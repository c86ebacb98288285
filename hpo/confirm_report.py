"""The confirmation (``confirmation.json``, ``hpo.confirm``) as the outputs show it: plain data, no Ray.

``hpo run`` prints it under the leaderboard, ``hpo best`` under its top trials (read back from the sweep
run), and both ``--json`` documents carry it; the dashboard reads the same artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def confirmation_table(doc: Mapping[str, Any]) -> tuple[str, list[str], list[list[str]], list[str]]:
    """(title, header, rows, notes): one row per configuration, ranked by mean; the notes carry the verdict."""
    metric, test_metric = doc["metric"], doc.get("test_metric")
    header = ["rank", "trial", f"search {metric}", f"mean {metric}", "std", "95% interval", "seeds"]
    if test_metric:
        header += [f"mean {test_metric}", "std (test)", "95% interval (test)"]
    rows = []
    for c in doc["configs"]:
        row = [_cell(c["rank"]), str(c["trial_number"]), _cell(c["search_value"]), *_stat_cells(c["val"])]
        if test_metric:
            row += _stat_cells(c["test"])[:3]
        rows.append(row)
    title = (f"confirmation: top {len(doc['configs'])} configurations x {doc['seeds_per_config']} fresh seeds, "
             f"ranked by mean {metric} ({doc['goal']}; the search's own trial is not in the mean)")
    notes = [doc["verdict"]]
    if doc.get("winner"):
        winner = next(c for c in doc["configs"] if c["run_id"] == doc["winner"])
        notes.append(f"confirmed winner: trial {winner['trial_number']}, run {winner['run_id']}")
    if not test_metric:
        notes.append(f"test: {doc.get('test_note') or 'the confirm runs hold no test metric'}")
    return title, header, rows, notes


def confirmed(doc: Mapping[str, Any] | None, run_id: str) -> dict[str, Any] | None:
    """The confirmation statistics of the configuration of trial run ``run_id`` (for ``best`` in --json)."""
    if doc is None:
        return None
    config = next((c for c in doc["configs"] if c["run_id"] == run_id), None)
    if config is None:
        return None
    return {"rank": config["rank"], "seeds": config["seeds"], "runs": config["runs"], "val": config["val"],
            "test": config["test"], "verdict": doc["verdict"], "welch": doc["welch"]}


def _stat_cells(stats: Mapping[str, Any] | None) -> list[str]:
    if stats is None:
        return ["-", "-", "-", "0"]
    interval = "-" if stats.get("low") is None else f"[{stats['low']:.4g}, {stats['high']:.4g}]"
    return [_cell(stats["mean"]), _cell(stats["std"]), interval, str(stats["n"])]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
